"""Native LLaDA: equality with an independent reference, padding, bidirectionality, hub format."""

from __future__ import annotations

import json
import math

import pytest
import torch

from whisper_llada.models.llada import LLaDAConfig, LLaDAModelLM

CFG = dict(d_model=48, n_heads=4, n_layers=2, mlp_hidden_size=96, vocab_size=50, embedding_size=56, rope_theta=10000.0)


def make_model(**kw) -> LLaDAModelLM:
    torch.manual_seed(0)
    model = LLaDAModelLM(LLaDAConfig.from_dict({**CFG, **kw})).eval()
    # Non-trivial norm weights so a wrong norm shows.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith("ln_f.weight"):
                p.uniform_(0.5, 1.5)
    return model


def reference_logits(state: dict, cfg: dict, ids: torch.Tensor) -> torch.Tensor:
    """Written from docs/models.md (the LLaDA block) alone, with loops and explicit softmax attention."""
    d, H, eps = cfg["d_model"], cfg["n_heads"], 1e-5
    hd = d // H
    half = hd // 2

    def rms(x, w):
        x32 = x.double()
        return w.double() * (x32 / torch.sqrt((x32 * x32).mean(-1, keepdim=True) + eps))

    def rope(x):  # x (T, H, hd); pair dim i with dim i + half
        T = x.shape[0]
        out = x.clone()
        for pos in range(T):
            for i in range(half):
                theta = pos / (cfg["rope_theta"] ** (2 * i / hd))
                c, s = math.cos(theta), math.sin(theta)
                a, b = x[pos, :, i], x[pos, :, i + half]
                out[pos, :, i] = a * c - b * s
                out[pos, :, i + half] = b * c + a * s
        return out

    g = lambda name: state[f"model.transformer.{name}"].double()  # noqa: E731
    x = g("wte.weight")[ids]
    T = x.shape[0]
    for i in range(cfg["n_layers"]):
        b = lambda n, i=i: g(f"blocks.{i}.{n}.weight")  # noqa: E731
        h = rms(x, b("attn_norm"))
        q = rope((h @ b("q_proj").T).view(T, H, hd))
        k = rope((h @ b("k_proj").T).view(T, H, hd))
        v = (h @ b("v_proj").T).view(T, H, hd)
        att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
        att = torch.softmax(att, dim=-1)  # no causal mask
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, d)
        x = x + o @ b("attn_out").T
        h = rms(x, b("ff_norm"))
        gate = h @ b("ff_proj").T
        x = x + ((gate * torch.sigmoid(gate)) * (h @ b("up_proj").T)) @ b("ff_out").T
    return rms(x, g("ln_f.weight")) @ g("ff_out.weight").T


def test_matches_independent_reference():
    model = make_model()
    ids = torch.randint(0, 50, (1, 11))
    ours = model(input_ids=ids).logits[0].double()
    ref = reference_logits(model.state_dict(), CFG, ids[0])
    assert ours.shape == (11, 56)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_hub_weight_names():
    names = set(make_model().state_dict())
    assert "model.transformer.wte.weight" in names
    assert "model.transformer.ff_out.weight" in names
    assert "model.transformer.ln_f.weight" in names
    for n in ("attn_norm", "ff_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"):
        assert f"model.transformer.blocks.1.{n}.weight" in names


def test_bidirectional():
    model = make_model()
    ids = torch.randint(0, 50, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 50
    a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    # A change to the last token reaches the first position: attention is not causal.
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_padded_batch_equals_rows_alone(kv_heads):
    model = make_model(n_kv_heads=kv_heads)
    lens = [9, 5, 7]
    T = max(lens)
    rows = [torch.randint(0, 50, (n,)) for n in lens]
    # Left padding with a junk id: the mask must hide it and RoPE is relative.
    ids = torch.stack([torch.cat([torch.full((T - len(r),), 3), r]) for r in rows])
    mask = torch.stack([torch.arange(T) >= T - len(r) for r in rows])
    batch = model(input_ids=ids, attention_mask=mask).logits
    for i, r in enumerate(rows):
        alone = model(input_ids=r[None]).logits[0]
        torch.testing.assert_close(batch[i, T - len(r) :], alone, atol=1e-5, rtol=1e-4)


def test_position_ids():
    model = make_model()
    ids = torch.randint(0, 50, (2, 8))
    plain = model(input_ids=ids).logits
    pos = torch.arange(8).expand(2, -1)
    torch.testing.assert_close(model(input_ids=ids, position_ids=pos).logits, plain)
    # RoPE is relative: a shift of every position changes nothing; a swap of two does.
    torch.testing.assert_close(model(input_ids=ids, position_ids=pos + 7).logits, plain, atol=1e-5, rtol=1e-4)
    swapped = pos.clone()
    swapped[:, [2, 5]] = swapped[:, [5, 2]]
    assert (model(input_ids=ids, position_ids=swapped).logits - plain).abs().max() > 1e-4
    with pytest.raises(ValueError, match="position_ids"):
        model(input_ids=ids, position_ids=pos[:, :4])


@pytest.mark.parametrize("shard_bytes", [10**9, 20_000])
def test_hub_format_round_trip(tmp_path, shard_bytes):
    model = make_model()
    model.save_pretrained(tmp_path, max_shard_size=shard_bytes)
    sharded = (tmp_path / "model.safetensors.index.json").exists()
    assert sharded == (shard_bytes < 10**9)
    if sharded:
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
    loaded = LLaDAModelLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 50, (2, 6))
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert json.loads((tmp_path / "config.json").read_text())["d_model"] == 48


def test_from_pretrained_bf16(tmp_path):
    make_model().save_pretrained(tmp_path)
    loaded = LLaDAModelLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16
    assert loaded(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.bfloat16


def test_wrong_shape_checkpoint_names_file_and_key(tmp_path):
    make_model().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["mlp_hidden_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"shape mismatch.*ff_proj"):
        LLaDAModelLM.from_pretrained(tmp_path)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        LLaDAModelLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**CFG, "alibi": True}))
    with pytest.raises(ValueError, match="alibi"):
        LLaDAModelLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        LLaDAModelLM.from_pretrained(tmp_path)


def test_reads_hub_config_fields():
    hub = {
        "d_model": 4096,
        "n_heads": 32,
        "n_kv_heads": 32,
        "n_layers": 32,
        "mlp_hidden_size": 12288,
        "vocab_size": 126464,
        "embedding_size": 126464,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "max_sequence_length": 4096,
        "mask_token_id": 126336,
        "eos_token_id": 126081,
        "pad_token_id": 126081,
        "include_bias": False,
        "weight_tying": False,
        "block_type": "llama",
        "activation_type": "silu",
        "alibi": False,
        "rope": True,
        "layer_norm_type": "rms",
        "model_type": "llada",
    }
    cfg = LLaDAConfig.from_dict(hub)
    assert (cfg.mask_token_id, cfg.eos_token_id, cfg.padded_vocab) == (126336, 126081, 126464)
    with torch.device("meta"):
        model = LLaDAModelLM(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 7.5e9 < n < 8.5e9  # LLaDA-8B


def test_gradient_checkpointing_same_gradients():
    ids = torch.randint(0, 50, (2, 7))
    grads = []
    for ckpt in (False, True):
        model = make_model().train()
        if ckpt:
            model.gradient_checkpointing_enable()
        model(input_ids=ids).logits.square().mean().backward()
        grads.append(model.model.transformer.blocks[0].q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
