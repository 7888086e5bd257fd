"""What decoding counts: forward passes (NFEs), the sequence positions they ran and model calls per
batch (``PassCounts``), and a part's totals (``PartTotals``), from which its speed file is written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Optional

from whisper_llada.utils.dist import merged_speed

log = logging.getLogger(__name__)

_COUNTS = ("forward_passes", "positions", "model_calls")


@dataclass
class PassCounts:
    """One decoding call's counts: ``forward_passes`` and ``positions`` per row of its batch (a
    tensor, or 0 until something is counted), ``model_calls`` over the batch (a call runs on
    several rows at once). A row's ``positions`` count a cached prefix once.

    The models of ``whisper_llada.models`` still count through the keys of a plain dict
    (``stats["forward_passes"] = ...``); item access by field name serves them, and a plain dict
    passed to a sampler is counted the same way (``add_counts``).
    """

    forward_passes: Any = 0
    positions: Any = 0
    model_calls: int = 0

    def add(self, passes=None, positions=None, calls: Optional[int] = None) -> None:
        """Adds per-row ``passes`` and ``positions`` (tensors) and a number of ``calls``."""
        if passes is not None:
            self.forward_passes = self.forward_passes + passes
        if positions is not None:
            self.positions = self.positions + positions
        if calls is not None:
            self.model_calls += calls

    def total_passes(self) -> int:
        """Forward passes summed over the batch's rows."""
        return _total(self.forward_passes)

    def total_positions(self) -> int:
        """Sequence positions summed over the batch's rows."""
        return _total(self.positions)

    def __getitem__(self, key: str):
        return getattr(self, self._field(key))

    def __setitem__(self, key: str, value) -> None:
        setattr(self, self._field(key), value)

    def get(self, key: str, default=None):
        return self[key]

    def _field(self, key: str) -> str:
        if key not in _COUNTS:
            raise KeyError(f"{key!r}: decoding counts {', '.join(_COUNTS)}")
        return key


def _total(count) -> int:
    return count if isinstance(count, int) else int(count.sum())


def add_counts(stats, passes=None, positions=None, calls: Optional[int] = None) -> None:
    """Adds counts to ``stats``: a ``PassCounts``, a plain dict with its keys (a model's own scratch
    counts), or None (nothing is counted)."""
    if stats is None:
        return
    if isinstance(stats, PassCounts):
        stats.add(passes, positions, calls)
        return
    for key, value in zip(_COUNTS, (passes, positions, calls)):
        if value is not None:
            stats[key] = stats.get(key, 0) + value


@dataclass
class PartTotals:
    """One process's totals over its share of a test part; ``part_speed`` merges those of every process."""

    num_utts: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0  # the front end's seconds included, cached or not
    front: float = 0.0  # the front end's seconds (encoder, Q-Former, prompt)
    passes: int = 0
    positions: int = 0  # sequence positions the LLM ran (a cached prefix counts once)
    full: int = 0  # hypotheses that fill a fixed canvas (``canvas_filled``)

    def add_batch(self, counts: PassCounts, num_utts: int, audio: float, wall: float, front: float, full: int) -> None:
        """One batch: its counts, utterances, seconds of audio, wall seconds (the front end's
        ``front`` included) and hypotheses that fill their canvas."""
        self.front += front
        self.wall_seconds += wall
        self.audio_seconds += audio
        self.passes += counts.total_passes()
        self.positions += counts.total_positions()
        self.num_utts += num_utts
        self.full += full


def part_speed(totals: list[PartTotals], what: str, gen_len) -> dict:
    """The speed of a part (its speed file's keys, in their order) from every process's totals.
    ``what`` (the setting's suffix) and ``gen_len`` name the setting in a warning when hypotheses
    fill their whole canvas."""
    out = merged_speed([asdict(t) for t in totals], summed=("passes", "positions", "full"), of_slowest=("front",))
    full = out.pop("full")
    if full:
        log.warning(
            "%s: %d of %d hypotheses fill the whole canvas (gen_len %s) and may be cut short: raise gen_len, "
            "or lower data.decode_window so that long cuts are decoded in shorter pieces",
            what,
            full,
            out["num_utts"],
            gen_len,
        )
    out["canvas_full"] = full
    n_all = max(out["num_utts"], 1)
    out["front_end_seconds"] = round(out.pop("front"), 3)
    out["forward_passes_per_utt"] = round(out.pop("passes") / n_all, 2)
    positions_all = out.pop("positions")
    out["positions_per_utt"] = round(positions_all / n_all, 1) if positions_all else None
    return out
