"""Log-linear fusion of a first pass's n-best scores with a second model's, and the choice of its
weights on dev: the weights that make the fewest word errors there, the first pass alone included.

The fused score of a candidate is ``first_pass + lm_weight * lm + length_weight * words
+ ctc_weight * ctc`` (``ctc``: the CTC recogniser's log-likelihood of the candidate, where the
first-pass records carry one). The grid holds all-zero weights, which keep the first pass's 1-best,
and ties go to the smaller weights, so the chosen fusion is never worse than the first pass on dev.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import kaldialign
import numpy as np

# The first pass's score may be a per-token average (Whisper) or a sum (lattices) and the LM's a
# sum over tokens, so the LM weight spans four decades; the word-count weight both signs.
LM_WEIGHTS = (0.0,) + tuple(round(10 ** (k / 4), 6) for k in range(-12, 5))
LENGTH_WEIGHTS = (0.0,) + tuple(s * w for w in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0) for s in (1, -1))
CTC_WEIGHTS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class Candidate:
    text: str
    first_pass: float  # the first pass's score (higher is better)
    lm: float  # the second model's log-score
    words: int  # words after normalisation
    ctc: float | None = None  # the CTC recogniser's log-likelihood, when the records have it

    def features(self) -> tuple[float, float, float, float]:
        return (self.first_pass, self.lm, float(self.words), self.ctc or 0.0)


@dataclass(frozen=True)
class Fusion:
    lm_weight: float = 0.0
    length_weight: float = 0.0
    ctc_weight: float = 0.0

    def weights(self) -> np.ndarray:
        return np.array([1.0, self.lm_weight, self.length_weight, self.ctc_weight])

    def score(self, c: Candidate) -> float:
        return float(np.dot(self.weights(), c.features()))

    def best(self, cands: Sequence[Candidate]) -> int:
        """Index of the best candidate; ties go to the earlier one (the first pass's order)."""
        return max(range(len(cands)), key=lambda i: (self.score(cands[i]), -i))


def tune_fusion(
    candidates: dict[str, Sequence[Candidate]],
    refs: dict[str, Sequence[str]],
    normalize=lambda t: t,
    features: Sequence[str] = ("lm", "words", "ctc"),
) -> tuple[Fusion, dict]:
    """The grid point with the fewest errors over ``candidates`` (cut id -> n-best, first pass's
    order) against ``refs`` (cut id -> reference words), and what it measured: the WER of the first
    pass's 1-best, of the fusion, of the best fusion without the LM, and of the n-best oracle.
    Only the weights of ``features`` may leave 0."""
    ids = [c for c in candidates if candidates[c]]
    missing = [c for c in ids if c not in refs]
    if missing:
        raise ValueError(f"no reference for {len(missing)} cuts to tune the fusion on (e.g. {missing[:3]})")
    n = max((len(candidates[c]) for c in ids), default=0)
    feats = np.zeros((len(ids), n, 4))
    errors = np.zeros((len(ids), n))
    valid = np.zeros((len(ids), n), dtype=bool)
    for i, c in enumerate(ids):
        for k, x in enumerate(candidates[c]):
            feats[i, k] = x.features()
            errors[i, k] = kaldialign.edit_distance(list(refs[c]), normalize(x.text).split())["total"]
            valid[i, k] = True
    has_ctc = any(x.ctc is not None for c in ids for x in candidates[c])
    words = sum(len(refs[c]) for c in ids)

    def total(f: Fusion) -> int:
        if not ids:
            return 0
        s = np.where(valid, feats @ f.weights(), -np.inf)
        return int(errors[np.arange(len(ids)), s.argmax(1)].sum())  # argmax: the first of equals

    # Smaller weights first, so that a tie keeps the simpler fusion.
    grid = itertools.product(
        LM_WEIGHTS if "lm" in features else (0.0,),
        sorted(LENGTH_WEIGHTS, key=abs) if "words" in features else (0.0,),
        CTC_WEIGHTS if has_ctc and "ctc" in features else (0.0,),
    )
    results = [(total(f), f) for f in (Fusion(*w) for w in grid)]
    first_err = total(Fusion())
    best_err, best = min(results, key=lambda r: r[0])  # min keeps the first of equals
    no_lm = min(e for e, f in results if f.lm_weight == 0)

    def wer(e: int) -> float:
        return round(100.0 * e / max(words, 1), 2)

    info = {
        **asdict(best),
        "utts": len(ids),
        "words": words,
        "wer_first_pass": wer(first_err),
        "wer": wer(best_err),
        "wer_without_lm": wer(no_lm),
        "wer_oracle": wer(int(np.where(valid, errors, np.inf).min(1).sum()) if ids else 0),
    }
    return best, info
