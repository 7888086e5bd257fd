"""Whisper-LLaDA: audio tokens condition LLaDA, trained with the masked-diffusion loss.

The response block is the transcript's tokens plus EOS, padded with EOS to
``loss.response_length``; only response positions are ever masked.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from whisper_llada.diffusion.loss import forward_process, masked_diffusion_loss
from whisper_llada.diffusion.sampling import deliberate, generate, sequence_positions
from whisper_llada.diffusion.settings import DecodeConfig
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
        encoded = self.encode_texts(texts)
        if self.cfg.loss.batch_eos_padding is not None:
            L = min(L, max(map(len, encoded)) + 1 + self.cfg.loss.batch_eos_padding)
        rows = []
        for text, ids in zip(texts, encoded):
            if len(ids) + 1 > L:
                raise ValueError(f"transcript of {len(ids)} tokens does not fit response_length {L} (with EOS): {text[:60]!r}")
            rows.append(ids + [self.eos_id] * (L - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def logits(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, response: torch.Tensor,
               prefix_positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits over the response block (B, L, V) for a (possibly masked) response."""
        x = torch.cat([prefix, self.embed_tokens(response)], dim=1)
        mask = torch.cat([prefix_mask, torch.ones_like(response, dtype=torch.bool)], dim=1)
        L = response.shape[1]
        # Only the response's logits: the prefix's would cost (P x vocab) for nothing.
        kw = {"logits_to_keep": L}
        if prefix_positions is not None:
            kw["position_ids"] = sequence_positions(prefix_positions, L)
        return self.llm(inputs_embeds=x, attention_mask=mask, **kw).logits[:, -L:]

    def loss(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, prefix_positions: Optional[torch.Tensor],
             texts: Sequence[str], generator: Optional[torch.Generator] = None) -> dict:
        """Masked-diffusion loss over the EOS-padded response."""
        target = self.response_ids(texts)
        noisy, masked, p = forward_process(target, self.mask_id, self.cfg.loss.eps, generator)
        logits = self.logits(prefix, prefix_mask, noisy, prefix_positions)
        loss = masked_diffusion_loss(logits, target, masked, p, self.cfg.loss.weighting)
        return {"loss": loss, "num_utts": len(texts)}

    @torch.no_grad()
    def transcribe(self, batch: dict, cfg: DecodeConfig, stats: Optional[dict] = None,
                   generator: Optional[torch.Generator] = None) -> list[str]:
        """Direct decoding (pure diffusion or semi-AR blocks): features in, text out."""
        if cfg.mode != "decoding":
            raise ValueError(f"transcribe() takes mode 'decoding', not {cfg.mode!r}")
        prefix, mask, positions = self.batch_prefix(batch)
        ids = generate(self.llm, prefix, prefix_mask=mask, prefix_positions=positions, gen_length=cfg.gen_len, steps=cfg.steps,
                       block_length=cfg.block_length, remasking=cfg.remasking, temperature=cfg.temperature,
                       mask_id=self.mask_id, eos_id=self.eos_id, generator=generator, stats=stats)
        return [self.tokenizer.decode(row) for row in ids.tolist()]

    @torch.no_grad()
    def deliberate(self, batch: dict, first_pass_texts: Sequence[str], cfg: DecodeConfig,
                   confidences: Optional[Sequence[Sequence[float]]] = None, stats: Optional[dict] = None,
                   generator: Optional[torch.Generator] = None) -> list[str]:
        """Re-mask and repair first-pass transcripts. ``confidences`` are per token of each text."""
        if not cfg.is_deliberation:
            raise ValueError(f"deliberate() takes a deliberation mode, not {cfg.mode!r}")
        prefix, mask, positions = self.batch_prefix(batch)
        hyps = [self.tokenizer.encode(t) for t in first_pass_texts]
        out = deliberate(self.llm, prefix, hyps, prefix_mask=mask, prefix_positions=positions,
                         mode="diffusion" if cfg.mode == "diffusion_deliberation" else "semi_ar",
                         mask_ratio=cfg.mask_ratio, confidences=confidences,
                         masking_type="given" if cfg.masking_type == "first_pass" else cfg.masking_type,
                         num_chunks=cfg.num_chunks, steps=cfg.steps, remasking=cfg.remasking,
                         temperature=cfg.temperature, mask_id=self.mask_id, eos_id=self.eos_id,
                         pad_id=self.tokenizer.pad_id, pad_to=self.cfg.loss.response_length if cfg.eos_pad else None,
                         generator=generator, stats=stats)
        return [self.tokenizer.decode(row) for row in out]
