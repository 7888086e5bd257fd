"""What a sampler counts for one decoding call: forward passes (NFEs), the sequence positions they
ran and model calls (``PassCounts``); the decoding layer sums them into a part's speed file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PassCounts:
    """One decoding call's counts: ``forward_passes`` and ``positions`` per row of its batch (a
    tensor, or 0 until something is counted), ``model_calls`` over the batch (a call runs on
    several rows at once). A row's ``positions`` count a cached prefix once.
    """

    forward_passes: Any = 0
    positions: Any = 0
    model_calls: int = 0

    def add(self, passes=None, positions=None, calls: int | None = None) -> None:
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


def _total(count) -> int:
    return count if isinstance(count, int) else int(count.sum())


def add_counts(stats: PassCounts | None, passes=None, positions=None, calls: int | None = None) -> None:
    """Adds counts to ``stats``, or counts nothing where it is None (the caller wants no counts)."""
    if stats is not None:
        stats.add(passes, positions, calls)
