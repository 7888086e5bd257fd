"""Importing the authors' released checkpoint: key mapping, the report, and a decode from it."""

from __future__ import annotations

import pytest
import torch
from conftest import fake_batch, tiny_model_config

from whisper_llada.checkpoint.files import average_checkpoints, load_model_state
from whisper_llada.checkpoint.released import import_released_checkpoint
from whisper_llada.data.audio import Audio
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.models import build_model

BACK = (
    ("qformer.bert.", "adapter.bert."),
    ("qformer.query_tokens", "speech_query_tokens"),
    ("qformer.proj.", "linear_proj."),
    ("llm.", "llada."),
)
# Keys a BLIP-2 Q-Former carries that a speech Q-Former never reads.
EXTRAS = ("adapter.bert.embeddings.word_embeddings.weight", "adapter.bert.encoder.layer.0.intermediate.dense.weight")


def lora_model(sp_model, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny_model_config(sp_model, llm__train="lora", **kw)).eval()


def release_of(model) -> dict:
    """A checkpoint in the release's layout (its key names, random values) for ``model``'s shapes."""
    out = {}
    for k, v in model.trainable_state_dict().items():
        for ours, theirs in BACK:
            if k.startswith(ours):
                out[theirs + k[len(ours) :]] = torch.randn_like(v)
                break
        else:
            raise AssertionError(f"no release name for {k}")
    for k in EXTRAS:
        out[k] = torch.randn(8, 8)
    return out


def test_import_maps_every_weight_and_reports_the_rest(sp_model, tmp_path):
    src = lora_model(sp_model)
    released = release_of(src)
    assert any(
        k.startswith("llada.base_model.model.model.transformer.blocks.0.q_proj.lora_A.default") for k in released
    )
    torch.save({"model": released, "epoch": 143}, tmp_path / "checkpoint_best_epoch_143.pth")
    model = lora_model(sp_model, seed=1)
    report = import_released_checkpoint(model, tmp_path / "checkpoint_best_epoch_143.pth", tmp_path / "released.pt")
    assert report["unused"] == sorted(EXTRAS) and report["unfilled"] == [] and not report["wrong_shape"]
    state = model.state_dict()
    torch.testing.assert_close(state["qformer.query_tokens"], released["speech_query_tokens"])
    torch.testing.assert_close(state["qformer.proj.weight"], released["linear_proj.weight"])
    for k, v in released.items():
        if k.startswith("llada."):
            torch.testing.assert_close(state["llm." + k[len("llada.") :]], v)
    # The decode stages take the written file directly (--checkpoint): same weights, same output.
    fresh = lora_model(sp_model, seed=2)
    load_model_state(fresh, average_checkpoints([tmp_path / "released.pt"]), "released.pt")
    feats, lens, _ = fake_batch(2)
    cfg = DecodeConfig(mode="decoding", gen_len=8, steps=8, block_length=8)
    batch = {"audio": Audio.features(feats, lens)}
    assert fresh.transcribe(batch, cfg) == model.transcribe(batch, cfg)


def test_import_refuses_what_does_not_fit(sp_model, tmp_path):
    released = release_of(lora_model(sp_model))
    pth = tmp_path / "r.pth"
    torch.save({"model": released}, pth)
    other = lora_model(
        sp_model,
        qformer={
            "num_query": 2,
            "num_layers": 1,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "trim_to_audio": True,
        },
    )
    with pytest.raises(ValueError, match="do not fit the model config.*speech_query_tokens"):
        import_released_checkpoint(other, pth, tmp_path / "x.pt")
    del released["llada.base_model.model.model.transformer.blocks.1.v_proj.lora_B.default.weight"]
    torch.save({"model": released}, pth)
    with pytest.raises(ValueError, match="1 trainable parameters of the model get no weight"):
        import_released_checkpoint(lora_model(sp_model), pth, tmp_path / "y.pt")
    assert not (tmp_path / "y.pt").exists()
    report = import_released_checkpoint(lora_model(sp_model), pth, tmp_path / "y.pt", allow_unfilled=True)
    assert report["unfilled"] == ["llm.base_model.model.model.transformer.blocks.1.v_proj.lora_B.default.weight"]
    torch.save({"state_dict": released}, pth)
    with pytest.raises(ValueError, match="key 'model'"):
        import_released_checkpoint(lora_model(sp_model), pth, tmp_path / "z.pt")
    # a truncated download is named, with what to do
    pth.write_bytes(pth.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"r\.pth: cannot read the released checkpoint.*download it again"):
        import_released_checkpoint(lora_model(sp_model), pth, tmp_path / "w.pt")
