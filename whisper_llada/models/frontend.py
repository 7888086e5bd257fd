"""The frozen Whisper front end that every model on Whisper's encoder inherits (Whisper-LLaDA,
its autoregressive twin, the CTC recogniser): the encoder kept frozen and in eval mode (or all but
its top ``whisper.train_layers`` layers), how much of it a model reads, its output from a batch's
``Audio``, and the checkpoint's trainable part.
"""

from __future__ import annotations

import torch
from torch import nn

from whisper_llada.data.audio import FEATURES, FRAMES, Audio
from whisper_llada.models.whisper_encoder import adapted_layers, input_frames, run_frozen_encoder


class FrozenWhisperFrontEnd(nn.Module):
    def __init__(self, cfg, encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        # Encoder adaptation: the top train_layers layers and the final layer norm train with the
        # model (an encoder cache then holds the frozen layers' output). 0: the paper's frozen encoder.
        n, k = len(encoder.layers), cfg.whisper.train_layers
        if k > n:
            raise ValueError(f"whisper.train_layers {k}: this encoder has {n} layers")
        self.frozen_layers = n - k
        for module in (*encoder.layers[n - k :], encoder.layer_norm) if k else ():
            module.requires_grad_(True)

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

    @property
    def window_seconds(self) -> float:
        """The longest audio the encoder reads at once (30 s for real Whisper models)."""
        return input_frames(self.encoder) / 100

    @property
    def adapted(self) -> bool:
        return self.frozen_layers < len(self.encoder.layers)

    def run_encoder(self, features: torch.Tensor, feature_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) log-mel -> the frozen encoder's frames (B, T', C) and the number of real frames
        per row: what an encoder cache holds (with adaptation, the frozen layers' output)."""
        stop = self.frozen_layers if self.adapted else None
        return run_frozen_encoder(
            self.encoder, self.cfg.whisper.window, features, feature_lens, self.frames_needed, stop
        )

    def encoder_output(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder frames and real frames per row of a batch's audio: computed from features, or
        from what the encoder cache holds; the adapted layers run on either."""
        audio.expect(FEATURES, FRAMES, who=f"{type(self).__name__}'s encoder")
        if audio.kind == FEATURES:
            frames, real = self.run_encoder(audio.data, audio.lens)
        else:
            frames, real = audio.data, audio.lens
        if self.adapted:
            frames = adapted_layers(self.encoder, self.frozen_layers, frames, real, self.cfg.whisper.window)
        return frames, real

    def adapted_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the adapted encoder layers (none when the encoder is frozen)."""
        if not self.adapted:
            return ()
        layers = range(self.frozen_layers, len(self.encoder.layers))
        return (*(f"encoder.layers.{i}." for i in layers), "encoder.layer_norm.")

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes (never the frozen encoder): what a checkpoint holds."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}
