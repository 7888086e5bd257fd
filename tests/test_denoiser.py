"""The sampler/model interface: exact and approximate prefix caches, commit rules, per-row canvases."""

from __future__ import annotations

import pytest
import torch

from tests.test_sampling import EOS, MASK, PAD
from tests.test_sampling import tiny_llada as scripted_llada
from whisper_llada.data.audio import Audio
from whisper_llada.diffusion import CommitRule, Denoiser, PrefixCacheDenoiser, deliberate, generate, make_denoiser
from whisper_llada.diffusion.counts import PassCounts


def tiny_llada(seed=0):
    """A random LLaDA whose confidences stay below 1 (the samplers' scaled one saturates softmax to
    exact ties, which float rounding of two equal computations may then break differently)."""
    lm = scripted_llada(seed)
    with torch.no_grad():
        lm.model.transformer.ff_out.weight.div_(5)
    return lm


def left_padded_prefix(B=3, P=7, D=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(B, P, D, generator=g)
    mask = torch.ones(B, P, dtype=torch.bool)
    for i in range(B):
        mask[i, : i * 2] = False  # rows of different real lengths, left-padded
    return embeds, mask


def test_exact_cache_logits_equal_the_prefix_blind_full_pass():
    lm = tiny_llada()
    embeds, mask = left_padded_prefix()
    resp = torch.randint(0, 10, (3, 6))
    resp[:, ::2] = MASK
    rmask = torch.ones_like(resp, dtype=torch.bool)
    full = Denoiser(lm, prefix_attends_response=False)
    cached = PrefixCacheDenoiser(lm, prefix_attends_response=False)
    a = full.response_logits(full.prefill(embeds, mask), resp, rmask)
    state = cached.prefill(embeds, mask)
    b = cached.response_logits(state, resp, rmask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # a subset of rows sees only its own cache
    rows = torch.tensor([2, 0])
    torch.testing.assert_close(cached.response_logits(state, resp, rmask, rows), a[rows], rtol=1e-5, atol=1e-5)
    # the prefix-blind model is not the bidirectional one
    bidir = Denoiser(lm).response_logits(Denoiser(lm).prefill(embeds, mask), resp, rmask)
    assert not torch.allclose(a, bidir, atol=1e-3)


@pytest.mark.parametrize("block", [12, 4])
def test_exact_cache_gives_the_tokens_of_no_cache(block):
    lm = tiny_llada()
    embeds, mask = left_padded_prefix()
    kw = dict(prefix_mask=mask, gen_length=12, steps=12, block_length=block, mask_id=MASK, eos_id=EOS)
    s_full, s_cached = PassCounts(), PassCounts()
    a = generate(make_denoiser(lm, prefix_attends_response=False, cache="none"), embeds, stats=s_full, **kw)
    b = generate(make_denoiser(lm, prefix_attends_response=False, cache="auto"), embeds, stats=s_cached, **kw)
    assert torch.equal(a, b)
    # one pass more (the prefill over the prefix), then only the response positions per pass
    P, steps = embeds.shape[1], s_full.forward_passes
    assert torch.equal(s_cached.forward_passes, steps + 1)
    assert torch.equal(s_full.positions, steps * (P + 12))
    assert torch.equal(s_cached.positions, P + steps * 12)
    hyps = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 1, 2]]
    dk = dict(prefix_mask=mask, mask_ratio=0.5, steps=8, mask_id=MASK, eos_id=EOS, pad_id=PAD, pad_to=8)
    for mode in ("diffusion", "semi_ar"):
        x = deliberate(make_denoiser(lm, prefix_attends_response=False, cache="none"), embeds, hyps, mode=mode, **dk)
        y = deliberate(make_denoiser(lm, prefix_attends_response=False, cache="exact"), embeds, hyps, mode=mode, **dk)
        assert x == y


def test_approximate_cache_is_exact_right_after_a_refresh_and_counts_its_passes():
    lm = tiny_llada()
    embeds, mask = left_padded_prefix()
    resp = torch.full((3, 6), MASK)
    rmask = torch.ones_like(resp, dtype=torch.bool)
    ref = Denoiser(lm)
    want = ref.response_logits(ref.prefill(embeds, mask), resp, rmask)
    den = PrefixCacheDenoiser(lm, refresh=3)
    state = den.prefill(embeds, mask)
    first = den.response_logits(state, resp, rmask)  # a full pass: fills the cache
    again = den.response_logits(state, resp, rmask)  # the response alone on the cache, same response
    torch.testing.assert_close(first, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, want, rtol=1e-4, atol=1e-4)
    stats = PassCounts()
    # eos -1 never ends a row early; two blocks: the cache is refreshed at the second block's start
    generate(
        PrefixCacheDenoiser(lm, refresh=3),
        embeds,
        prefix_mask=mask,
        gen_length=12,
        steps=12,
        block_length=6,
        mask_id=MASK,
        eos_id=-1,
        stats=stats,
    )
    passes, positions = stats.forward_passes, stats.positions
    full = (positions - passes * 12) // embeds.shape[1]  # passes that recomputed the prefix
    assert passes.tolist() == [12] * 3
    assert full.tolist() == [4] * 3  # per block of 6 steps: full, 3 cached, full, 1 cached


def test_cache_switches_that_cannot_be_honoured_are_refused():
    lm = tiny_llada()
    with pytest.raises(ValueError, match="prefix_attends_response: false"):
        make_denoiser(lm, prefix_attends_response=True, cache="exact")
    with pytest.raises(ValueError, match="cache"):
        make_denoiser(lm, cache="sometimes")


def test_threshold_rule_bounds():
    lm = tiny_llada()
    embeds, mask = left_padded_prefix()
    kw = dict(prefix_mask=mask, gen_length=10, steps=10, block_length=10, mask_id=MASK, eos_id=EOS)
    s_fixed, s_one, s_all = PassCounts(), PassCounts(), PassCounts()
    fixed = generate(lm, embeds, stats=s_fixed, **kw)
    # tau 1: never sure, one commit a step, most confident first: the paper's rule at steps == length
    one = generate(lm, embeds, stats=s_one, commit="threshold", threshold=1.0, **kw)
    assert torch.equal(fixed, one)
    assert torch.equal(s_fixed.forward_passes, s_one.forward_passes)
    # a tiny tau commits everything in the first pass
    generate(lm, embeds, stats=s_all, commit=CommitRule("threshold", 1e-9), **kw)
    assert (s_all.forward_passes == 1).all()
    with pytest.raises(ValueError, match="low_confidence"):
        generate(lm, embeds, commit="threshold", remasking="random", **kw)


def test_per_row_canvas_equals_each_row_alone():
    lm = tiny_llada()
    embeds, mask = left_padded_prefix()
    lengths = torch.tensor([5, 9, 7])
    out = generate(
        lm, embeds, prefix_mask=mask, gen_length=lengths, steps=6, block_length=None, mask_id=MASK, eos_id=EOS
    )
    assert out.shape == (3, 9)
    for i in range(3):
        n = int(lengths[i])
        alone = generate(
            lm, embeds[i : i + 1, mask[i]], gen_length=n, steps=min(6, n), block_length=n, mask_id=MASK, eos_id=EOS
        )
        assert out[i, :n].tolist() == alone[0].tolist()
        assert (out[i, n:] == EOS).all()


def test_samplers_do_not_depend_on_the_default_dtype():
    lm = tiny_llada()
    embeds, mask = left_padded_prefix()
    hyps = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        for masking, conf in (
            ("low_confidence", None),
            ("first_pass", [[0.1] * len(h) for h in hyps]),
            ("random", None),
        ):
            deliberate(
                lm,
                embeds,
                hyps,
                prefix_mask=mask,
                masking_type=masking,
                confidences=conf,
                mask_ratio=0.5,
                steps=4,
                mask_id=MASK,
                eos_id=EOS,
                pad_id=PAD,
                generator=torch.Generator().manual_seed(0),
            )
    finally:
        torch.set_default_dtype(old)


def test_training_loss_of_a_prefix_blind_model_is_the_masked_full_pass(sp_model):
    from tests.conftest import fake_batch
    from tests.test_whisper_llada import build

    model = build(sp_model, prefix_attends_response=False, loss={"response_length": 48})
    feats, lens, texts = fake_batch(2, seed=5)
    prefix, pmask, pos = model.prefix(Audio.features(feats, lens))
    resp = model.response_ids(texts)
    got = model.logits(prefix, pmask, resp, pos)
    x = torch.cat([prefix, model.embed_tokens(resp)], dim=1)
    full = model.llm(
        inputs_embeds=x,
        attention_mask=torch.cat([pmask, torch.ones_like(resp, dtype=torch.bool)], 1),
        prefix_length=prefix.shape[1],
    ).logits[:, -resp.shape[1] :]
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-5)
    out = model(texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert any(p.grad is not None for p in model.qformer.parameters())


def test_gen_len_auto_canvas_from_duration_and_a_missing_token_rate_is_named(sp_model, tmp_path):
    import json

    from tests.test_whisper_llada import build
    from whisper_llada.data.lang import token_rate
    from whisper_llada.decoding.settings import DecodeConfig

    model = build(sp_model)  # reads audio tokens as they are: the canvas comes from the duration
    mask = torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(FileNotFoundError, match="token_rate.json.*lang stage"):
        model.canvas_lengths({"durations": [1.0, 2.5]}, mask, DecodeConfig(gen_len="auto"))
    rate = token_rate([10, 30, 20], [2.0, 3.0, 4.0], quantile=1.0)
    assert rate["tokens_per_second"] == 10.0 and rate["mean"] == 6.6667
    path = tmp_path / "token_rate.json"
    path.write_text(json.dumps(rate))
    got = model.canvas_lengths(
        {"durations": [1.0, 2.5]}, mask, DecodeConfig(gen_len="auto", token_rate=str(path), len_margin=3)
    )
    assert got.tolist() == [13, 24]  # ceil(10 t) + 3, at most response_length (24)
