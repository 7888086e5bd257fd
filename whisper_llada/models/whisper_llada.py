"""Whisper-LLaDA: audio tokens condition LLaDA, trained with the masked-diffusion loss.

The response block is the transcript's tokens plus EOS, padded with EOS to
``loss.response_length``; only response positions are ever masked.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from whisper_llada.diffusion.loss import forward_process, masked_diffusion_loss
from whisper_llada.models.speech_llm import SpeechLLM


class WhisperLLaDA(SpeechLLM):
    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id

    def response_ids(self, texts: Sequence[str]) -> torch.Tensor:
        L = self.cfg.loss.response_length
        rows = []
        for text, ids in zip(texts, self.encode_texts(texts)):
            if len(ids) + 1 > L:
                raise ValueError(f"transcript of {len(ids)} tokens does not fit response_length {L} (with EOS): {text[:60]!r}")
            rows.append(ids + [self.eos_id] * (L - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def logits(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """Logits over the response block (B, L, V) for a (possibly masked) response."""
        x = torch.cat([prefix, self.embed_tokens(response)], dim=1)
        mask = torch.cat([prefix_mask, torch.ones_like(response, dtype=torch.bool)], dim=1)
        return self.llm(inputs_embeds=x, attention_mask=mask).logits[:, prefix.shape[1] :]

    def forward(
        self,
        texts: Sequence[str],
        features: Optional[torch.Tensor] = None,
        feature_lens: Optional[torch.Tensor] = None,
        encoder_out: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> dict:
        prefix, prefix_mask = self.prefix(features, feature_lens, encoder_out)
        target = self.response_ids(texts)
        noisy, masked, p = forward_process(target, self.mask_id, self.cfg.loss.eps, generator)
        logits = self.logits(prefix, prefix_mask, noisy)
        loss = masked_diffusion_loss(logits, target, masked, p, self.cfg.loss.weighting)
        return {"loss": loss, "num_masked": int(masked.sum()), "num_utts": len(texts)}
