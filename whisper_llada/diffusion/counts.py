"""What a sampler counts for one decoding call: forward passes (NFEs), the sequence positions they
ran and model calls (``PassCounts``); the decoding layer sums them into a part's speed file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def add_counts(stats, passes=None, positions=None, calls: int | None = None) -> None:
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
