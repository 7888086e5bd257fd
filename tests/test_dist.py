"""Several processes: the batches each rank decodes, the recipes' torchrun launch, decoding and first
passes on two processes giving one process's files, and two one-process "nodes" training like one
node with two processes (gloo on CPU)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from recipe_utils import ROOT, make_corpus, make_workspace

from whisper_llada.utils import dist


def _cuts(durations):
    from lhotse import CutSet
    from lhotse.testing.dummies import dummy_cut

    return CutSet.from_cuts(dummy_cut(i, duration=d) for i, d in enumerate(durations))


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_one_process_batches_balanced_by_duration(monkeypatch, world):
    cuts = _cuts([1.0, 7.5, 2.0, 3.3, 9.1, 0.6, 4.2, 5.0, 2.2, 6.4, 1.7])
    one = [(i, [c.id for c in b]) for i, b in dist.my_batches(cuts, 2)]
    assert [len(b) for _, b in one] == [2, 2, 2, 2, 2, 1]
    shares = []
    for rank in range(world):
        monkeypatch.setattr(dist, "rank_world", lambda rank=rank: (rank, world))
        shares.append([(i, [c.id for c in b]) for i, b in dist.my_batches(cuts, 2)])
    # Every batch of one process, each on exactly one rank, with the same cuts.
    assert sorted(b for share in shares for b in share) == one
    durations = {c.id: c.duration for c in cuts}
    loads = [sum(durations[c] for _, b in share for c in b) for share in shares]
    longest = max(sum(durations[c] for c in b) for _, b in one)
    assert max(loads) - min(loads) <= longest, loads


def test_speed_of_several_processes_is_the_slowest_rank_over_all_audio():
    totals = [
        {"num_utts": 3, "audio_seconds": 10.0, "wall_seconds": 2.0, "passes": 30, "front": 0.5},
        {"num_utts": 4, "audio_seconds": 30.0, "wall_seconds": 5.0, "passes": 40, "front": 1.5},
    ]
    speed = dist.merged_speed(totals, summed=("passes",), of_slowest=("front",))
    assert speed == {
        "num_utts": 7,
        "audio_seconds": 40.0,
        "wall_seconds": 5.0,
        "rtf": 0.125,
        "processes": 2,
        "passes": 70,
        "front": 1.5,
    }


def _launch(**options) -> subprocess.CompletedProcess:
    """tools/steps.sh's launcher with the recipe's process options; prints the command."""
    sets = "".join(f"{k}={v}; " for k, v in options.items())
    script = f'. {ROOT}/tools/log.sh; . {ROOT}/tools/steps.sh; {sets}launcher && echo "${{launch[*]}}"'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_launcher_hands_the_node_options_to_torchrun():
    assert _launch().stdout.strip() == "python"
    assert _launch(world_size=4).stdout.strip() == "torchrun --standalone --nproc-per-node 4"
    two = _launch(world_size=8, num_nodes=2, node_rank=1, master_addr="node0", master_port=1234).stdout.strip()
    assert two == "torchrun --nnodes 2 --node-rank 1 --master-addr node0 --master-port 1234 --nproc-per-node 8"
    p = _launch(num_nodes=2)
    assert p.returncode != 0 and "--num-nodes 2 needs --master-addr" in p.stderr
    p = _launch(num_nodes=2, node_rank=2, master_addr="node0")
    assert p.returncode != 0 and "--node-rank 2 is not in 0..1" in p.stderr


# ------------------------------------------------------------- the stages on two processes (slow)

SMOKE = ["--config", "conf/smoke.yaml", "--set", "model.tokenizer.path=data/lang_bpe_60/bpe.model"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The data stages of a 12/3/7-utterance corpus, an untrained Whisper-LLaDA and CTC recogniser
    (how many cuts each process decodes is the question, not how well) and Whisper's first pass."""
    from dataclasses import asdict

    from test_reliability import Workspace

    from whisper_llada.checkpoint.files import save_checkpoint
    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.models.build import build_model

    class Seven(Workspace):
        def __init__(self, tmp: Path):
            self.rdir = make_workspace(tmp)
            self.dl = tmp / "dl" / "LibriSpeech"
            make_corpus(tmp / "dl", n_train=12, n_dev=3, n_test=7)

    w = Seven(tmp_path_factory.mktemp("dist"))
    w.manifests()
    w.features()
    w.lang()
    cwd = os.getcwd()
    os.chdir(w.rdir)
    try:
        for config, exp in (
            ("conf/smoke.yaml", "exp/smoke/epoch-2.pt"),
            ("conf/smoke_ctc.yaml", "exp/smoke_ctc/epoch-1.pt"),
        ):
            cfg = load_recipe_config(config, ["model.tokenizer.path=data/lang_bpe_60/bpe.model"])
            torch.manual_seed(0)
            save_checkpoint(w.rdir / exp, build_model(cfg.model), {"config": asdict(cfg)})
    finally:
        os.chdir(cwd)
    w.run("whisper_first_pass.py", *SMOKE, "--device", "cpu")
    return w


def _one_thread(w, *args) -> str:
    """A stage in this process on one thread, as each of two processes on two cores runs: a float
    sum over another number of threads may differ in its last bit (n-best scores would show it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return w.run(*args)
    finally:
        torch.set_num_threads(threads)


def _without_times(path: Path) -> str:
    text = path.read_text()
    if path.name.startswith("errs-"):  # its header shows the speed
        return "\n".join(l for l in text.splitlines() if not l.startswith("Speed: "))
    if path.suffix == ".json":
        data = json.loads(text)
        speed = data if path.name.startswith("speed-") else data.get("speed", {})
        for key in ("wall_seconds", "rtf", "front_end_seconds", "processes"):
            speed.pop(key, None)
        return json.dumps(data)
    return text


def _assert_same_files(one: Path, two: Path) -> int:
    """Every result file of ``one`` is in ``two`` and the same (bytes; errs, speed and stats files
    but their times); returns how many were compared."""
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and "made-from" not in p.parts)
    files = [f for f in files if f.parts[0] != "log" and f.suffix != ".pt"]
    theirs = sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file() and "made-from" not in p.parts)
    assert files == [f for f in theirs if f.parts[0] != "log" and f.suffix != ".pt"]
    for f in files:
        a, b = one / f, two / f
        if f.name.startswith(("errs-", "speed-", "stats-")):
            assert _without_times(a) == _without_times(b), f
        else:
            assert a.read_bytes() == b.read_bytes(), f
    return len(files)


def _shares(log_text: str, what: str) -> list[tuple[int, int]]:
    """(rank, cuts) of each "rank R of 2: N cuts" line about ``what``."""
    return [(int(r), int(n)) for r, n in re.findall(rf"{re.escape(what)}: rank (\d) of 2: (\d+) cuts", log_text)]


@pytest.mark.slow
def test_two_processes_decode_and_write_what_one_process_does(ws):
    rdir = ws.rdir
    # Direct decoding (random remasking too), deliberation with random masks and n-best rescoring
    # (weights chosen on dev: every rank must have every candidate), in one call.
    (rdir / "decode.yaml").write_text(
        "base: conf/smoke.yaml\n"
        "decode:\n"
        "  - {mode: decoding, gen_len: 16, steps: 4, block_length: 16, batch_size: 2}\n"
        "  - {mode: decoding, gen_len: 16, steps: 4, block_length: 8, batch_size: 3, remasking: random}\n"
        "  - {mode: diffusion_deliberation, mask_ratio: 0.5, masking_type: random, steps: 4, batch_size: 2}\n"
        "  - {mode: nbest_rescoring, pll_groups: 2, batch_size: 2}\n"
    )
    config = ["--config", "decode.yaml", "--set", "model.tokenizer.path=data/lang_bpe_60/bpe.model"]
    shutil.copytree(rdir / "exp/smoke", rdir / "exp/smoke2")
    _one_thread(ws, "decode.py", *config, "--device", "cpu", "--exp-dir", "exp/smoke")
    out = _finish(_step(rdir, "step_decode decode.yaml exp/smoke2", world_size=2))
    shares = _shares(out, "diffusion-gen-16-steps-4")  # a log line per rank
    assert sorted(r for r, _ in shares) == [0, 1] and all(n for _, n in shares) and sum(n for _, n in shares) == 7
    assert len(list((rdir / "exp/smoke2").glob("*/errs-test-clean-*"))) == 4
    assert _assert_same_files(rdir / "exp/smoke", rdir / "exp/smoke2") >= 4 * 3 + 1  # recogs, errs, speed; fusion
    # The CTC first pass, which also adds confidences and CTC scores to Whisper's records (each rank
    # to those of its cuts); two processes first, so that rank 0 builds the graph.
    shutil.copytree(rdir / "data/firstpass", rdir / "fp-one")
    out = _finish(_step(rdir, "step_ctc_first_pass decode.yaml", world_size=2))
    assert re.search(r"first pass: rank 1 of 2: [1-9]\d* cuts", out) and "whisper test-clean: WER" in out
    data = json.dumps(json.loads(ws.run("config_value.py", "conf/smoke.yaml", "data")))
    ctc = ["--config", "conf/smoke_ctc.yaml", *config[2:], "--set", f"data={data}", "--exp-dir", "exp/smoke_ctc"]
    _one_thread(ws, "ctc_first_pass.py", *ctc, "--output-dir", "fp-one")
    assert "words" in json.loads(_gunzip(rdir / "data/firstpass/whisper/test-clean.jsonl.gz")[0])
    assert _assert_same_files(rdir / "fp-one", rdir / "data/firstpass") >= 12


def _gunzip(path: Path) -> list[str]:
    import gzip

    return gzip.decompress(path.read_bytes()).decode().splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(rdir: Path, call: str, **options) -> subprocess.Popen:
    """A step of tools/steps.sh, as a recipe runs it, with the recipe's process options."""
    sets = "".join(f"{k}={v}; " for k, v in options.items())
    script = f"set -euo pipefail; . ../../path.sh; . ../../tools/log.sh; . ../../tools/steps.sh; {sets}{call}"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    # One thread a process in both layouts (torchrun sets it for several processes a node only): a
    # float sum over another number of threads may differ in its last bit.
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        ["bash", "-c", script], cwd=rdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-4000:]
    return out


def _rank_losses(exp: Path) -> list[dict[int, float]]:
    """Each rank's training loss per batch, from its log (log-train-*-RANK)."""
    logs = sorted(exp.glob("log/log-train-*"), key=lambda p: p.name.rsplit("-", 1)[1])
    assert [p.name.rsplit("-", 1)[1] for p in logs] == ["0", "1"]
    return [{int(b): float(v) for b, v in re.findall(r"batch (\d+), loss ([0-9.]+)", p.read_text())} for p in logs]


@pytest.mark.slow
def test_two_nodes_of_one_process_train_like_one_node_of_two(ws):
    rdir = ws.rdir
    # Batches small enough that both ranks fill several (DDP drops the partial last ones).
    (rdir / "dist.yaml").write_text(
        "base: conf/smoke.yaml\ntrain: {num_epochs: 1, avg: 1, max_duration: 4, save_every_n: 0}\n"
    )
    port = _free_port()
    nodes = [
        _step(
            rdir, "step_train dist.yaml exp/nodes", num_nodes=2, node_rank=r, master_addr="127.0.0.1", master_port=port
        )
        for r in (0, 1)
    ]
    for p in nodes:
        _finish(p)
    out = _finish(_step(rdir, "step_train dist.yaml exp/node", world_size=2))
    assert "training exp/node with dist.yaml on 2 process(es)" in out
    two_nodes, one_node = _rank_losses(rdir / "exp/nodes"), _rank_losses(rdir / "exp/node")
    assert all(len(losses) >= 2 for losses in one_node), one_node
    assert two_nodes == one_node  # every rank's loss of every batch, exactly
    a = torch.load(rdir / "exp/nodes/epoch-1.pt", weights_only=False)["model"]
    b = torch.load(rdir / "exp/node/epoch-1.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
