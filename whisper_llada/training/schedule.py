"""Learning-rate schedule of the paper: linear warm-up to the peak, cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_cosine(step: int, peak: float, floor: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, decay_steps))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))
