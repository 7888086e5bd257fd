"""Atomic file writes, safetensors directories (sharded or not) and strict state-dict loading.

Every checkpoint or result the project writes goes through ``atomic_write_*`` so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the final suffixes: writers that pick a format by extension
    # (lhotse's .jsonl.gz, soundfile's .flac) write the same thing as to the final name.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file 0600; a shared cluster needs what the umask allows, as open() gives.
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        # The data must be on disk before the name points at it, or a crash can leave an empty file.
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    # /proc gives it without changing it (os.umask to read it would race with other threads' writes).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_to_file(manifest, path: str | Path) -> Path:
    """A lhotse manifest (CutSet, RecordingSet, ...) written atomically."""
    return atomic_write(path, manifest.to_file)


def atomic_torch_save(obj, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_safetensors_dir(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards named in its index."""
    from safetensors.torch import load_file

    path = Path(path)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: no 'weight_map' object")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = path / shard
            if not shard_path.is_file():
                raise FileNotFoundError(f"{index}: names shard {shard} but {shard_path} does not exist")
            state.update(load_file(str(shard_path)))
        missing = set(weight_map) - set(state)
        if missing:
            raise ValueError(
                f"{index}: {len(missing)} tensors listed but absent from the shards, e.g. {sorted(missing)[:3]}"
            )
        return state
    if single.is_file():
        return load_file(str(single))
    raise FileNotFoundError(f"{path}: neither model.safetensors nor model.safetensors.index.json found")


def write_safetensors_dir(state: Mapping[str, torch.Tensor], path: str | Path, max_shard_size: int) -> None:
    """Write ``model.safetensors``, or shards plus an index when larger than ``max_shard_size`` bytes."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        atomic_write(path / "model.safetensors", lambda tmp: save_file(shards[0], tmp, metadata=meta))
        (path / "model.safetensors.index.json").unlink(missing_ok=True)
        return
    n = len(shards)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        atomic_write(path / name, lambda tmp, s=shard: save_file(s, tmp, metadata=meta))
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_text(path / "model.safetensors.index.json", json.dumps(index, indent=2))
    (path / "model.safetensors").unlink(missing_ok=True)


def check_state_dict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    only: Iterable[str] | None = None,
) -> None:
    """Raise a ValueError naming ``source`` for missing, unexpected or mis-shaped keys.

    ``only`` restricts the expected keys (e.g. to trainable parameters).
    """
    own = module.state_dict()
    expected = set(own) if only is None else set(only)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(state) & set(own))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:3]})")
    if problems:
        raise ValueError(f"{source}: state dict does not fit the model: " + "; ".join(problems))


def load_state_dict_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, assign: bool = False
) -> None:
    check_state_dict(module, state, source)
    module.load_state_dict(state, strict=True, assign=assign)
