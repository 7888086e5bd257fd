"""The frozen Whisper front end that every model on Whisper's encoder inherits (Whisper-LLaDA,
its autoregressive twin, the CTC recogniser): the encoder kept frozen and in eval mode, how much
of it a model reads, its output from a batch's ``Audio``, and the checkpoint's trainable part.
"""

from __future__ import annotations

import torch
from torch import nn

from whisper_llada.data.audio import FEATURES, FRAMES, Audio
from whisper_llada.models.whisper_encoder import run_frozen_encoder


class FrozenWhisperFrontEnd(nn.Module):
    def __init__(self, cfg, encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, whatever the mode
        return self

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def frames_needed(self, real_frames: torch.Tensor, total_frames: int) -> torch.Tensor:
        """Leading encoder frames per row that the model reads (what an encoder cache holds). The
        Q-Former's geometry for every model, so that two configs of a recipe share one cache."""
        return self.cfg.qformer.frames_needed(real_frames, total_frames)

    def run_encoder(self, features: torch.Tensor, feature_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) log-mel -> encoder frames (B, 1500, C) and the number of real frames per row."""
        return run_frozen_encoder(self.encoder, self.cfg.whisper.window, features, feature_lens, self.frames_needed)

    def encoder_output(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder frames and real frames per row of a batch's audio: computed from features, or
        as the encoder cache holds them."""
        audio.expect(FEATURES, FRAMES, who=f"{type(self).__name__}'s encoder")
        if audio.kind == FEATURES:
            return self.run_encoder(audio.data, audio.lens)
        return audio.data, audio.lens

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes (never the frozen encoder): what a checkpoint holds."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}
