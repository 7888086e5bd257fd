"""Resuming training from checkpoints: the optimiser, scheduler, scaler, sampler and RNG state restored,
the newest readable checkpoint found, later ones superseded, old ones removed.

The files themselves (writing, reading, loading a model's part, averaging) are ``checkpoint.files``.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from whisper_llada.checkpoint.files import CheckpointError, load_model_state, read_checkpoint

log = logging.getLogger(__name__)


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two nested config dicts."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{k}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def check_same_model_config(path, saved: dict | None, current: dict) -> None:
    """Refuse to resume a checkpoint trained with another model config, naming the differences;
    other sections (e.g. train.num_epochs) may change between runs and are only reported."""
    if not saved:
        log.warning("%s: records no config (older checkpoint); cannot check it against the current one", path)
        return
    model_diff = config_differences(saved.get("model", {}), current.get("model", {}), "model.")
    if model_diff:
        raise ValueError(
            f"{path}: was trained with another model config; differences (checkpoint -> now): "
            + "; ".join(model_diff)
            + ". Use the config it was trained with, or a new --exp-dir."
        )
    rest = config_differences(
        {k: v for k, v in saved.items() if k not in ("model", "source")},
        {k: v for k, v in current.items() if k not in ("model", "source")},
    )
    if rest:
        log.warning("%s: resuming with changed settings (checkpoint -> now): %s", path, "; ".join(rest))


def progress(obj: dict, path: Path) -> tuple[int, int]:
    """How far training had got: (batches done, 1 for an end-of-epoch checkpoint): the later, the larger."""
    return int(obj.get("params", {}).get("batch_idx_train", 0)), int(path.name.startswith("epoch-"))


def find_resume_point(exp_dir) -> Path | None:
    """The checkpoint (``epoch-N.pt`` or ``checkpoint-B.pt``) of ``exp_dir`` that got furthest among
    those that read; an unreadable one is skipped with a warning that names it."""
    best, best_key = None, None
    for p in sorted([*Path(exp_dir).glob("epoch-*.pt"), *batch_checkpoints(exp_dir)]):
        try:
            key = progress(read_checkpoint(p, mmap=True), p)
        except (CheckpointError, OSError) as e:
            log.warning("%s; skipped when looking for the checkpoint to resume from", e)
            continue
        if best_key is None or key > best_key:
            best, best_key = p, key
    return best


def supersede_later_checkpoints(exp_dir, batch_idx: int, epoch_done: int) -> list[Path]:
    """Rename checkpoints that a run starting after batch ``batch_idx`` (epoch ``epoch_done`` complete)
    does not continue to ``*.superseded``: neither ``keep_last_k`` nor a later resume may take them
    for this run's."""
    moved = []
    for p in batch_checkpoints(exp_dir):
        if int(re.findall(r"\d+", p.name)[-1]) > batch_idx:
            moved.append(p)
    for p in Path(exp_dir).glob("epoch-*.pt"):
        if int(re.findall(r"\d+", p.name)[-1]) > epoch_done:
            moved.append(p)
    for p in sorted(moved):
        target = p.with_name(p.name + ".superseded")
        p.replace(target)
        log.warning(
            "%s: from a run that this one does not continue (it starts after batch %d); renamed to %s",
            p,
            batch_idx,
            target.name,
        )
    return moved


def load_checkpoint(
    path, model, optimizer=None, scheduler=None, scaler=None, sampler=None, restore_rng_of_rank: int | None = None
) -> dict:
    path = Path(path)
    obj = read_checkpoint(path)
    load_model_state(model, obj["model"], str(path))
    for name, thing in (
        ("optimizer", optimizer),
        ("scheduler", scheduler),
        ("grad_scaler", scaler),
        ("sampler", sampler),
    ):
        if thing is not None and name in obj:
            thing.load_state_dict(obj[name])
    rngs = obj.get("rng") or []
    if restore_rng_of_rank is not None and restore_rng_of_rank < len(rngs):
        set_rng_state(rngs[restore_rng_of_rank])
    log.info("loaded %s", path)
    return obj.get("params", {})


def remove_old_checkpoints(exp_dir: Path, keep_last_k: int) -> None:
    found = sorted(batch_checkpoints(exp_dir), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
    for p in found[:-keep_last_k] if keep_last_k > 0 else []:
        p.unlink(missing_ok=True)


def batch_checkpoints(exp_dir: Path) -> list[Path]:
    return list(Path(exp_dir).glob("checkpoint-*.pt"))
