"""A batch's audio as one typed value: log-mel features, cached Whisper encoder frames or cached
audio tokens of a frozen front end, each right-padded with its real length per row.

Datasets put it under ``batch["audio"]``; models take it as their one audio argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FEATURES = "features"  # (B, T, F) log-mel, 100 frames a second
FRAMES = "encoder_frames"  # (B, T, C) frozen Whisper encoder output (the encoder cache), 50 frames a second
TOKENS = "audio_tokens"  # (B, A, D) what the LLM reads of a frozen front end (the audio-token cache)
KINDS = (FEATURES, FRAMES, TOKENS)


@dataclass
class Audio:
    kind: str  # one of KINDS
    data: torch.Tensor  # (B, T, dim), real rows first, zero padding after
    lens: torch.Tensor  # (B,) real frames (or tokens) per row

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"audio kind {self.kind!r}: expected one of {KINDS}")
        if self.data.dim() != 3 or self.lens.shape != (self.data.shape[0],):
            raise ValueError(
                f"{self.kind}: expected data (B, T, dim) and lens (B,), got {tuple(self.data.shape)} "
                f"and {tuple(self.lens.shape)}"
            )

    @classmethod
    def features(cls, data: torch.Tensor, lens: torch.Tensor) -> Audio:
        return cls(FEATURES, data, lens)

    @classmethod
    def frames(cls, data: torch.Tensor, lens: torch.Tensor) -> Audio:
        return cls(FRAMES, data, lens)

    @classmethod
    def tokens(cls, data: torch.Tensor, lens: torch.Tensor) -> Audio:
        return cls(TOKENS, data, lens)

    def __len__(self) -> int:
        return self.data.shape[0]

    def to(self, device) -> Audio:
        return Audio(self.kind, self.data.to(device), self.lens.to(device))

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) True on real positions."""
        return (
            torch.arange(self.data.shape[1], device=self.data.device)[None, :] < self.lens.to(self.data.device)[:, None]
        )

    def expect(self, *kinds: str, who: str = "this model") -> Audio:
        """``self`` if its kind is one of ``kinds``; else an error saying what ``who`` needs."""
        if self.kind not in kinds:
            raise ValueError(
                f"{who} reads {' or '.join(kinds)}, not {self.kind} (check the train/decode cache settings)"
            )
        return self
