"""Word n-gram language model from text: interpolated Kneser-Ney counts written as an ARPA file.

Small corpora only (counts live in memory); ``kaldilm`` turns the ARPA file into the G FST.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

BOS, EOS = "<s>", "</s>"


def _discount(counts: dict) -> float:
    """Absolute discount n1 / (n1 + 2 n2) of one order's counts (Ney's estimate)."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


class KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model; ``prob`` follows the ARPA back-off semantics it writes."""

    def __init__(self, sentences: Iterable[Sequence[str]], order: int = 3):
        if order < 1:
            raise ValueError(f"n-gram order {order} must be at least 1")
        self.order = order
        raw: list[dict] = [defaultdict(int) for _ in range(order + 1)]  # raw[n][ngram tuple]
        vocab = set()
        for words in sentences:
            vocab.update(words)
            seq = [BOS] + list(words) + [EOS]
            for n in range(1, order + 1):
                for i in range(1 if n == 1 else 0, len(seq) - n + 1):  # <s> is no unigram event
                    raw[n][tuple(seq[i : i + n])] += 1
        if not vocab:
            raise ValueError("no words to estimate a language model from")
        self.vocab = sorted(vocab) + [EOS]
        # Lower orders count distinct left contexts (continuation counts), except n-grams that
        # start at <s>, which have no left context.
        counts: list[dict] = [dict() for _ in range(order + 1)]
        counts[order] = dict(raw[order])
        for n in range(order - 1, 0, -1):
            cont: dict = defaultdict(int)
            for gram in raw[n + 1]:
                cont[gram[1:]] += 1
            counts[n] = {g: (c if g[0] == BOS else cont.get(g, 0)) for g, c in raw[n].items()}
            counts[n] = {g: c for g, c in counts[n].items() if c > 0}
        self.counts = counts
        self.discount = [0.0] + [_discount(counts[n]) for n in range(1, order + 1)]
        self.context_total: list[dict] = [dict() for _ in range(order + 1)]
        self.context_types: list[dict] = [dict() for _ in range(order + 1)]
        for n in range(1, order + 1):
            tot, types = defaultdict(int), defaultdict(int)
            for g, c in counts[n].items():
                tot[g[:-1]] += c
                types[g[:-1]] += 1
            self.context_total[n], self.context_types[n] = dict(tot), dict(types)
        self._probs: list[dict] = [dict() for _ in range(order + 1)]
        for n in range(1, order + 1):
            for g in counts[n]:
                if g[-1] != BOS:
                    self._probs[n][g] = self._interp(g)

    def _interp(self, gram: tuple) -> float:
        """Interpolated probability of the last word of ``gram`` given the rest."""
        n = len(gram)
        if n == 0:
            return 1.0 / len(self.vocab)
        h = gram[:-1]
        total = self.context_total[n].get(h, 0)
        lower = self._interp(gram[1:])
        if total == 0:
            return lower
        d = self.discount[n]
        c = self.counts[n].get(gram, 0)
        return max(c - d, 0.0) / total + d * self.context_types[n][h] / total * lower

    def backoff(self, h: tuple) -> float:
        n = len(h) + 1
        total = self.context_total[n].get(h, 0)
        return self.discount[n] * self.context_types[n][h] / total if total else 1.0

    def prob(self, word: str, history: Sequence[str]) -> float:
        """p(word | history) as the ARPA file gives it (the last order-1 words of history count)."""
        h = tuple(history)[-(self.order - 1) :] if self.order > 1 else ()
        while True:
            g = h + (word,)
            if g in self._probs[len(g)]:
                return self._probs[len(g)][g]
            if not h:
                return self._interp((word,))
            bow = self.backoff(h) if h in self.context_total[len(h) + 1] else 1.0
            return bow * self.prob(word, h[1:])

    def write_arpa(self, path: str | Path) -> Path:
        from whisper_llada.utils.checkpoint_io import atomic_write_text

        grams: list[list[tuple]] = [[] for _ in range(self.order + 1)]
        for w in self.vocab:  # every word gets a unigram, seen in this position or not
            grams[1].append((w,))
        grams[1].append((BOS,))
        for n in range(2, self.order + 1):
            grams[n] = sorted(self._probs[n])
        lines = ["\\data\\"] + [f"ngram {n}={len(grams[n])}" for n in range(1, self.order + 1)] + [""]
        for n in range(1, self.order + 1):
            lines.append(f"\\{n}-grams:")
            for g in grams[n]:
                # <s> is never predicted: ARPA's convention is log10 p = -99.
                p = -99.0 if g == (BOS,) else math.log10(self._probs[n].get(g) or self._interp(g))
                line = f"{p:.6f}\t{' '.join(g)}"
                if n < self.order and g[-1] != EOS and g in self.context_total[n + 1]:
                    line += f"\t{math.log10(self.backoff(g)):.6f}"
                lines.append(line)
            lines.append("")
        lines.append("\\end\\")
        return atomic_write_text(Path(path), "\n".join(lines) + "\n")
