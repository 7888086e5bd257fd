"""Beam search for semi-AR diffusion decoding (whisper_llada.diffusion.beam): batched, with or without
the block cache, it keeps the hypotheses and scores a plain one-hypothesis-at-a-time search keeps;
at one beam it is greedy decoding; settings it cannot honour are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import fake_batch
from test_whisper_decoder import tiny

from whisper_llada.data.audio import Audio
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.diffusion.beam import generate_beam
from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.diffusion.sampling import generate


def reference_beam(den, frames, mask, L, block, K, mask_id, eos_id):
    """One cut, one hypothesis a pass, every step recomputed: (score, tokens) best first."""
    state = den.prefill(frames, mask)
    ones = torch.ones(1, L, dtype=torch.bool)
    hyps = [(0.0, [mask_id] * L, False)]
    for _ in range(L):
        cands = []
        for score, x, ended in hyps:
            if ended:
                cands.append((score, x, True))
                continue
            logp = den.response_logits(state, torch.tensor([x]), ones)[0].float().log_softmax(-1)
            c = x.index(mask_id) // block
            open_ = [j for j in range(c * block, (c + 1) * block) if x[j] == mask_id]
            j = max(open_, key=lambda j: float(logp[j].max()))
            top = logp[j].topk(K)
            for lp, t in zip(top.values.tolist(), top.indices.tolist()):
                y = list(x)
                y[j] = t
                if t == eos_id:
                    y[j + 1 :] = [eos_id] * (L - j - 1)
                cands.append((score + lp, y, mask_id not in y))
        cands.sort(key=lambda h: -h[0])
        seen, hyps = set(), []
        for h in cands:
            if tuple(h[1]) not in seen:
                seen.add(tuple(h[1]))
                hyps.append(h)
        hyps = hyps[:K]
    return [(s, x) for s, x, _ in hyps]


def test_beam_keeps_what_a_plain_search_keeps(sp_model, tokenizer):
    feats, lens, _ = fake_batch(4, seed=4)
    model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size, seed=3, llm={"block_size": 4}).eval()
    L, K = 16, 4
    positions = {}
    with torch.no_grad():
        # Flatter distributions than random weights give: hypotheses then differ in early blocks and
        # trade places, which a block cache must follow.
        model.llm.decoder.layer_norm.weight.mul_(0.15)
        frames, mask, _ = model.prefix(Audio.features(feats, lens))
        ones = torch.ones(4, L, dtype=torch.bool)
        first = model.denoiser().response_logits(
            model.denoiser().prefill(frames, mask), torch.full((4, L), model.mask_id), ones
        )
        # Random weights rarely end a transcript: EOS is made a token they often propose (the second
        # choice at the first step), so hypotheses end at different steps and finished ones compete.
        eos = int(first[0, 1].topk(2).indices[1])
        refs = [
            reference_beam(model.denoiser(), frames[b : b + 1], mask[b : b + 1], L, 4, K, model.mask_id, eos)
            for b in range(4)
        ]
        for cache in ("none", "auto"):
            den = model.denoiser(DecodeConfig(mode="decoding", cache=cache))
            stats = PassCounts()
            tokens, scores = generate_beam(
                den,
                frames,
                prefix_mask=mask,
                gen_length=L,
                block_length=4,
                num_beams=K,
                mask_id=model.mask_id,
                eos_id=eos,
                stats=stats,
            )
            for b, ref in enumerate(refs):
                got = [(s, x) for s, x in zip(scores[b].tolist(), tokens[b].tolist()) if s > float("-inf")]
                assert [x for _, x in got] == [x for _, x in ref], (cache, b)
                assert [s for s, _ in got] == pytest.approx([s for s, _ in ref], abs=1e-4)
            positions[cache] = stats.positions
            assert (stats.forward_passes <= L + 1).all()
            # At one beam: greedy semi-AR decoding, one token a step.
            one, _ = generate_beam(
                den,
                frames,
                prefix_mask=mask,
                gen_length=L,
                block_length=4,
                num_beams=1,
                mask_id=model.mask_id,
                eos_id=eos,
            )
            greedy = generate(
                den,
                frames,
                prefix_mask=mask,
                gen_length=L,
                steps=L,
                block_length=4,
                mask_id=model.mask_id,
                eos_id=eos,
            )
            assert torch.equal(one[:, 0], greedy), cache
    # The block cache served the beams (it ran fewer positions than recomputing every step).
    assert (positions["auto"] < 0.75 * positions["none"]).all(), positions


def test_beam_through_transcribe_and_refusals(sp_model, tokenizer):
    feats, lens, _ = fake_batch(2, seed=5)
    model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size, llm={"block_size": 4}).eval()
    batch = {"audio": Audio.features(feats, lens)}
    cfg = DecodeConfig(mode="decoding", gen_len=8, steps=8, block_length=4, num_beams=2)
    assert cfg.suffix() == "semi-ar-block-4-gen-8-steps-8-beam-2"
    assert len(model.transcribe(batch, cfg)) == 2
    with pytest.raises(ValueError, match="steps = gen_len"):
        DecodeConfig(mode="decoding", gen_len=8, steps=4, block_length=4, num_beams=2)
    with pytest.raises(ValueError, match="commit"):
        DecodeConfig(mode="decoding", gen_len=8, steps=8, block_length=4, num_beams=2, commit="threshold")
    with pytest.raises(ValueError, match="num_beams is for decoding"):
        DecodeConfig(mode="diffusion_deliberation", num_beams=2)
    # Only an AR beam writes first-pass records, under a plain system name.
    with pytest.raises(ValueError, match="as_first_pass is for mode autoregressive"):
        DecodeConfig(mode="decoding", as_first_pass="twin")
    with pytest.raises(ValueError, match="first-pass system name"):
        DecodeConfig(mode="autoregressive", num_beams=2, as_first_pass="../twin")
    from whisper_llada.decoding.strategy import get_strategy
    from whisper_llada.inference import read_first_pass

    # Deliberating a first pass that no stage wrote names the file and what writes it.
    with pytest.raises(FileNotFoundError, match=r"twin/test\.jsonl\.gz.*as_first_pass: twin"):
        read_first_pass(Path("/nonexistent/twin/test.jsonl.gz"), [])

    # Only the Whisper-decoder AR twin's beam returns its hypotheses: the strategy asks the model's arch.
    as_first = DecodeConfig(mode="autoregressive", as_first_pass="twin")
    with pytest.raises(ValueError, match="WhisperDecoderMDM cannot run mode autoregressive.*Whisper-decoder AR twin"):
        get_strategy("autoregressive").check_model(model, as_first)
