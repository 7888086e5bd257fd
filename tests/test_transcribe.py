"""End to end on a tiny model: after overfitting four utterances, every decoding strategy
returns their transcripts, and deliberation repairs corrupted first passes."""

from __future__ import annotations

import pytest
import torch
from conftest import fake_batch, tiny_model_config

from whisper_llada.data.audio import Audio
from whisper_llada.decoding.settings import DecodeConfig, decode_configs
from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.models import build_model

QF = {
    "num_layers": 1,
    "hidden_size": 32,
    "num_heads": 2,
    "intermediate_size": 64,
    "trim_to_audio": True,
    "dropout": 0.0,
}


def overfit(sp_model, arch, steps=600, seed=0):
    torch.manual_seed(seed)
    model = build_model(tiny_model_config(sp_model, arch, qformer=QF))
    feats, lens, texts = fake_batch(4, seed=3)
    enc = model.run_encoder(feats, lens)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(texts, Audio.frames(*enc), generator=g)["loss"].backward()
        opt.step()
    return model.eval(), {"audio": Audio.features(feats, lens)}, texts


@pytest.fixture(scope="module")
def llada(sp_model):
    return overfit(sp_model, "whisper_llada")


@pytest.mark.parametrize(
    "cfg",
    [
        dict(mode="decoding", gen_len=24, steps=24, block_length=24),
        dict(mode="decoding", gen_len=24, steps=12, block_length=24),
        dict(mode="decoding", gen_len=24, steps=12, block_length=8),
    ],
)
def test_direct_decoding_recovers_transcripts(llada, cfg):
    model, batch, texts = llada
    stats = PassCounts()
    assert model.transcribe(batch, DecodeConfig(**cfg), stats=stats) == texts
    assert (stats.forward_passes <= cfg["steps"]).all()


@pytest.mark.parametrize(
    "cfg",
    [
        dict(mode="diffusion_deliberation", mask_ratio=0.5, masking_type="low_confidence"),
        dict(mode="diffusion_deliberation", mask_ratio=1.0, masking_type="random"),
        dict(mode="semi_ar_deliberation", num_chunks=2, steps=16),
    ],
)
def test_deliberation_repairs_first_pass(llada, cfg):
    model, batch, texts = llada
    # Corrupt one word per utterance, keeping the token count where the word swap allows.
    corrupted = [t.replace(t.split()[0], "RIVER" if t.split()[0] != "RIVER" else "STONE", 1) for t in texts]
    out = model.deliberate(batch, corrupted, DecodeConfig(**cfg), generator=torch.Generator().manual_seed(0))
    fixed = sum(o == t for o, t in zip(out, texts))
    if cfg["mode"] == "diffusion_deliberation" and cfg["masking_type"] == "low_confidence":
        # The wrong word is the least confident: it is masked and repaired where lengths agree.
        same_len = [len(model.tokenizer.encode(c)) == len(model.tokenizer.encode(t)) for c, t in zip(corrupted, texts)]
        assert fixed >= sum(same_len) - 1
    else:
        assert fixed >= 2
    assert model.deliberate(batch, texts, DecodeConfig(**cfg)) == texts  # a correct first pass stays


def test_first_pass_confidences_choose_the_masks(llada):
    """masking_type first_pass masks the tokens of the words the first pass doubts, not others."""
    from whisper_llada.inference import token_confidences

    model, batch, texts = llada
    corrupted = [t.replace(t.split()[0], "RIVER" if t.split()[0] != "RIVER" else "STONE", 1) for t in texts]
    records = [
        {
            "id": str(i),
            "text": c,
            "words": [{"word": w, "conf": 0.05 if j == 0 else 0.95} for j, w in enumerate(c.split())],
        }
        for i, c in enumerate(corrupted)
    ]
    conf = [token_confidences(model.tokenizer, r) for r in records]
    cfg = DecodeConfig(mode="diffusion_deliberation", mask_ratio=0.3, masking_type="first_pass", first_pass="ctc")
    assert cfg.suffix().endswith("-on-ctc")
    out = model.deliberate(batch, corrupted, cfg, confidences=conf, generator=torch.Generator().manual_seed(0))
    same_len = [len(model.tokenizer.encode(c)) == len(model.tokenizer.encode(t)) for c, t in zip(corrupted, texts)]
    assert sum(o == t for o, t in zip(out, texts)) >= sum(same_len) - 1
    # Trusting the (wrong) first word most leaves it in place: masks go to the other words.
    for r in records:
        for j, w in enumerate(r["words"]):
            w["conf"] = 0.99 if j == 0 else 0.05 if j == len(r["words"]) - 1 else 0.5
    conf = [token_confidences(model.tokenizer, r) for r in records]
    cfg = DecodeConfig(mode="diffusion_deliberation", mask_ratio=0.3, masking_type="first_pass")
    out = model.deliberate(batch, corrupted, cfg, confidences=conf, generator=torch.Generator().manual_seed(0))
    assert all(o.startswith(c.split()[0]) for o, c in zip(out, corrupted))  # its tokens stay
    with pytest.raises(ValueError, match="masking_type 'given'"):
        DecodeConfig(mode="diffusion_deliberation", masking_type="given")


def test_mode_checks(llada):
    model, batch, texts = llada
    with pytest.raises(ValueError, match="transcribe"):
        model.transcribe(batch, DecodeConfig(mode="diffusion_deliberation"))
    with pytest.raises(ValueError, match="deliberation mode"):
        model.deliberate(batch, texts, DecodeConfig(mode="decoding"))


def test_ar_twin_same_entry_point(sp_model):
    model, batch, texts = overfit(sp_model, "whisper_llama", steps=150)
    stats = PassCounts()
    assert model.transcribe(batch, DecodeConfig(mode="autoregressive", gen_len=24), stats=stats) == texts
    assert stats.forward_passes.tolist() == [len(model.tokenizer.encode(t)) + 1 for t in texts]
    assert model.transcribe(batch, DecodeConfig(mode="autoregressive", gen_len=24, num_beams=3)) == texts


def test_decode_config_list_and_suffixes():
    cfgs = decode_configs(
        [
            {"mode": "decoding", "steps": 64, "block_length": 32},
            {"mode": "decoding", "steps": 128},
            {"mode": "diffusion_deliberation", "mask_ratio": 0.3, "masking_type": "random"},
            {"mode": "semi_ar_deliberation", "num_chunks": 4},
            {"mode": "autoregressive", "num_beams": 4},
        ],
        "conf.yaml:decode",
    )
    assert [c.suffix() for c in cfgs] == [
        "semi-ar-block-32-gen-128-steps-64",
        "diffusion-gen-128-steps-128",
        "delib-random-ratio-0.3-steps-128",
        "delib-semi-ar-chunks-4-steps-128",
        "beam-4-len-128",
    ]
    with pytest.raises(ValueError, match="appear more than once"):
        decode_configs([{"steps": 8}, {"steps": 8}], "x")
    with pytest.raises(ValueError, match=r"x\[0\]: unknown key"):
        decode_configs([{"stpes": 8}], "x")


def test_prefix_cache_serves_every_setting_of_a_call(llada):
    """The front end runs once per batch however many settings decode it, with the same output,
    and each setting is charged the seconds that run took; a full cache stores nothing more."""
    from whisper_llada.inference import FrontEndCache

    model, batch, texts = llada
    batch = {**batch, "cut_ids": ["a", "b", "c", "d"]}
    calls = []
    real = model.batch_prefix
    model.batch_prefix = lambda b: calls.append(1) or real(b)
    try:
        cache = FrontEndCache()
        first, s1 = cache.get(model, batch, "cpu")
        again, s2 = cache.get(model, batch, "cpu")
        assert len(calls) == 1 and again is first and s1 == s2 > 0
        # Computed without autograd: a graph kept alive per batch made every later pass slower.
        assert not any(t.requires_grad for t in first if t is not None)
        setting = DecodeConfig(mode="decoding", gen_len=24, steps=12, block_length=24)
        assert model.transcribe({**batch, "prefix": first}, setting) == model.transcribe(batch, setting) == texts
        full = FrontEndCache(max_bytes=0)
        full.get(model, batch, "cpu")
        full.get(model, batch, "cpu")
        assert len(calls) == 5 and not full.entries  # 1 + the two transcribes above + 2 uncached
    finally:
        model.batch_prefix = real


def test_rescoring_ranks_the_true_transcript_first(llada):
    """The pseudo-log-likelihood prefers each cut's own transcript to corrupted ones, is the exact
    per-token one when every group holds one token, and does not depend on what shares its batch."""
    from whisper_llada.diffusion.scoring import pseudo_log_likelihood

    model, batch, texts = llada
    wrong = [t.replace(t.split()[0], "RIVER" if t.split()[0] != "RIVER" else "STONE", 1) for t in texts]
    short = [" ".join(t.split()[:-1]) for t in texts]
    cfg = DecodeConfig(mode="nbest_rescoring", pll_groups=3, batch_size=5)
    stats = PassCounts()
    scores = model.score_texts(batch, [[w, t, s] for w, t, s in zip(wrong, texts, short)], cfg, stats=stats)
    assert all(max(range(3), key=lambda k: sc[k]) == 1 for sc in scores), scores
    assert (stats.forward_passes == 3 * 3).all()  # 3 candidates x 3 groups, in chunks of 5 rows
    # Alone, in a batch of one, the same score (padding and chunking change nothing).
    one = {"prefix": tuple(None if t is None else t[2:3] for t in model.batch_prefix(batch))}
    alone = model.score_texts(one, [[texts[2]]], DecodeConfig(mode="nbest_rescoring", pll_groups=3))
    assert alone[0][0] == pytest.approx(scores[2][1], abs=1e-4)
    # Exact pseudo-log-likelihood: each token (and the EOS) masked alone, by hand.
    ids = model.tokenizer.encode(texts[0])
    prefix, mask, positions = model.batch_prefix(batch)
    resp = torch.tensor([ids + [model.eos_id] * 5])
    by_hand = 0.0
    for i in range(len(ids) + 1):
        noisy = resp.clone()
        noisy[0, i] = model.mask_id
        logits = model.logits(prefix[:1], mask[:1], noisy, None if positions is None else positions[:1])
        by_hand += torch.log_softmax(logits[0, i].float(), -1)[resp[0, i]].item()
    den = model.denoiser()
    state = den.prefill(prefix[:1], mask[:1], None if positions is None else positions[:1])
    scored = torch.zeros_like(resp, dtype=torch.bool)
    scored[0, : len(ids) + 1] = True
    exact = pseudo_log_likelihood(den, state, resp, torch.ones_like(scored), scored, 64, model.mask_id)
    assert exact.item() == pytest.approx(by_hand, abs=1e-3)
