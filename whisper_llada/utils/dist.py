"""Several processes over one stage (torchrun, one node or several): rank and world size from the
environment, each rank's share of a part's batches, and the gathering of results to every rank.

Decoding and first passes: every rank decodes its share, ``gather`` hands every rank all results,
rank 0 alone writes. A plain process is rank 0 of 1 and every helper is then a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def dist_env() -> tuple[int, int, int]:
    """rank, local rank, world size (torchrun sets them; a plain process is rank 0 of 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_decoding(device: str) -> tuple[int, int, str]:
    """Joins the process group of a torchrun launch (gloo: the results are Python objects, on
    CPU and GPU hosts alike); returns (rank, world size, this process's device).

    ``cuda`` becomes ``cuda:LOCAL_RANK``. On a CPU each process takes its node's cores divided by
    the processes on the node (torchrun's default of one thread would leave cores idle when they
    outnumber the processes; 2 processes on 2 cores: one thread each).
    """
    import torch
    import torch.distributed as dist

    rank, local_rank, world = dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if world > 1 and device == "cuda":
        device = f"cuda:{local_rank}"
    if world > 1 and not str(device).startswith("cuda"):
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // per_node))
    return rank, world, device


def run_on_ranks(work, device: str, log_prefix=None) -> None:
    """A stage that runs alone or under torchrun: logging per rank (``log_prefix``: also to files),
    the process group joined, ``work(device)`` with this process's device, the group left however
    it ends."""
    from whisper_llada.utils.logging import setup_logger

    rank, _, world = dist_env()
    setup_logger(log_prefix, rank, world)
    _, _, device = init_decoding(device)
    try:
        work(device)
    finally:
        finish()


def finish() -> None:
    """Leaves the process group (after the last barrier)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    if not _group():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    """Every rank waits here: what rank 0 wrote before it is whole for the others after it."""
    if _group():
        import torch.distributed as dist

        dist.barrier()


def gather(obj: Any) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not _group():
        return [obj]
    import torch.distributed as dist

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank0_decides(decide: Callable[[], Any]) -> Any:
    """``decide()`` run on rank 0 alone and its answer given to every rank: whether a result is up
    to date (a stage record's check may itself write, and ranks must never disagree about what is
    left to do, or one would wait forever for the others)."""
    if not _group():
        return decide()
    import torch.distributed as dist

    box = [decide() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def my_batches(cuts, batch_size: int, what: str = "") -> list[tuple[int, Any]]:
    """This rank's share of ``cuts``: (index, batch) of the batches one process would decode (by
    duration, ``batch_size`` cuts each), dealt longest first to the rank with the least audio so
    far. The batches, hence the hypotheses, are the same whatever the number of processes."""
    from lhotse import CutSet
    from lhotse.dataset import SimpleCutSampler

    cuts = CutSet.from_cuts(cuts).sort_by_duration()
    # world_size 1: lhotse's samplers otherwise split by the process group themselves.
    batches = list(SimpleCutSampler(cuts, max_cuts=batch_size, world_size=1, rank=0))
    rank, world = rank_world()
    if world == 1:
        return list(enumerate(batches))
    seconds = [sum(c.duration for c in b) for b in batches]
    load, owner = [0.0] * world, [0] * len(batches)
    for i in sorted(range(len(batches)), key=lambda i: (-seconds[i], i)):
        owner[i] = min(range(world), key=lambda r: (load[r], r))
        load[owner[i]] += seconds[i]
    mine = [(i, b) for i, b in enumerate(batches) if owner[i] == rank]
    log.info(
        "%srank %d of %d: %d cuts, %.1f s (of %d cuts, %.1f s)",
        f"{what}: " if what else "",
        rank,
        world,
        sum(len(b) for _, b in mine),
        load[rank],
        len(cuts),
        sum(seconds),
    )
    return mine


def merged_speed(totals: list[dict], summed: tuple = (), of_slowest: tuple = ()) -> dict:
    """The speed of a part from each rank's ``totals`` (num_utts, audio_seconds, wall_seconds and
    the keys named): utterances, audio and ``summed`` keys are summed over the ranks; the wall time
    and ``of_slowest`` keys are the slowest rank's (the part is done when it is); RTF is that wall
    time over all the audio."""
    slowest = max(totals, key=lambda t: t["wall_seconds"])
    audio = sum(t["audio_seconds"] for t in totals)
    out = {
        "num_utts": sum(t["num_utts"] for t in totals),
        "audio_seconds": round(audio, 3),
        "wall_seconds": round(slowest["wall_seconds"], 3),
        "rtf": round(slowest["wall_seconds"] / audio, 5) if audio else None,
        "processes": len(totals),
    }
    out.update({k: sum(t[k] for t in totals) for k in summed})
    out.update({k: slowest[k] for k in of_slowest})
    return out
