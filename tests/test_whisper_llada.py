"""Whisper-LLaDA and its autoregressive twin: layout, LoRA, padding, caching, overfitting."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_WHISPER, fake_batch, tiny_model_config

from whisper_llada.config.model import ModelConfig
from whisper_llada.data.audio import Audio
from whisper_llada.models import build_model
from whisper_llada.utils.config import from_dict


def build(sp_model, arch="whisper_llada", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny_model_config(sp_model, arch, **kw)).eval()


def test_prefix_layout_left_padded(sp_model):
    model = build(sp_model)
    feats, lens, _ = fake_batch(3)
    prefix, mask, _ = model.prefix(Audio.features(feats, lens))
    n_prompt = len(model.prompt_ids)
    n_audio = model.audio_tokens(Audio.features(feats, lens))[1].sum(1)
    assert mask.sum(1).tolist() == (n_audio + n_prompt).tolist()
    # Padding is on the left and every row ends with its audio tokens.
    for row in mask:
        first = int(row.int().argmax())
        assert not row[:first].any() and row[first:].all()
    # The prompt sits right before the audio in every row.
    emb = model.embed_tokens(model.prompt_ids)
    for i in range(3):
        start = prefix.shape[1] - int(mask[i].sum())
        torch.testing.assert_close(prefix[i, start : start + n_prompt], emb)


def test_padded_batch_equals_rows_alone(sp_model):
    model = build(sp_model)
    feats, lens, texts = fake_batch(3, seed=4)
    prefix, mask, _ = model.prefix(Audio.features(feats, lens))
    resp = model.response_ids(texts)
    resp[:, ::3] = model.mask_id
    batch = model.logits(prefix, mask, resp)
    for i in range(3):
        n = int(lens[i])
        p1, m1, _ = model.prefix(Audio.features(feats[i : i + 1, :n], lens[i : i + 1]))
        alone = model.logits(p1, m1, resp[i : i + 1])
        torch.testing.assert_close(batch[i], alone[0], atol=1e-4, rtol=1e-4)


def test_response_padded_with_eos_and_too_long_refused(sp_model):
    model = build(sp_model)
    resp = model.response_ids(["THE CAT"])
    ids = model.tokenizer.encode("THE CAT")
    assert resp[0, : len(ids)].tolist() == ids
    assert (resp[0, len(ids) :] == model.eos_id).all() and resp.shape[1] == 24
    with pytest.raises(ValueError, match="response_length 24"):
        model.response_ids([" ".join(["RIVER"] * 40)])
    with pytest.raises(ValueError, match="empty transcript"):
        model.response_ids([""])


def test_prompt_and_audio_never_masked(sp_model):
    model = build(sp_model)
    feats, lens, texts = fake_batch(2)
    seen = {}

    def spy(module, args, kwargs):
        seen["ids"] = kwargs["inputs_embeds"]

    handle = model.llm.register_forward_pre_hook(spy, with_kwargs=True)
    model(texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(0))
    handle.remove()
    prefix, _, _ = model.prefix(Audio.features(feats, lens))
    torch.testing.assert_close(seen["ids"][:, : prefix.shape[1]], prefix)


def test_lora_trains_only_adapters(sp_model):
    model = build(sp_model, llm__train="lora").train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    llm_trainable = [n for n in trainable if n.startswith("llm.")]
    assert llm_trainable and all("lora_" in n for n in llm_trainable)
    assert {n.split(".")[-2] for n in llm_trainable} == {"default"}
    targets = {n.split(".")[-4] for n in llm_trainable}
    assert targets == {"q_proj", "k_proj", "v_proj"}
    assert not any(n.startswith("encoder.") for n in trainable)
    assert any(n.startswith("qformer.") for n in trainable)
    # Released-checkpoint style key names.
    assert any(n.startswith("llm.base_model.model.model.transformer.blocks.0.q_proj.lora_A.default") for n in trainable)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    feats, lens, texts = fake_batch(2)
    for _ in range(2):  # lora_B starts at zero: the second step moves lora_A too
        opt.zero_grad()
        model(texts, Audio.features(feats, lens))["loss"].backward()
        opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p.detach())
        if n in trainable:
            assert moved or "LayerNorm" in n or "bias" in n, n
        else:
            assert not moved, n
    assert set(model.trainable_state_dict()) == set(trainable)


def test_encoder_frozen_and_in_eval(sp_model):
    model = build(sp_model).train()
    assert not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_encoder_from_hf_directory(tmp_path, sp_model):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(1)
    full = WhisperForConditionalGeneration(WhisperConfig(**TINY_WHISPER)).eval()
    full.save_pretrained(tmp_path)
    cfg = tiny_model_config(sp_model, whisper={"path": str(tmp_path)})
    model = build_model(cfg).eval()
    x = torch.randn(1, 80, 300)
    torch.testing.assert_close(model.encoder(x).last_hidden_state, full.model.encoder(x).last_hidden_state)


def test_config_errors_name_the_key(sp_model):
    with pytest.raises(ValueError, match=r"conf.yaml: qformer: unknown key\(s\) \['num_qeury'\]"):
        from_dict(ModelConfig, {"qformer": {"num_qeury": 4}}, "conf.yaml")
    with pytest.raises(ValueError, match="exactly one of path and config"):
        from_dict(ModelConfig, {"llm": {"config": {}}}, "conf.yaml")
    with pytest.raises(ValueError, match="embeds 40 ids"):
        build_model(
            tiny_model_config(
                sp_model,
                llm={"config": {"d_model": 32, "n_heads": 2, "n_layers": 1, "vocab_size": 40}, "train": "full"},
            )
        )


def test_both_loss_weightings_run(sp_model):
    feats, lens, texts = fake_batch(2)
    for weighting in ("plain", "llada"):
        model = build(sp_model, loss={"response_length": 24, "weighting": weighting})
        out = model(texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out["loss"]) and out["num_utts"] == 2


def test_ar_twin_cached_equals_uncached(sp_model):
    model = build(sp_model, arch="whisper_llama")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    feats, lens, texts = fake_batch(3, seed=2)
    model.train()
    for _ in range(15):  # a little training so greedy output is not a constant
        opt.zero_grad()
        model(texts, Audio.features(feats, lens))["loss"].backward()
        opt.step()
    model.eval()
    prefix, mask, _ = model.prefix(Audio.features(feats, lens))
    cached, _ = model.generate_ids(prefix, mask, max_new_tokens=12, use_cache=True)
    uncached, _ = model.generate_ids(prefix, mask, max_new_tokens=12, use_cache=False)
    assert torch.equal(cached, uncached)
    assert len(set(map(tuple, cached.tolist()))) > 1 or cached.shape[1] > 1
    seqs, scores = model.generate_ids(prefix, mask, max_new_tokens=12, num_beams=3, num_return_sequences=3)
    assert seqs.shape[0] == 9 and scores.shape == (9,)
    assert (scores.view(3, 3).diff(dim=1) <= 1e-6).all()  # n-best, best first


def test_ar_twin_padded_batch_equals_rows_alone(sp_model):
    model = build(sp_model, arch="whisper_llama")
    feats, lens, _ = fake_batch(3, seed=6)
    prefix, mask, _ = model.prefix(Audio.features(feats, lens))
    batch, _ = model.generate_ids(prefix, mask, max_new_tokens=6)
    for i in range(3):
        p1, m1, _ = model.prefix(Audio.features(feats[i : i + 1, : int(lens[i])], lens[i : i + 1]))
        alone, _ = model.generate_ids(p1, m1, max_new_tokens=6)
        n = alone.shape[1]
        assert batch[i, :n].tolist() == alone[0].tolist()


@pytest.mark.parametrize("arch", ["whisper_llada", "whisper_llama"])
def test_overfits_a_handful_of_utterances(sp_model, arch):
    """The whole stack learns: training loss falls by an order of magnitude within 400 steps (no wall-clock
    bound: speed is the benchmarks' business, and a loaded machine would fail it)."""
    model = build(
        sp_model,
        arch=arch,
        qformer={
            "num_layers": 1,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "trim_to_audio": True,
            "dropout": 0.0,
        },
    )
    feats, lens, texts = fake_batch(4, seed=3)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return sum(model(texts, Audio.features(feats, lens), generator=g)["loss"].item() for _ in range(8)) / 8

    start_loss = eval_loss()
    enc = model.run_encoder(feats, lens)  # frozen encoder: compute once
    model.train()
    for step in range(400):
        opt.zero_grad()
        model(texts, Audio.frames(*enc))["loss"].backward()
        opt.step()
        if step % 50 == 49 and eval_loss() < start_loss / 10:
            break
        model.train()
    final = eval_loss()
    assert final < start_loss / 10, (start_loss, final, step)


def test_audio_window_encoder_rows_independent_and_close_to_alone(sp_model):
    model = build(sp_model, whisper={"config": TINY_WHISPER, "window": "audio"})
    feats, lens, texts = fake_batch(3, seed=9)
    frames, real = model.run_encoder(feats, lens)
    assert frames.shape[1] < 150  # fewer frames than the full window
    for i in range(3):
        alone, r = model.run_encoder(feats[i : i + 1, : int(lens[i])], lens[i : i + 1])
        n = alone.shape[1]
        torch.testing.assert_close(frames[i, :n], alone[0], atol=1e-5, rtol=1e-4)
    # The whole model trains on it.
    out = model(fake_batch(3)[2], Audio.features(feats, lens))
    assert torch.isfinite(out["loss"])


def test_config_numbers_written_without_a_dot():
    from whisper_llada.config.recipe import TrainConfig

    cfg = from_dict(TrainConfig, {"lr": "3e-4", "warmup_steps": "1e3"}, "x")
    assert cfg.lr == 3e-4 and cfg.warmup_steps == 1000
    with pytest.raises(ValueError, match=r"x: lr: 'fast' is not a float"):
        from_dict(TrainConfig, {"lr": "fast"}, "x")


def test_ctc_auxiliary_loss(sp_model):
    model = build(sp_model, loss={"response_length": 24, "ctc_weight": 0.5})
    feats, lens, texts = fake_batch(2)
    out = model(texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(0))
    plain = build(sp_model, loss={"response_length": 24})(
        texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(0)
    )
    assert out["ctc_loss"] > 0
    torch.testing.assert_close(out["loss"], plain["loss"] + 0.5 * out["ctc_loss"])
    assert any(n.startswith("ctc_head.") for n in model.trainable_state_dict())


def test_batch_eos_padding(sp_model):
    model = build(sp_model, loss={"response_length": 24, "batch_eos_padding": 2})
    texts = ["THE CAT", "A RED BIRD SINGS"]
    longest = max(len(model.tokenizer.encode(t)) for t in texts)
    resp = model.response_ids(texts)
    assert resp.shape[1] == longest + 3 and (resp[:, -3:] == model.eos_id).all()
    with pytest.raises(ValueError, match="response_length 24"):
        model.response_ids([" ".join(["RIVER"] * 40)])


def test_ctc_compress_runs_by_hand():
    from whisper_llada.models.ctc_compress import ctc_compress

    blank = 9
    tokens = torch.arange(2 * 6 * 2, dtype=torch.float).view(2, 6, 2)
    mask = torch.tensor([[True] * 6, [True, True, True, True, False, False]])
    # row 0: runs 3 3 | b | 3 | 5 5 -> three kept runs; row 1: all blank -> one token (mean)
    labels = torch.tensor([[3, 3, blank, 3, 5, 5], [blank, blank, blank, blank, 4, 4]])
    out, keep = ctc_compress(tokens, mask, labels, blank)
    assert keep.tolist() == [[True, True, True], [True, False, False]]
    torch.testing.assert_close(out[0], torch.stack([tokens[0, :2].mean(0), tokens[0, 3], tokens[0, 4:].mean(0)]))
    torch.testing.assert_close(out[1, 0], tokens[1, :4].mean(0))  # padding (label 4) is not read


def test_ctc_compressed_prefix_matches_rows_alone(sp_model):
    with pytest.raises(ValueError, match="ctc_compress needs"):
        tiny_model_config(sp_model, ctc_compress=True)
    model = build(sp_model, loss={"response_length": 24, "ctc_weight": 0.5}, ctc_compress=True)
    with torch.no_grad():  # a CTC head that emits a label on every token: nothing is dropped
        model.ctc_head.bias.fill_(0).index_fill_(0, torch.tensor([model.tokenizer.mask_id]), -100.0)
    feats, lens, texts = fake_batch(3)
    prefix, mask, _ = model.prefix(Audio.features(feats, lens))
    raw = model.audio_tokens(Audio.features(feats, lens))[1].sum(1)
    n = mask.sum(1) - len(model.prompt_ids)
    assert (n >= 1).all() and (n <= raw).all()
    for i in range(3):
        p1, m1, _ = model.prefix(Audio.features(feats[i : i + 1, : lens[i]], lens[i : i + 1]))
        torch.testing.assert_close(p1[0], prefix[i, prefix.shape[1] - p1.shape[1] :], atol=1e-5, rtol=1e-5)
    out = model(texts, Audio.features(feats, lens))
    out["loss"].backward()
    assert model.qformer.proj.weight.grad.abs().sum() > 0


def test_aligned_positions_layout_and_padding(sp_model):
    from whisper_llada.diffusion.sampling import sequence_positions

    model = build(sp_model, positions="aligned")
    feats, lens, texts = fake_batch(3, seed=4)
    prefix, mask, pos = model.prefix(Audio.features(feats, lens))
    n_p = len(model.prompt_ids)
    emb = model.embed_tokens(model.prompt_ids)
    for i in range(3):
        n_a = int(mask[i].sum()) - n_p
        # [pad][audio][prompt]: the prompt last at positions 0.., audio token k at n_p + k ...
        torch.testing.assert_close(prefix[i, -n_p:], emb)
        assert pos[i, -n_p:].tolist() == list(range(n_p))
        assert pos[i, -n_p - n_a : -n_p].tolist() == list(range(n_p, n_p + n_a))
        # ... and the response's token k continues from the prompt onto audio token k's position.
        assert sequence_positions(pos[i : i + 1], n_a)[0, pos.shape[1] :].tolist() == list(range(n_p, n_p + n_a))
    resp = model.response_ids(texts)
    resp[:, ::3] = model.mask_id
    batch = model.logits(prefix, mask, resp, pos)
    assert (batch - model.logits(prefix, mask, resp)).abs().max() > 1e-4  # positions are used
    for i in range(3):
        p1, m1, q1 = model.prefix(Audio.features(feats[i : i + 1, : lens[i]], lens[i : i + 1]))
        torch.testing.assert_close(batch[i], model.logits(p1, m1, resp[i : i + 1], q1)[0], atol=1e-4, rtol=1e-4)


def test_ar_twin_aligned_positions_generate_as_trained(sp_model):
    """``generate`` (cached or not) continues the prefix positions exactly as the training loss does."""
    from whisper_llada.diffusion.sampling import sequence_positions

    model = build(sp_model, arch="whisper_llama", positions="aligned")
    feats, lens, _ = fake_batch(3, seed=6)
    prefix, mask, pos = model.prefix(Audio.features(feats, lens))
    cached, _ = model.generate_ids(prefix, mask, pos, max_new_tokens=5, use_cache=True)
    uncached, _ = model.generate_ids(prefix, mask, pos, max_new_tokens=5, use_cache=False)
    assert torch.equal(cached, uncached)
    for i in range(3):
        p1, m1, q1 = model.prefix(Audio.features(feats[i : i + 1, : int(lens[i])], lens[i : i + 1]))
        seq: list[int] = []
        with torch.no_grad():
            for _ in range(5):
                resp = torch.tensor([seq], dtype=torch.long)
                x = torch.cat([p1, model.embed_tokens(resp)], dim=1)
                ids = sequence_positions(q1, len(seq))
                logits = model.llm(
                    inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long), position_ids=ids
                ).logits
                seq.append(int(logits[0, -1].argmax()))
                if seq[-1] == model.tokenizer.eos_id:
                    break
        assert cached[i, : len(seq)].tolist() == seq


def test_two_stage_training(sp_model):
    model = build(sp_model, loss={"response_length": 24, "ctc_weight": 0.5}).train()
    feats, lens, texts = fake_batch(2)
    keys = set(model.trainable_state_dict())
    model.set_stage(frontend_only=True)  # stage 1: the front end alone, with CTC
    out = model(texts, Audio.features(feats, lens))
    torch.testing.assert_close(out["loss"], out["ctc_loss"])
    out["loss"].backward()
    assert model.qformer.proj.weight.grad is not None and model.ctc_head.weight.grad is not None
    assert all(p.grad is None for p in model.llm.parameters())
    model.zero_grad(set_to_none=True)
    model.set_stage(frontend_only=False)  # stage 2: the LLM on the frozen front end
    assert not model.qformer.training and model.llm.training
    out = model(texts, Audio.features(feats, lens))
    assert "ctc_loss" not in out
    out["loss"].backward()
    assert all(p.grad is None for p in model.qformer.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.llm.parameters())
    assert set(model.trainable_state_dict()) == keys  # checkpoints still hold the front end
    with pytest.raises(ValueError, match="ctc_weight"):
        build(sp_model).set_stage(frontend_only=True)


def test_front_end_from_another_model(sp_model):
    loss = {"response_length": 24, "ctc_weight": 0.5}
    src = build(sp_model, loss=loss, seed=1)
    twin = build(sp_model, arch="whisper_llama", loss=loss, seed=2)
    twin.load_frontend(src.trainable_state_dict(), "src.pt")
    for k, v in src.state_dict().items():
        if k.startswith(("qformer.", "ctc_head.")):
            torch.testing.assert_close(twin.state_dict()[k], v)
    other = build(
        sp_model,
        loss=loss,
        qformer={"num_layers": 1, "hidden_size": 16, "num_heads": 2, "intermediate_size": 32, "trim_to_audio": True},
    )
    with pytest.raises(ValueError, match="src.pt: checkpoint does not fit the model"):
        other.load_frontend(src.trainable_state_dict(), "src.pt")
