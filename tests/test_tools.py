"""The measurement tools and small scripts no recipe stage calls, run in their smallest form: each
prints its figures (or writes its output) and a rerun does what its help says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_measure_cut_loading_prints_memory_and_time_of_a_small_manifest(tmp_path):
    out = run("tools/measure_cut_loading.py", "--work-dir", str(tmp_path), "--num-cuts", "40")
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["first_batch_cuts"] >= 1
    assert figures["peak_rss_gb"] > 0 and figures["seconds_to_first_batch"] >= 0
    assert (tmp_path / "fbank").is_dir()


def test_measure_feature_loading_times_stored_and_computed_features(tmp_path):
    out = run(
        "tools/measure_feature_loading.py",
        *("--work-dir", str(tmp_path), "--seconds", "2", "--num-mel-bins", "80", "--repeats", "2"),
    )
    assert re.search(r"2\.0 s; stored features \d+ kB", out), out
    rates = {
        name.strip(): float(rate)
        for name, rate in re.findall(r"^\s*(stored|on the fly): .* (\d+) s of audio per CPU second", out, re.M)
    }
    assert set(rates) == {"stored", "on the fly"} and all(r > 0 for r in rates.values()), out


def test_bench_decode_script_explains_itself():
    assert "--only" in run("tools/bench_decode.py", "--help")


def test_join_utterances_script_writes_a_part_once(tmp_path):
    import soundfile as sf

    src = tmp_path / "src" / "5" / "1"
    src.mkdir(parents=True)
    lines = []
    for i in range(3):
        sf.write(src / f"5-1-{i:04d}.flac", np.full(16000 * 2, 0.1, np.float32), 16000)
        lines.append(f"5-1-{i:04d} WORD{i}")
    (src / "5-1.trans.txt").write_text("\n".join(lines) + "\n")
    dst = tmp_path / "joined"
    args = ("local/join_utterances.py", str(tmp_path / "src"), str(dst), "--min-seconds", "5", "--max-seconds", "9")
    run(*args, "--pause", "0.5")
    assert (dst / "joined.txt").read_text() == "5-0-0000 5-1-0000 5-1-0001 5-1-0002\n"
    audio, _ = sf.read(dst / "5" / "0" / "5-0-0000.flac")
    assert len(audio) == 16000 * 7  # three 2-s utterances and two half-second pauses
    assert "already exists - skipping" in run(*args)
