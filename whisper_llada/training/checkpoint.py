"""Checkpoints as icefall writes them: ``epoch-N.pt`` and ``checkpoint-{batch}.pt``, trainable
parameters only, plus optimiser, scheduler, scaler, sampler and RNG state for exact resumption.

Every write is atomic; averaging over epochs happens at decode time.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from whisper_llada.utils.checkpoint_io import atomic_torch_save

log = logging.getLogger(__name__)


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, model, params: dict, optimizer=None, scheduler=None, scaler=None, sampler=None,
                    rng_states: Optional[list] = None) -> None:
    """``rng_states``: one RNG state per rank (default: this process's only)."""
    obj = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).trainable_state_dict().items()},
        "params": params,
        "rng": rng_states if rng_states is not None else [rng_state()],
    }
    for name, thing in (("optimizer", optimizer), ("scheduler", scheduler), ("grad_scaler", scaler), ("sampler", sampler)):
        if thing is not None:
            obj[name] = thing.state_dict()
    atomic_torch_save(obj, path)
    log.info("saved %s", path)


def load_model_state(model, state: dict, source: str, prefixes: Optional[tuple[str, ...]] = None) -> None:
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
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(want[k].shape)}"
             for k in sorted(set(state) & set(want)) if state[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: checkpoint does not fit the model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of wrong shape (e.g. {wrong[:2]})")
    model.load_state_dict(state, strict=False)  # the frozen rest comes from the base models


def load_checkpoint(path, model, optimizer=None, scheduler=None, scaler=None, sampler=None,
                    restore_rng_of_rank: Optional[int] = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    load_model_state(model, obj["model"], str(path))
    for name, thing in (("optimizer", optimizer), ("scheduler", scheduler), ("grad_scaler", scaler), ("sampler", sampler)):
        if thing is not None and name in obj:
            thing.load_state_dict(obj[name])
    rngs = obj.get("rng") or []
    if restore_rng_of_rank is not None and restore_rng_of_rank < len(rngs):
        set_rng_state(rngs[restore_rng_of_rank])
    log.info("loaded %s", path)
    return obj.get("params", {})


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model states (float tensors; others from the last)."""
    avg: Optional[dict] = None
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{p}: checkpoint not found (needed for averaging)")
        state = torch.load(p, map_location="cpu", weights_only=False)["model"]
        if avg is None:
            avg = {k: v.double() if v.is_floating_point() else v.clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                if v.is_floating_point():
                    avg[k] += v.double()
                else:
                    avg[k] = v.clone()
    assert avg is not None
    ref = torch.load(paths[-1], map_location="cpu", weights_only=False)["model"]
    return {k: (v / len(paths)).to(ref[k].dtype) if ref[k].is_floating_point() else v for k, v in avg.items()}


def remove_old_checkpoints(exp_dir: Path, keep_last_k: int) -> None:
    found = sorted(batch_checkpoints(exp_dir), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
    for p in found[:-keep_last_k] if keep_last_k > 0 else []:
        p.unlink(missing_ok=True)


def batch_checkpoints(exp_dir: Path) -> list[Path]:
    return list(Path(exp_dir).glob("checkpoint-*.pt"))
