"""Lattices of a CTC recogniser: decoding with ``kaldi-decoder``, then 1-best, n-best, arc
posteriors (forward-backward), word confidences and times, and forced alignment of any text.

A lattice arc carries a graph cost (LM) and an acoustic cost (-log p of its CTC class at its
frame); a path's score is ``-(lm_scale * graph + acoustic)``, higher is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Lattice:
    """A raw lattice as arrays; states in topological order, ``time`` the frame each starts at."""

    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray  # CTC class + 1 (0: consumes no frame)
    olabel: np.ndarray  # word id (0: none)
    graph: np.ndarray
    acoustic: np.ndarray
    start: int
    final: dict  # state -> (graph, acoustic) cost of stopping there
    num_states: int
    order: np.ndarray = field(default=None)  # states, topologically sorted
    time: np.ndarray = field(default=None)  # per state

    @classmethod
    def from_kaldi(cls, lat) -> Lattice:
        arcs, final = _read_fst_text(lat)
        weights = [w.split(",") if w else ("0", "0") for *_, w in arcs]  # LatticeWeight: "graph,acoustic"
        src, dst, il, ol = ([a[i] for a in arcs] for i in range(4))
        g, a = [float(w[0]) for w in weights], [float(w[1]) for w in weights]
        final = {s: tuple(map(float, w.split(","))) if w else (0.0, 0.0) for s, w in final.items()}
        n = max([lat.start + 1, *(s + 1 for s in src), *(d + 1 for d in dst), *(s + 1 for s in final)])
        out = cls(
            np.array(src, dtype=np.int64),
            np.array(dst, dtype=np.int64),
            np.array(il, dtype=np.int64),
            np.array(ol, dtype=np.int64),
            np.array(g),
            np.array(a),
            lat.start,
            final,
            n,
        )
        out._sort()
        return out

    def _sort(self) -> None:
        """Kahn's topological order and each state's frame (lattices are acyclic)."""
        indeg = np.zeros(self.num_states, dtype=np.int64)
        np.add.at(indeg, self.dst, 1)
        out_arcs = [[] for _ in range(self.num_states)]
        for k, s in enumerate(self.src):
            out_arcs[s].append(k)
        self.out_arcs = out_arcs
        time = np.full(self.num_states, -1, dtype=np.int64)
        time[self.start] = 0
        order, stack = [], [s for s in range(self.num_states) if indeg[s] == 0]
        while stack:
            s = stack.pop()
            order.append(s)
            for k in out_arcs[s]:
                d = self.dst[k]
                if time[s] >= 0:
                    time[d] = max(time[d], time[s] + (self.ilabel[k] != 0))
                indeg[d] -= 1
                if indeg[d] == 0:
                    stack.append(d)
        if len(order) != self.num_states:
            raise ValueError("lattice has a cycle")
        self.order, self.time = np.array(order), time

    def cost(self, lm_scale: float) -> np.ndarray:
        return lm_scale * self.graph + self.acoustic

    def final_cost(self, s: int, lm_scale: float) -> float:
        g, a = self.final[s]
        return lm_scale * g + a

    @property
    def num_frames(self) -> int:
        return int(self.time.max()) if self.num_states else 0


def _read_fst_text(fst) -> tuple[list[tuple[int, int, int, int, str]], dict[int, str]]:
    """OpenFst's text form of ``fst``: arcs (src, dst, ilabel, olabel, weight text) and final
    states (state -> weight text); an empty weight text stands for the semiring's one."""
    arcs, final = [], {}
    for line in fst.to_str().strip().split("\n"):
        f = line.split()
        if len(f) >= 4:
            arcs.append((int(f[0]), int(f[1]), int(f[2]), int(f[3]), f[4] if len(f) > 4 else ""))
        elif f:
            final[int(f[0])] = f[1] if len(f) > 1 else ""
    return arcs, final


def _logsumexp(a: float, b: float) -> float:
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + np.log1p(np.exp(-abs(a - b)))


def arc_posteriors(lat: Lattice, lm_scale: float = 1.0, scale: float = 1.0) -> tuple[np.ndarray, float]:
    """Posterior of every arc (forward-backward in the log semiring on ``-scale * cost``) and
    the total log-score. A smaller ``scale`` flattens the posteriors (confidence calibration)."""
    logw = -scale * lat.cost(lm_scale)
    alpha = np.full(lat.num_states, -np.inf)
    beta = np.full(lat.num_states, -np.inf)
    alpha[lat.start] = 0.0
    for s in lat.order:
        if alpha[s] == -np.inf:
            continue
        for k in lat.out_arcs[s]:
            alpha[lat.dst[k]] = _logsumexp(alpha[lat.dst[k]], alpha[s] + logw[k])
    for s in lat.final:
        beta[s] = -scale * lat.final_cost(s, lm_scale)
    for s in lat.order[::-1]:
        for k in lat.out_arcs[s]:
            beta[s] = _logsumexp(beta[s], logw[k] + beta[lat.dst[k]])
    total = beta[lat.start]
    if total == -np.inf:
        raise ValueError("lattice has no complete path")
    post = np.exp(alpha[lat.src] + logw + beta[lat.dst] - total)
    return post, float(total)


def word_spans(lat: Lattice, arcs: Sequence[int]) -> list[tuple[int, int, int]]:
    """(word id, first frame, last frame) along a path of arcs: a word starts at the frame of the
    arc that writes it and ends before the next word's start (trailing blanks excluded)."""
    words = []
    for k in arcs:
        t = int(lat.time[lat.src[k]])
        if lat.olabel[k]:
            words.append([int(lat.olabel[k]), t, t])
        if lat.ilabel[k] > 1 and words:  # a non-blank class: the current word still sounds
            words[-1][2] = max(words[-1][2], t)
    return [tuple(w) for w in words]


def best_path(lat: Lattice, lm_scale: float = 1.0) -> tuple[list[int], float, float, float]:
    """Arcs of the best path and its (total score, graph cost, acoustic cost)."""
    cost = lat.cost(lm_scale)
    best = np.full(lat.num_states, np.inf)
    back = np.full(lat.num_states, -1, dtype=np.int64)
    best[lat.start] = 0.0
    for s in lat.order:
        if best[s] == np.inf:
            continue
        for k in lat.out_arcs[s]:
            c = best[s] + cost[k]
            if c < best[lat.dst[k]]:
                best[lat.dst[k]], back[lat.dst[k]] = c, k
    finals = [(best[s] + lat.final_cost(s, lm_scale), s) for s in lat.final if best[s] < np.inf]
    if not finals:
        raise ValueError("lattice has no complete path")
    total, s = min(finals)
    arcs = []
    while s != lat.start:
        k = back[s]
        arcs.append(int(k))
        s = lat.src[k]
    arcs.reverse()
    end = int(lat.dst[arcs[-1]]) if arcs else lat.start
    g = float(lat.graph[arcs].sum()) + lat.final[end][0]
    a = float(lat.acoustic[arcs].sum()) + lat.final[end][1]
    return arcs, -float(total), g, a


def search_windows(starts: Sequence[int], num_frames: int, tolerance: int) -> list[tuple[int, int]]:
    """Frames where a lattice may write each word of a sequence starting at ``starts``: from
    ``tolerance`` before its start to the next word's start. Determinization delays a word label
    while the word is still ambiguous (THE vs THEY), never past the next word's first piece."""
    ends = list(starts[1:]) + [num_frames]
    return [(max(0, s - tolerance), max(e, s)) for s, e in zip(starts, ends)]


def word_confidences(
    lat: Lattice, post: np.ndarray, words: Sequence[int], windows: Sequence[tuple[int, int]]
) -> list[float]:
    """Per word id and frame window: the posterior mass of lattice arcs writing that word inside
    the window. Paths are disjoint events, so at most 1 (capped against rounding)."""
    t_arc = lat.time[lat.src]
    out = []
    for wid, (lo, hi) in zip(words, windows):
        hit = (lat.olabel == wid) & (t_arc >= lo) & (t_arc <= hi)
        out.append(float(min(1.0, post[hit].sum())) if wid else 0.0)
    return out


def _viterbi_margins(lat: Lattice, lm_scale: float) -> np.ndarray:
    """Per arc: how much worse the best path through it is than the best path overall."""
    cost = lat.cost(lm_scale)
    fwd = np.full(lat.num_states, np.inf)
    bwd = np.full(lat.num_states, np.inf)
    fwd[lat.start] = 0.0
    for s in lat.order:
        for k in lat.out_arcs[s]:
            fwd[lat.dst[k]] = min(fwd[lat.dst[k]], fwd[s] + cost[k])
    for s in lat.final:
        bwd[s] = lat.final_cost(s, lm_scale)
    for s in lat.order[::-1]:
        for k in lat.out_arcs[s]:
            bwd[s] = min(bwd[s], cost[k] + bwd[lat.dst[k]])
    return fwd[lat.src] + cost + bwd[lat.dst] - bwd[lat.start]


def nbest(
    lat: Lattice, n: int, lm_scale: float = 1.0, beam: float = 6.0, max_states: int = 5000
) -> list[tuple[list[int], float]]:
    """The ``n`` best distinct word sequences with their Viterbi scores, best first.

    The word acceptor of the lattice is determinized in the tropical semiring, which keeps each
    sequence's best path, and its n shortest paths are read. Arcs whose best path is more than
    ``beam`` worse than the best are left out; the beam is halved until the determinized
    acceptor stays within ``max_states`` (a flat lattice's can explode).
    """
    import kaldifst

    cost = lat.cost(lm_scale)
    margin = _viterbi_margins(lat, lm_scale)
    finals = [f"{s} {lat.final_cost(s, lm_scale):.6f}" for s in lat.final]
    while True:
        lines = [
            f"{lat.src[k]} {lat.dst[k]} {lat.olabel[k]} {lat.olabel[k]} {cost[k]:.6f}"
            for k in np.flatnonzero(margin <= beam)
        ] + finals
        # compile() takes the first line's source as the start state.
        fst = kaldifst.compile("\n".join(sorted(lines, key=lambda ln: ln.split()[0] != str(lat.start))))
        kaldifst.connect(fst)
        try:
            if not kaldifst.determinize_star(fst, max_states=max_states):
                break  # False: determinized completely
        except RuntimeError as e:  # the library raises when it passes max_states
            if "aborted" not in str(e):
                raise
        if beam < 1e-3:
            raise ValueError(f"lattice word acceptor exceeds {max_states} states even with a beam of {beam:g}")
        beam /= 2
    return sorted(_split_paths(kaldifst.shortest_path(fst, n=n)), key=lambda x: -x[1])


def _split_paths(fst) -> list[tuple[list[int], float]]:
    """The linear paths of a ``shortest_path`` result (each leaves the start by its own arc)."""
    arc_list, final_text = _read_fst_text(fst)
    arcs: dict[int, list[tuple[int, int, float]]] = {}
    for src, dst, _, olabel, w in arc_list:
        arcs.setdefault(src, []).append((dst, olabel, float(w or 0.0)))
    finals = {s: float(w or 0.0) for s, w in final_text.items()}
    out = []
    for dst, label, w in arcs.get(fst.start, []):
        words, cost, s = ([label] if label else []), w, dst
        while s not in finals or arcs.get(s):
            ((s, label, w),) = arcs[s]
            cost += w
            if label:
                words.append(label)
        out.append((words, -(cost + finals[s])))
    if not arcs.get(fst.start) and fst.start in finals:
        out.append(([], -finals[fst.start]))
    return out


def decode(
    log_probs: np.ndarray, graph, beam: float = 16.0, lattice_beam: float = 8.0, acoustic_scale: float = 1.0
) -> Lattice | None:
    """Lattice of one utterance's CTC log-probabilities (T, classes) over ``graph``; None when no
    path survives the beam. Acoustic costs are ``-acoustic_scale * log p`` (1 / the LM weight)."""
    import kaldi_decoder

    dec = kaldi_decoder.LatticeSimpleDecoder(
        graph, kaldi_decoder.LatticeSimpleDecoderConfig(beam=beam, lattice_beam=lattice_beam)
    )
    dec.decode(kaldi_decoder.DecodableCtc(np.ascontiguousarray(acoustic_scale * log_probs, dtype=np.float32)))
    ok, lat = dec.get_raw_lattice()
    if not ok or lat.num_states == 0:
        return None
    return Lattice.from_kaldi(lat)


def align(
    log_probs: np.ndarray, word_pieces: Sequence[Sequence[int]], beam: float = 1e4
) -> list[tuple[int, int]] | None:
    """Forced alignment of a piece sequence against CTC log-probs: (first, last) frame of each word,
    or None when it cannot be aligned (e.g. more symbols than frames).

    The beam is wide: the graph is tiny, and a text the model finds unlikely must still reach
    its end (with a narrow beam the decoder keeps a cheaper partial path instead)."""
    import kaldifst

    from whisper_llada.lattice.graph import ctc_topo

    pieces = [p for w in word_pieces for p in w]
    if not pieces:
        return []
    # A linear acceptor of piece labels (p + 1), word i marked as output label i + 1 on its first piece.
    lines, s = [], 0
    for i, w in enumerate(word_pieces):
        for j, p in enumerate(w):
            lines.append(f"{s} {s + 1} {p + 1} {i + 1 if j == 0 else 0}")
            s += 1
    lines.append(f"{s}")
    text = kaldifst.compile("\n".join(lines))
    kaldifst.arcsort(text, sort_type="ilabel")
    graph = kaldifst.compose(ctc_topo(log_probs.shape[1]), text)
    kaldifst.connect(graph)
    lat = decode(log_probs, graph, beam=beam, lattice_beam=0.5)
    if lat is None:
        return None
    arcs, *_ = best_path(lat)
    spans = word_spans(lat, arcs)
    if [w for w, _, _ in spans] != list(range(1, len(word_pieces) + 1)):
        return None
    return [(s, e) for _, s, e in spans]
