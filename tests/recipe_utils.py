"""Helpers for recipe tests: a workspace that mirrors the repository and a tiny spoken corpus."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import make_sentences

ROOT = Path(__file__).resolve().parent.parent


def make_workspace(tmp: Path, recipe: str = "librispeech") -> Path:
    """``tmp/egs/<recipe>`` with the recipe's run.sh and conf linked, so outputs stay in ``tmp``."""
    for name in ("path.sh", "local", "tools", ".venv"):
        (tmp / name).symlink_to(ROOT / name)
    rdir = tmp / "egs" / recipe
    rdir.mkdir(parents=True)
    for name in os.listdir(ROOT / "egs" / recipe):
        if name in ("run.sh", "conf", "local"):
            (rdir / name).symlink_to(ROOT / "egs" / recipe / name)
    return rdir


def make_corpus(dl_dir: Path, n_train: int = 12, n_dev: int = 2, n_test: int = 2) -> None:
    from whisper_llada.data.synth_corpus import Speaker, write_part

    speakers = [Speaker(101, "en-us", 165, 50), Speaker(102, "en+f3", 150, 60), Speaker(103, "en-gb-x-rp", 175, 45)]
    sents = make_sentences(n_train + n_dev + n_test, seed=11)
    parts = {"train-clean-100": sents[:n_train], "dev-clean": sents[n_train:n_train + n_dev],
             "test-clean": sents[n_train + n_dev:]}
    for part, texts in parts.items():
        write_part(dl_dir, part, [(speakers[i % 3], t) for i, t in enumerate(texts)])


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{out[-4000:]}")
    return out
