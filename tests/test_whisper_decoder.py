"""Whisper's decoder as the second pass (arch whisper_decoder_mdm and its AR twin whisper_decoder_ar):
our decoder code reproduces Hugging Face's Whisper exactly, padded rows decode as they do alone, the
training loss reads only the masked positions, and a tiny model learns and decodes through the samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import espeak_speech, fake_batch, overfit, tiny_model_config, tiny_whisper_decoder

from whisper_llada.data.audio import Audio
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.diffusion.loss import forward_process, masked_diffusion_loss
from whisper_llada.models.build import build_model


def tiny(sp_model, arch: str, tokenizer_vocab: int, seed: int = 0, llm=None, loss=None):
    torch.manual_seed(seed)
    # A decoder as wide as the test's BPE vocabulary (Whisper's own would be 51865 ids).
    whisper = {"config": tiny_whisper_decoder(tokenizer_vocab)}
    return build_model(
        tiny_model_config(
            sp_model,
            arch,
            whisper=whisper,
            llm={"train": "full", **(llm or {})},
            loss={"response_length": 40, "ctc_weight": 0, **(loss or {})},
        )
    )


@pytest.fixture(scope="module")
def real_ar(converted):
    from whisper_llada.config.model import ModelConfig
    from whisper_llada.utils.config import from_dict

    _, dst = converted
    cfg = {
        "arch": "whisper_decoder_ar",
        "whisper": {"path": str(dst), "window": "full"},
        "llm": {"train": "full"},
        "tokenizer": {"type": "whisper", "path": str(dst), "mask_token": "<|startoflm|>"},
        "loss": {"response_length": 64, "ctc_weight": 0},
    }
    return build_model(from_dict(ModelConfig, cfg, "test")).eval(), dst


def test_greedy_decoding_equals_transformers_whisper(real_ar):
    """Zero-shot tiny.en: our decoder (causal, KV cache, cross-attention computed once) and tokenizer
    give Hugging Face's greedy transcripts, word for word."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    model, dst = real_ar
    wavs = espeak_speech([("the quick brown fox jumps over the lazy dog", "en-us"), ("I will see you there", "en+f3")])
    feats = WhisperFeatureExtractor.from_pretrained(dst)(wavs, sampling_rate=16000, return_tensors="pt").input_features
    hf = WhisperForConditionalGeneration.from_pretrained(dst).eval()
    tok = WhisperTokenizerFast.from_pretrained(dst)
    with torch.no_grad():
        theirs = tok.batch_decode(
            hf.generate(input_features=feats, num_beams=1, max_new_tokens=40), skip_special_tokens=True
        )
    audio = Audio.features(feats.transpose(1, 2).contiguous(), torch.full((len(wavs),), feats.shape[-1]))
    stats = PassCounts()
    ours = model.transcribe({"audio": audio}, DecodeConfig(mode="autoregressive", gen_len=40), stats=stats)
    assert ours == [t.strip() for t in theirs] and all(len(t.split()) >= 4 for t in ours)
    assert (stats.forward_passes > 4).all()
    # The transcripts' casing: upper-case training text goes in as Whisper writes it, and back.
    assert model.tokenizer.decode(model.tokenizer.encode("I'M HERE AND I KNOW IT")) == "I'm here and I know it"
    assert model.tokenizer.prompt_ids("ignored") == [50257, 50362]


def test_word_confidences_reach_whisper_tokens(real_ar):
    """A first pass's word confidences map onto Whisper's tokens, although Whisper's tokenizer
    sentence-cases what it encodes (a word alone would start with a capital and split otherwise)."""
    from whisper_llada.inference import token_confidences

    model, _ = real_ar
    words = "THE SOUL JUST LITANY UNDER THEIR HEAVY BURDENS AND MELTING ICE PACKS".split()
    record = {"id": "x", "text": " ".join(words), "words": [{"word": w, "conf": i / 100} for i, w in enumerate(words)]}
    conf = token_confidences(model.tokenizer, record)
    assert len(conf) == len(model.tokenizer.encode(record["text"]))
    assert sorted(set(conf)) == [i / 100 for i in range(len(words))]  # every word has its tokens
    assert conf == sorted(conf)  # in the words' order
    record["text"] += " EXTRA"
    with pytest.raises(ValueError, match="do not tokenise like its text"):
        token_confidences(model.tokenizer, record)


def test_padded_rows_decode_as_they_do_alone(sp_model, tokenizer):
    feats, lens, _ = fake_batch(3, seed=4)
    for arch, cfg in (
        ("whisper_decoder_mdm", DecodeConfig(mode="decoding", gen_len=10, steps=5, block_length=10)),
        ("whisper_decoder_ar", DecodeConfig(mode="autoregressive", gen_len=10)),
        ("whisper_decoder_ar", DecodeConfig(mode="autoregressive", gen_len=10, num_beams=3)),
    ):
        model = tiny(sp_model, arch, tokenizer.vocab_size).eval()
        together = model.transcribe({"audio": Audio.features(feats, lens)}, cfg)
        alone = [
            model.transcribe({"audio": Audio.features(feats[i : i + 1, : lens[i]], lens[i : i + 1])}, cfg)[0]
            for i in range(3)
        ]
        assert together == alone, arch


def test_beam_nbest_scores_are_the_teacher_forced_log_probabilities(real_ar):
    """The AR twin's beam n-best on real speech: best first, each score the log-probability that
    teacher forcing (n-best rescoring by the twin) gives the same text, EOS included."""
    model, dst = real_ar
    from transformers import WhisperFeatureExtractor

    wavs = espeak_speech([("a stitch in time saves nine", "en-us"), ("never put off until tomorrow", "en+m3")])
    feats = WhisperFeatureExtractor.from_pretrained(dst)(wavs, sampling_rate=16000, return_tensors="pt").input_features
    batch = {"audio": Audio.features(feats.transpose(1, 2).contiguous(), torch.full((len(wavs),), feats.shape[-1]))}
    nbests = model.nbest(batch, DecodeConfig(mode="autoregressive", gen_len=40, num_beams=4))
    scored = model.score_texts(batch, [[t for t, _ in nb] for nb in nbests], DecodeConfig(mode="nbest_rescoring"))
    tok, checked = model.tokenizer, 0
    for nb, want in zip(nbests, scored):
        scores = [s for _, s in nb]
        assert len(nb) == 4 and scores == sorted(scores, reverse=True) and len(nb[0][0].split()) >= 4
        for (text, score), tf in zip(nb, want):
            # Teacher forcing encodes the text in sentence case; a hypothesis in another casing was
            # other tokens.
            if tok.decode(tok.encode(text)) == text:
                assert score == pytest.approx(tf, abs=1e-3), text
                checked += 1
    assert checked >= 4


def test_what_fine_tuning_trains(sp_model, tokenizer):
    """Learned positions always stay as pretrained; the tied embeddings too with freeze_embeddings,
    and then training changes the layers only."""
    for freeze in (False, True):
        model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size, llm={"freeze_embeddings": freeze})
        dec = model.llm.decoder
        assert not dec.embed_positions.weight.requires_grad
        assert dec.embed_tokens.weight.requires_grad is not freeze
        assert dec.layers[0].fc1.weight.requires_grad
    feats, lens, texts = fake_batch(2, seed=7)
    before = dec.embed_tokens.weight.detach().clone()
    model(texts, Audio.features(feats, lens))["loss"].backward()
    assert dec.embed_tokens.weight.grad is None and dec.layers[0].fc1.weight.grad is not None
    assert torch.equal(before, dec.embed_tokens.weight)


def test_auxiliary_next_token_loss(sp_model, tokenizer):
    """loss.ar_weight adds the causal next-token loss of the same decoder to the diffusion loss."""
    feats, lens, texts = fake_batch(2, seed=8)
    audio = Audio.features(feats, lens)
    model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size, loss={"ar_weight": 0.5}).eval()
    twin = tiny(sp_model, "whisper_decoder_ar", tokenizer.vocab_size).eval()
    twin.llm.load_state_dict(model.llm.state_dict())
    with torch.no_grad():
        got = model(texts, audio, generator=torch.Generator().manual_seed(2))
        model.cfg.loss.ar_weight = 0.0
        plain = model(texts, audio, generator=torch.Generator().manual_seed(2))
        ar = twin(texts, audio)["loss"]
    assert "ar_loss" not in plain and got["ar_loss"] == pytest.approx(float(ar), rel=1e-5)
    assert got["loss"] == pytest.approx(float(plain["loss"] + 0.5 * ar), rel=1e-5)


def test_training_loss_reads_only_the_masked_positions(sp_model, tokenizer):
    """The model's loss (logits of masked positions only) equals the generic masked-diffusion loss
    over the full response logits, both weightings."""
    feats, lens, texts = fake_batch(3, seed=5)
    model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size).eval()
    for weighting in ("plain", "llada"):
        model.cfg.loss.weighting = weighting
        with torch.no_grad():
            got = model(texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(1))["loss"]
            frames, mask, _ = model.prefix(Audio.features(feats, lens))
            target = model.response_ids(texts)
            noisy, masked, p = forward_process(
                target, model.mask_id, model.cfg.loss.eps, torch.Generator().manual_seed(1)
            )
            den = model.denoiser()
            full = den.response_logits(den.prefill(frames, mask), noisy, torch.ones_like(noisy, dtype=torch.bool))
            want = masked_diffusion_loss(full, target, masked, p, weighting)
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="text alone"):
        model(texts, None)


def test_block_diffusion_trains_on_what_semi_ar_decoding_meets(sp_model, tokenizer):
    """Block diffusion (llm.block_size): the training pass over [noisy][clean] gives a block the
    logits the single-sequence pass of semi-AR decoding gives it once the blocks before it are
    committed; a block never sees a later one; settings it cannot honour are refused."""
    feats, lens, texts = fake_batch(3, seed=2)
    model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size, llm={"block_size": 4}).eval()
    with torch.no_grad():
        frames, mask, _ = model.prefix(Audio.features(feats, lens))
        clean = model.response_ids(texts)[:, :16]
        den = model.denoiser()
        state = den.prefill(frames, mask)
        ones = torch.ones_like(clean, dtype=torch.bool)
        # Masks in every block: each block's training logits are those decoding gives it with the
        # blocks before it committed and the ones after it all masks.
        noisy = clean.masked_fill(
            torch.rand(clean.shape, generator=torch.Generator().manual_seed(0)) < 0.5, model.mask_id
        )
        training = den.response_logits(state, noisy, ones, clean=clean)
        for c in range(4):
            canvas = torch.cat([clean[:, : 4 * c], noisy[:, 4 * c : 4 * c + 4]], 1)
            canvas = torch.cat([canvas, torch.full_like(clean[:, canvas.shape[1] :], model.mask_id)], 1)
            decoding = den.response_logits(state, canvas, ones)
            torch.testing.assert_close(
                training[:, 4 * c : 4 * c + 4], decoding[:, 4 * c : 4 * c + 4], rtol=1e-4, atol=1e-4
            )
        # Whatever fills block 3, blocks 0-2 (predicted from positions before it) do not change.
        other = canvas.clone()
        other[:, 12:] = clean[:, :4]
        torch.testing.assert_close(den.response_logits(state, other, ones)[:, :13], decoding[:, :13])
        assert not torch.allclose(den.response_logits(state, other, ones)[:, 13:], decoding[:, 13:])
        # The loss reads the two-copy pass: the masked positions' logits of it.
        masked = noisy == model.mask_id
        torch.testing.assert_close(
            model.training_logits(frames, mask, noisy, None, masked, clean), training[masked], rtol=1e-4, atol=1e-4
        )
        # Without gradients (scoring) the clean copy's keys and values are kept for every call on
        # that clean tensor and each call runs the masked copy alone: the same logits as the
        # two-copy pass training runs, for a subset of rows, padding and a second mask pattern.
        real = ones.clone()
        real[0, 11:] = False
        rows = torch.tensor([0, 2])
        other_noisy = clean.masked_fill(torch.arange(16) % 3 == 1, model.mask_id)
        kept = den.prefill(frames, mask)
        for n in (noisy, other_noisy):
            with torch.enable_grad():
                joint = den.response_logits(state, n, real, rows, clean=clean)
            torch.testing.assert_close(
                den.response_logits(kept, n, real, rows, clean=clean), joint, rtol=1e-4, atol=1e-4
            )
            torch.testing.assert_close(
                den.response_logits(kept, n, real, clean=clean)[rows], joint, rtol=1e-4, atol=1e-4
            )
        assert kept.clean_context.clean is clean
        # The state is typed: what a denoiser keeps has a field, not an attribute added at run time.
        with pytest.raises(AttributeError):
            kept.blocks = None
        # Pseudo-log-likelihood in 4 groups counts what runs: the prompt and the clean copy once,
        # the masked copy each group.
        from whisper_llada.diffusion.scoring import pseudo_log_likelihood

        counted = PassCounts()
        pseudo_log_likelihood(den, den.prefill(frames, mask), clean, ones, ones, 4, model.mask_id, counted)
        P = len(model.prompt_ids)
        assert (counted.positions == (P + 2 * 16) + 3 * 16).all(), counted
        # The exact block cache (decoding's default) gives the tokens of recomputing every step,
        # running a block's positions a step instead of the prompt and the whole canvas.
        from whisper_llada.diffusion.sampling import generate

        out, stats = {}, {}
        for cache in ("none", "auto"):
            den = model.denoiser(DecodeConfig(mode="decoding", cache=cache))
            stats[cache] = PassCounts()
            out[cache] = generate(
                den,
                frames,
                prefix_mask=mask,
                gen_length=16,
                steps=16,
                block_length=4,
                mask_id=model.mask_id,
                eos_id=-1,
                stats=stats[cache],
            )
        assert type(model.denoiser(DecodeConfig(mode="decoding"))).__name__ == "BlockCacheDenoiser"
        assert torch.equal(out["none"], out["auto"])
        # Sequence positions per row beyond the encoder frames' one pass: 16 steps of the prompt and
        # the canvas, against 16 steps of a block plus the prompt and 3 blocks cached once.
        P = len(model.prompt_ids)
        assert (stats["none"].positions - frames.shape[1] == 16 * (P + 16)).all(), stats
        assert (stats["auto"].positions - frames.shape[1] == 16 * 4 + P + 12).all(), stats
    batch = {"audio": Audio.features(feats, lens)}
    with pytest.raises(ValueError, match="divides 4"):
        model.transcribe(batch, DecodeConfig(mode="decoding", gen_len=16, steps=16, block_length=8))
    assert len(model.transcribe(batch, DecodeConfig(mode="decoding", gen_len=16, steps=16, block_length=4))) == 3
    # Deliberation masks across blocks: the block cache steps aside and the model recomputes.
    delib = DecodeConfig(mode="diffusion_deliberation", mask_ratio=0.5, masking_type="random", steps=8)
    assert len(model.deliberate(batch, texts, delib, generator=torch.Generator().manual_seed(0))) == 3
    with pytest.raises(ValueError, match="block_size"):
        tiny(sp_model, "whisper_decoder_ar", tokenizer.vocab_size, llm={"block_size": 4})


@pytest.mark.slow
def test_tiny_diffusion_decoder_learns_and_decodes_through_the_samplers(sp_model, tokenizer):
    model = tiny(sp_model, "whisper_decoder_mdm", tokenizer.vocab_size, seed=1)
    feats, lens, texts = fake_batch(4, seed=3)
    losses = overfit(model, texts, Audio.frames(*model.run_encoder(feats, lens)))
    model.eval()
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    batch = {"audio": Audio.features(feats, lens)}
    stats = PassCounts()
    assert (
        model.transcribe(batch, DecodeConfig(mode="decoding", gen_len=40, steps=40, block_length=40), stats=stats)
        == texts
    )
    # Rescoring: each reference outscores a corrupted copy of itself.
    wrong = [t.replace(t.split()[0], "RIVER" if t.split()[0] != "RIVER" else "STONE", 1) for t in texts]
    scores = model.score_texts(batch, [[t, w] for t, w in zip(texts, wrong)], DecodeConfig(mode="nbest_rescoring"))
    assert all(s[0] > s[1] for s in scores), scores
