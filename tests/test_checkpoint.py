"""Training checkpoints: averaging, strict loading of trainable weights, atomic writes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_config

from whisper_llada.checkpoint.files import average_checkpoints, save_checkpoint
from whisper_llada.models import build_model
from whisper_llada.training.checkpoint import load_checkpoint


def test_average_and_load(tmp_path, sp_model):
    model = build_model(tiny_model_config(sp_model))
    names = list(model.trainable_state_dict())
    paths = []
    for i, scale in enumerate((1.0, 3.0)):
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.fill_(scale)
        paths.append(tmp_path / f"epoch-{i + 1}.pt")
        save_checkpoint(paths[-1], model, {"epoch": i + 1})
    avg = average_checkpoints(paths)
    assert set(avg) == set(names) and all(torch.all(v == 2.0) for v in avg.values())
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temp files
    fresh = build_model(tiny_model_config(sp_model))
    assert load_checkpoint(paths[0], fresh)["epoch"] == 1
    assert all(torch.all(v == 1.0) for v in fresh.trainable_state_dict().values())


def test_wrong_checkpoint_is_refused_by_name(tmp_path, sp_model):
    model = build_model(tiny_model_config(sp_model))
    save_checkpoint(tmp_path / "epoch-1.pt", model, {})
    other = build_model(
        tiny_model_config(
            sp_model,
            qformer={
                "num_layers": 1,
                "hidden_size": 48,
                "num_heads": 2,
                "intermediate_size": 64,
                "trim_to_audio": True,
            },
        )
    )
    with pytest.raises(ValueError, match=r"epoch-1.pt: checkpoint does not fit the model: .* of wrong shape"):
        load_checkpoint(tmp_path / "epoch-1.pt", other)
    with pytest.raises(FileNotFoundError, match="epoch-9.pt"):
        load_checkpoint(tmp_path / "epoch-9.pt", model)
