"""Decoding graphs for a CTC recogniser over BPE pieces: CTC topology H, lexicon L, grammar G, HLG.

Label spaces. CTC classes: 0 is the blank, piece p is p + 1; H reads class + 1 (the decodable's
convention: input labels are 1-based) and writes the class, the blank as epsilon. L reads piece
labels (p + 1) and disambiguation symbols after them, and writes word ids of ``words.txt``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EPS = "<eps>"


@functools.lru_cache(maxsize=4)
def ctc_topo(num_classes: int):
    """H: one state per last emitted class (0: blank or start), all final.

    A class repeated without a blank between stays one symbol; after a blank it is a new one.
    Built once per size (forced alignment composes it with every text); never modify it.
    """
    import kaldifst

    lines = []
    for s in range(num_classes):
        for c in range(num_classes):
            out = 0 if c == s else c  # a self-loop repeats; the blank writes nothing (class 0)
            lines.append(f"{s} {c} {c + 1} {out}")
        lines.append(f"{s}")
    fst = kaldifst.compile("\n".join(lines))
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


@dataclass
class Lexicon:
    """Words with their piece ids, the word symbol table and the disambiguation symbols."""

    words: list[str]  # word id i + 1 is words[i]
    prons: list[list[int]]  # piece ids of each word
    num_pieces: int

    @classmethod
    def from_words(cls, words: Iterable[str], sp) -> Lexicon:
        words = sorted(set(words))
        prons = [list(sp.encode(w)) for w in words]
        for w, p in zip(words, prons):
            if not p:
                raise ValueError(f"word {w!r} has no sentencepiece pieces")
        return cls(words, prons, sp.get_piece_size())

    def word_ids(self) -> dict[str, int]:
        """``words.txt``: <eps> 0, the words from 1, then #0, <s>, </s> (what the LM FST uses)."""
        table = {EPS: 0}
        for w in self.words:
            table[w] = len(table)
        for extra in ("#0", "<s>", "</s>"):
            table[extra] = len(table)
        return table

    def disambiguated(self) -> list[list[int]]:
        """Piece-label sequences (p + 1), a pronunciation that is a prefix of another or shared by
        two words ending in its own #k (k >= 1), so that L o G can be determinized."""
        labels = [tuple(p + 1 for p in pron) for pron in self.prons]
        prefixes = {lab[:i] for lab in labels for i in range(1, len(lab))}
        first = self.num_pieces + 1  # label of #0; #k is first + k
        seen: dict[tuple, int] = {}
        out = []
        for lab in labels:
            shared = sum(1 for other in labels if other == lab) > 1
            if lab in prefixes or shared:
                seen[lab] = seen.get(lab, 0) + 1
                out.append(list(lab) + [first + seen[lab]])
            else:
                out.append(list(lab))
        return out


def lexicon_fst(lex: Lexicon):
    """L: pieces in, words out; a loop state; #0 passes G's back-off symbol through."""
    import kaldifst

    wid = lex.word_ids()
    lines, nxt = [], 1
    for word, seq in zip(lex.words, lex.disambiguated()):
        src = 0
        for i, lab in enumerate(seq):
            dst = 0 if i == len(seq) - 1 else nxt
            if dst:
                nxt += 1
            lines.append(f"{src} {dst} {lab} {wid[word] if i == 0 else 0}")
            src = dst
    lines.append(f"0 0 {lex.num_pieces + 1} {wid['#0']}")
    lines.append("0")
    fst = kaldifst.compile("\n".join(lines))
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def grammar_fst(arpa: str | Path, words_txt: str | Path):
    """G from an ARPA file (``kaldilm``): back-off arcs read #0, <s> and </s> become epsilon."""
    import kaldifst
    import kaldilm

    text = kaldilm.arpa2fst(str(arpa), disambig_symbol="#0", read_symbol_table=str(words_txt))
    fst = kaldifst.compile(text)
    kaldifst.arcsort(fst, sort_type="ilabel")
    return fst


def _relabel_inputs(fst, first_disambig: int):
    """Input disambiguation symbols (labels >= first_disambig) become epsilon."""
    import kaldifst

    lines = []
    for line in fst.to_str().strip().split("\n"):
        f = line.split()
        if len(f) >= 4 and int(f[2]) >= first_disambig:
            f[2] = "0"
        lines.append(" ".join(f))
    return kaldifst.compile("\n".join(lines))


def compile_hlg(lex: Lexicon, G):
    """det(L o G) with disambiguation symbols removed, then H o LG: the CTC decoding graph."""
    import kaldifst

    L = lexicon_fst(lex)
    LG = kaldifst.compose(L, G)
    kaldifst.connect(LG)
    if LG.num_states == 0:
        raise ValueError("L o G is empty: the LM's words do not match the lexicon")
    kaldifst.determinize_star(LG)
    kaldifst.minimize_encoded(LG)
    LG = _relabel_inputs(LG, lex.num_pieces + 1)
    kaldifst.rmepsilon(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")
    H = ctc_topo(lex.num_pieces + 1)
    HLG = kaldifst.compose(H, LG)
    kaldifst.connect(HLG)
    kaldifst.arcsort(HLG, sort_type="ilabel")
    return HLG


def write_words(lex: Lexicon, path: str | Path) -> Path:
    from whisper_llada.utils.checkpoint_io import atomic_write_text

    return atomic_write_text(Path(path), "".join(f"{w} {i}\n" for w, i in lex.word_ids().items()))


def read_words(path: str | Path) -> dict[int, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: words.txt not found")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        f = line.split()
        if len(f) != 2:
            raise ValueError(f"{path}:{n}: expected 'word id', got {line!r}")
        out[int(f[1])] = f[0]
    return out


def build_graph(texts: Sequence[str], sp, out_dir: str | Path, lm_dir: str | Path, order: int = 2):
    """``{out_dir}/{words.txt, lexicon.txt, HLG.fst}`` and ``{lm_dir}/G_{order}_gram.arpa`` from
    training transcripts; returns the HLG FST."""
    from whisper_llada.lattice.arpa import KneserNeyLM
    from whisper_llada.utils.checkpoint_io import atomic_write, atomic_write_text

    out_dir, lm_dir = Path(out_dir), Path(lm_dir)
    sentences = [t.split() for t in texts if t.split()]
    lex = Lexicon.from_words((w for s in sentences for w in s), sp)
    words_txt = write_words(lex, out_dir / "words.txt")
    atomic_write_text(
        out_dir / "lexicon.txt",
        "".join(f"{w} {' '.join(sp.id_to_piece(p) for p in pron)}\n" for w, pron in zip(lex.words, lex.prons)),
    )
    arpa = KneserNeyLM(sentences, order).write_arpa(lm_dir / f"G_{order}_gram.arpa")
    HLG = compile_hlg(lex, grammar_fst(arpa, words_txt))
    atomic_write(out_dir / "HLG.fst", HLG.write)
    log.info("HLG: %d states from %d words, %d-gram LM (%s)", HLG.num_states, len(lex.words), order, out_dir)
    return HLG
