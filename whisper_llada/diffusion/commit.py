"""Commit rules: how many masked positions a denoising step fills, most confident first.

``fixed`` is the paper's rule (a block's masks spread evenly over its steps; exact, the default);
``threshold`` commits every open position whose confidence reaches ``tau``, at least one a step
(Fast-dLLM's parallel decoding), so the number of passes follows the model's certainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from whisper_llada.diffusion.options import RULES


@dataclass(frozen=True)
class CommitRule:
    kind: str = "fixed"
    tau: float = 0.9

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"commit rule {self.kind!r}: expected one of {RULES}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"commit threshold {self.tau}: expected a value in (0, 1]")

    @property
    def adaptive(self) -> bool:
        """The rule decides the number of steps itself (the schedule gives only an upper bound)."""
        return self.kind == "threshold"

    def count(self, conf: torch.Tensor, open_: torch.Tensor, scheduled: torch.Tensor) -> torch.Tensor:
        """Positions to commit per row: conf (b, L) of the proposals, open_ (b, L) the masked
        positions that may be filled now, scheduled (b,) the paper's count for this step."""
        n_open = open_.sum(1)
        if self.kind == "fixed":
            return torch.minimum(scheduled, n_open)
        sure = ((conf >= self.tau) & open_).sum(1)
        return torch.minimum(sure.clamp(min=1), n_open)
