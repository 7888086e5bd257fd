"""The CTC first pass: the recogniser trains, its lattices give first-pass records (1-best, n-best,
confidences, times), forced alignment scores another system's words, and the statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import fake_batch, make_sentences, tiny_model_config

from whisper_llada.config.recipe import LatticeConfig
from whisper_llada.data.audio import Audio
from whisper_llada.firstpass.ctc_lattice import CTCLatticeFirstPass
from whisper_llada.lattice.graph import build_graph, read_words
from whisper_llada.lattice.stats import first_pass_stats, roc_auc
from whisper_llada.models import build_model

CTC = {"num_layers": 1, "d_model": 64, "num_heads": 2, "ffn_dim": 128, "dropout": 0.0, "frame_stride": 2}


@pytest.fixture(scope="module")
def trained(sp_model, tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(sp_model, arch="whisper_ctc", ctc=CTC))
    feats, lens, texts = fake_batch(4, seed=3)
    enc = model.run_encoder(feats, lens)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    model.train()
    for _ in range(250):
        opt.zero_grad()
        loss = model(texts, Audio.frames(*enc))["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    d = tmp_path_factory.mktemp("ctc")
    graph = build_graph(make_sentences(400), model.tokenizer.sp, d / "lang", d / "lm", order=2)
    batch = {"audio": Audio.features(feats, lens), "cut_ids": [f"c{i}" for i in range(4)]}
    return model.eval(), graph, read_words(d / "lang/words.txt"), batch, texts, losses


def test_ctc_model_learns_and_rows_are_independent(trained):
    model, _, _, batch, _, losses = trained
    assert losses[-1] < 0.2 * losses[0]
    assert set(model.trainable_state_dict()) and not any(k.startswith("encoder.") for k in model.trainable_state_dict())
    with torch.no_grad():
        lp, lens = model.batch_log_probs(batch)
        audio = batch["audio"]
        one, n1 = model.log_probs(Audio.features(audio.data[1:2, : audio.lens[1]], audio.lens[1:2]))
    assert lp.shape[-1] == model.tokenizer.num_pieces + 1 and int(n1[0]) == int(lens[1])
    torch.testing.assert_close(one[0], lp[1, : lens[1]], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(lp.exp().sum(-1).numpy(), 1.0, atol=1e-4)


def test_lattice_records(trained):
    model, graph, words, batch, texts, _ = trained
    other = {f"c{i}": {"id": f"c{i}", "text": t} for i, t in enumerate(texts)}
    other["c0"]["text"] = " ".join(["RIVER"] + texts[0].split()[1:])  # a first word the audio does not hold
    other["c0"]["nbest"] = [{"text": other["c0"]["text"], "score": -1.0}, {"text": texts[0], "score": -2.0}]
    # A second system (e.g. the AR twin's n-best) is aligned in the same pass.
    second = {"c1": {"id": "c1", "text": texts[1], "nbest": [{"text": texts[1], "score": 0.0}]}}
    lc = LatticeConfig(nbest=5, beam=20, lattice_beam=10)
    decoder = CTCLatticeFirstPass(model, graph, words, lc, align_to=[other, second])
    records = decoder(batch)
    assert [r["text"] for r in records] == texts  # the overfitted recogniser's 1-best
    for r in records:
        assert r["text"] == " ".join(w["word"] for w in r["words"])
        assert all(0.0 <= w["conf"] <= 1.0 and 0.0 <= w["start"] < w["end"] for w in r["words"])
        assert all(a["start"] < b["start"] for a, b in zip(r["words"], r["words"][1:]))
        scores = [h["score"] for h in r["nbest"]]
        assert scores == sorted(scores, reverse=True) and len({h["text"] for h in r["nbest"]}) == len(scores)
        assert r["nbest"][0]["text"] == r["text"] and r["lattice_depth"] >= 1
    # The other system's words got CTC confidences: its correct words are supported, the wrong one is not.
    aligned = other["c0"]["words"]
    assert [w["word"] for w in aligned] == other["c0"]["text"].split()
    assert aligned[0]["conf"] < 0.5 and min(w["conf"] for w in aligned[1:]) > 0.5
    # Its n-best got CTC log-likelihoods: the true transcript is the likelier, both are log-probabilities.
    wrong, right = (h["ctc_score"] for h in other["c0"]["nbest"])
    assert wrong < right <= 0.0
    assert [w["word"] for w in second["c1"]["words"]] == texts[1].split()
    assert second["c1"]["nbest"][0]["ctc_score"] > wrong
    refs = {r["id"]: t for r, t in zip(records, texts)}
    stats = first_pass_stats({r["id"]: r for r in records}, refs)
    assert stats["wer"] == 0.0 and stats["nbest_oracle_wer"] == 0.0 and stats["lattice_depth"] >= 1
    stats = first_pass_stats(other, refs)
    assert stats["wer"] > 0 and stats["confidence_auc"] == 1.0  # the one wrong word has the lowest confidence


def test_roc_auc_is_the_pairwise_probability():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 5, 40) / 4  # ties on purpose
    correct = rng.random(40) < 0.6
    pairs = [(a > b) + 0.5 * (a == b) for a, b in itertools.product(conf[correct], conf[~correct])]
    assert roc_auc(conf, correct) == pytest.approx(np.mean(pairs))
    assert np.isnan(roc_auc([0.5, 0.7], [True, True]))
