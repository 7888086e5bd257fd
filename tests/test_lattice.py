"""First-pass lattices on a tiny hand-made graph: the LM, the lexicon, HLG decoding, posteriors,
1-best, n-best and forced alignment."""

from __future__ import annotations

import random

import numpy as np
import pytest

from whisper_llada.lattice import lattice as L
from whisper_llada.lattice.arpa import KneserNeyLM
from whisper_llada.lattice.graph import Lexicon, build_graph, read_words

TEXTS = ["THE CAT SAT ON THE MAT", "THE DOG SAT", "A CAT AND A DOG", "THEY SAT ON A MAT", "THE MAT"] * 20


@pytest.mark.parametrize("order", [1, 2, 3])
def test_kneser_ney_distributions_sum_to_one(order):
    rng = random.Random(0)
    vocab = "A B C D E F".split()
    lm = KneserNeyLM([[rng.choice(vocab) for _ in range(rng.randint(1, 6))] for _ in range(150)], order)
    for h in [(), ("<s>",), ("A",), ("A", "B"), ("<s>", "C"), ("Z", "Z")]:
        assert sum(lm.prob(w, h) for w in lm.vocab) == pytest.approx(1.0, abs=1e-9), h
    # From order 2 on the history matters: a seen context differs from an unseen one (backed off).
    assert (lm.prob("A", ("<s>",)) != lm.prob("A", ("Z",))) == (order > 1)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    import sentencepiece as spm

    from whisper_llada.data.tokenizer import train_sentencepiece

    d = tmp_path_factory.mktemp("lattice")
    sp = spm.SentencePieceProcessor(model_file=str(train_sentencepiece(TEXTS, d / "bpe", 30)))
    hlg = build_graph(TEXTS, sp, d / "lang", d / "lm", order=2)
    return sp, hlg, read_words(d / "lang/words.txt"), d


def test_lexicon_disambiguates_prefixes(graph):
    sp, _, _, d = graph
    lex = Lexicon.from_words(["THE", "THEY", "CAT"], sp)
    seqs = dict(zip(lex.words, lex.disambiguated()))
    n = sp.get_piece_size()
    assert seqs["THE"][-1] == n + 2  # #1: ▁THE is a prefix of THEY's ▁THE Y
    assert all(lab <= n for lab in seqs["THEY"] + seqs["CAT"])
    assert (d / "lang/lexicon.txt").read_text().count("\n") == len(set(" ".join(TEXTS).split()))
    assert (d / "lm/G_2_gram.arpa").read_text().startswith("\\data\\")


def spelled(sp, text, seed=0, noise=1.0):
    """CTC log-probs that spell ``text`` (3 frames a piece, blanks between) with noise."""
    rng = np.random.default_rng(seed)
    target = [p + 1 for w in text.split() for p in sp.encode(w)]
    C = sp.get_piece_size() + 1
    lp = rng.normal(0, noise, (3 * len(target) + 4, C))
    for i, c in enumerate(target):
        lp[2 + 3 * i, c] += 6
    lp[:, 0] += 3
    return (lp - np.log(np.exp(lp).sum(1, keepdims=True))).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lattice_posteriors_best_path_and_nbest(graph, seed):
    import kaldi_decoder

    sp, hlg, words, _ = graph
    lp = spelled(sp, "THE CAT SAT ON A MAT", seed=seed, noise=1.5)
    lat = L.decode(lp, hlg, beam=12, lattice_beam=6)
    assert lat.num_frames == len(lp)
    post, _ = L.arc_posteriors(lat)
    frame = lat.time[lat.src]
    for t in range(len(lp)):  # every path crosses frame t on exactly one arc
        assert post[(frame == t) & (lat.ilabel != 0)].sum() == pytest.approx(1.0, abs=1e-5)
    arcs, score, g, a = L.best_path(lat)
    assert score == pytest.approx(-(g + a), abs=1e-3)
    best = [w for w, _, _ in L.word_spans(lat, arcs)]
    # The lattice's best path is the decoder's own 1-best.
    dec = kaldi_decoder.LatticeSimpleDecoder(hlg, kaldi_decoder.LatticeSimpleDecoderConfig(beam=12, lattice_beam=6))
    dec.decode(kaldi_decoder.DecodableCtc(lp))
    one = L.Lattice.from_kaldi(dec.get_best_path()[1])
    assert best == [int(o) for o in _linear_olabels(one)]
    nb = L.nbest(lat, 5)
    seqs = [tuple(w) for w, _ in nb]
    assert len(set(seqs)) == len(seqs) >= 2
    assert [s for _, s in nb] == sorted((s for _, s in nb), reverse=True)
    assert list(seqs[0]) == best and nb[0][1] == pytest.approx(score, abs=1e-3)
    spans = L.word_spans(lat, arcs)
    conf = L.word_confidences(lat, post, best, L.search_windows([s for _, s, _ in spans], lat.num_frames, 2))
    assert all(0.0 <= c <= 1.0 for c in conf) and sum(conf) > 0.5 * len(conf)
    # Forced alignment of the 1-best gives every word a span, in order.
    spans = L.align(lp, [sp.encode(words[w]) for w in best])
    assert spans is not None and len(spans) == len(best)
    assert all(s <= e for s, e in spans) and all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def _linear_olabels(lat):
    s, out = lat.start, []
    while lat.out_arcs[s]:
        (k,) = lat.out_arcs[s]
        if lat.olabel[k]:
            out.append(lat.olabel[k])
        s = lat.dst[k]
    return out


def test_posteriors_equal_path_enumeration():
    """On a small lattice, arc posteriors equal the normalised sum over its enumerated paths."""
    from whisper_llada.lattice.graph import ctc_topo

    rng = np.random.default_rng(3)
    lp = np.log(rng.dirichlet(np.ones(3), size=4)).astype(np.float32)
    lat = L.decode(lp, ctc_topo(3), beam=100, lattice_beam=100)
    post, total = L.arc_posteriors(lat, scale=0.7)
    cost = lat.cost(1.0)
    paths = []  # (arcs, score) by depth-first search

    def walk(s, arcs):
        if s in lat.final:
            paths.append((arcs, -0.7 * (cost[arcs].sum() + lat.final_cost(s, 1.0))))
        for k in lat.out_arcs[s]:
            walk(lat.dst[k], arcs + [k])

    walk(lat.start, [])
    scores = np.array([sc for _, sc in paths])
    assert total == pytest.approx(np.logaddexp.reduce(scores), abs=1e-4)
    expect = np.zeros(len(lat.src))
    for arcs, sc in paths:
        expect[arcs] += np.exp(sc - total)
    np.testing.assert_allclose(post, expect, atol=1e-5)
    assert len(paths) == 3**4  # every class sequence of 4 frames is a path of H


def test_align_refuses_what_cannot_fit(graph):
    sp, _, _, _ = graph
    lp = spelled(sp, "A")
    assert L.align(lp[:2], [sp.encode("THE"), sp.encode("CAT"), sp.encode("MAT")]) is None
    assert L.align(lp, []) == []


def test_nbest_of_a_flat_lattice_stays_bounded(graph):
    """An untrained recogniser's lattice is flat: its word acceptor would determinize into very many
    states; the beam shrinks until it fits, and the n-best is still sorted and distinct."""
    sp, hlg, _, _ = graph
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.full(sp.get_piece_size() + 1, 50.0), size=40)).astype(np.float32)
    lat = L.decode(lp, hlg, beam=16, lattice_beam=8)
    nb = L.nbest(lat, 5, max_states=200)
    assert 1 <= len(nb) <= 5 and len({tuple(w) for w, _ in nb}) == len(nb)
    assert [s for _, s in nb] == sorted((s for _, s in nb), reverse=True)
