"""Checkpoint files as icefall writes them: ``epoch-N.pt`` and ``checkpoint-{batch}.pt``, the trainable
parameters only (plus the training state that resumption reads): writing, reading, loading into a
model, averaging.

Below models and training (it imports neither): a model loads part of another's checkpoint
(``SpeechLLM.load_frontend``), decoding averages epochs, the release importer writes one.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from whisper_llada.utils.checkpoint_io import atomic_torch_save

log = logging.getLogger(__name__)


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def save_checkpoint(
    path,
    model,
    params: dict,
    optimizer=None,
    scheduler=None,
    scaler=None,
    sampler=None,
    rng_states: list | None = None,
) -> None:
    """``rng_states``: one RNG state per rank (default: this process's only)."""
    obj = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).trainable_state_dict().items()},
        "params": params,
        "rng": rng_states if rng_states is not None else [rng_state()],
    }
    for name, thing in (
        ("optimizer", optimizer),
        ("scheduler", scheduler),
        ("grad_scaler", scaler),
        ("sampler", sampler),
    ):
        if thing is not None:
            obj[name] = thing.state_dict()
    atomic_torch_save(obj, path)
    log.info("saved %s", path)


def load_model_state(model, state: dict, source: str, prefixes: tuple[str, ...] | None = None) -> None:
    """Load trainable parameters; any key that the model does not train, or misses, is an error.

    ``prefixes``: only the trainable parameters under these names, from a state that may hold more.
    """
    model = unwrap(model)
    want = model.trainable_state_dict()
    if prefixes is not None:
        want = {k: v for k, v in want.items() if k.startswith(prefixes)}
        state = {k: v for k, v in state.items() if k.startswith(prefixes)}
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(want[k].shape)}"
        for k in sorted(set(state) & set(want))
        if state[k].shape != want[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: checkpoint does not fit the model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of wrong shape (e.g. {wrong[:2]})"
        )
    model.load_state_dict(state, strict=False)  # the frozen rest comes from the base models


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file and what to do."""


def read_checkpoint(path, mmap: bool = False) -> dict:
    """The checkpoint's dict; a missing, truncated or foreign file raises an error that names it.

    ``mmap``: tensors stay on disk until used (cheap when only ``params`` is wanted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as e:  # torch reports a truncated zip as RuntimeError, pickles as anything
        raise CheckpointError(
            f"{path}: cannot read this checkpoint ({type(e).__name__}: {e}); it is truncated or "
            "damaged: delete it (training resumes from the newest readable one before it) or "
            "decode another epoch"
        ) from e
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no 'model' entry)")
    return obj


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model states (float tensors; others from the last)."""
    avg: dict | None = None
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{p}: checkpoint not found (needed for averaging)")
        state = read_checkpoint(p)["model"]
        if avg is None:
            avg = {k: v.double() if v.is_floating_point() else v.clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                if v.is_floating_point():
                    avg[k] += v.double()
                else:
                    avg[k] = v.clone()
    assert avg is not None
    ref = state  # the last one's dtypes
    return {k: (v / len(paths)).to(ref[k].dtype) if ref[k].is_floating_point() else v for k, v in avg.items()}
