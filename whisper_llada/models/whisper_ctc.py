"""The CTC first-pass recogniser: a few transformer layers on the frozen Whisper encoder, over the
recipe's BPE pieces (class 0 the blank, piece p class p + 1), trained by the same ``Trainer``.

Its log-probabilities feed the lattice decoder (``whisper_llada.lattice``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from whisper_llada.config.model import ModelConfig
from whisper_llada.data.audio import TOKENS, Audio
from whisper_llada.models.frontend import FrozenWhisperFrontEnd


class WhisperCTC(FrozenWhisperFrontEnd):
    def __init__(self, cfg: ModelConfig, encoder: nn.Module, tokenizer):
        super().__init__(cfg, encoder)
        self.tokenizer = tokenizer
        h = cfg.ctc
        self.proj_in = nn.Linear(encoder.config.d_model, h.d_model)
        layer = nn.TransformerEncoderLayer(
            h.d_model, h.num_heads, h.ffn_dim, h.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, h.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h.d_model)
        self.out = nn.Linear(h.d_model, self.num_classes)

    @property
    def num_classes(self) -> int:
        return self.tokenizer.num_pieces + 1

    def log_probs(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T', classes) CTC log-probabilities and the frames per row (T' = frames / stride)."""
        # The encoder cache holds at least the real frames of each row; the rest is masked here.
        frames, real = self.encoder_output(audio)
        s = self.cfg.ctc.frame_stride
        real = real.to(frames.device)
        T = int(real.max())
        x = frames[:, :T].to(self.proj_in.weight.dtype)
        mask = torch.arange(T, device=x.device)[None, :] < real[:, None]
        x = x * mask[..., None]
        if s > 1:  # average each run of ``s`` frames (zeros past the audio count as silence)
            pad = (-T) % s
            x = F.pad(x, (0, 0, 0, pad)).view(x.shape[0], -1, s, x.shape[-1]).mean(2)
        lens = torch.div(real + s - 1, s, rounding_mode="floor")
        keep = torch.arange(x.shape[1], device=x.device)[None, :] < lens[:, None]
        h = self.layers(self.proj_in(x), src_key_padding_mask=~keep)
        return F.log_softmax(self.out(self.norm(h)).float(), dim=-1), lens

    def batch_log_probs(self, batch: dict):
        return self.log_probs(batch["audio"].to(self.device))

    def forward(self, texts: Sequence[str], audio: Audio, generator: torch.Generator | None = None) -> dict:
        """CTC loss (mean over utterances of the per-utterance loss / target length)."""
        if audio.kind == TOKENS:
            raise ValueError(f"{self.cfg.arch} has no audio-token cache (train.cache_audio_tokens is for LLM stages)")
        logp, lens = self.log_probs(audio)
        ids = [[p + 1 for p in self.tokenizer.encode(t)] for t in texts]
        for t, i in zip(texts, ids):
            if not i:
                raise ValueError(f"empty transcript {t!r}")
        targets = torch.tensor([p for row in ids for p in row], device=logp.device)
        loss = F.ctc_loss(
            logp.transpose(0, 1),
            targets,
            lens,
            torch.tensor([len(r) for r in ids], device=logp.device),
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )
        return {"loss": loss, "num_utts": len(texts)}
