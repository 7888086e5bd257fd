"""The masked-diffusion speech LM: trained with the masked-diffusion loss, decoded, deliberated and
rescored by the samplers of ``whisper_llada.diffusion``, over either audio layout (``audio_layout``).

The response block is the transcript's tokens plus EOS, padded with EOS to
``loss.response_length``; only response positions are ever masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from whisper_llada.data.audio import Audio
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.diffusion.beam import generate_beam
from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.diffusion.denoiser import Denoiser
from whisper_llada.diffusion.loss import forward_process, masked_diffusion_loss
from whisper_llada.diffusion.sampling import deliberate, generate
from whisper_llada.diffusion.scoring import pseudo_log_likelihood
from whisper_llada.models.speech_llm import SpeechLLM


class MaskedDiffusionSpeechLM(SpeechLLM):
    """The LLM denoises a partly masked response given the audio, as the model's layout gives it to
    the LLM (``self.layout``: a Q-Former prefix or cross-attention to the encoder)."""

    @property
    def block_diffusion_ok(self) -> bool:
        """Whether ``model.llm.block_size`` (block diffusion) is built for this model's layout."""
        return self.layout.block_diffusion

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
                raise ValueError(
                    f"transcript of {len(ids)} tokens does not fit response_length {L} (with EOS): {text[:60]!r}"
                )
            rows.append(ids + [self.eos_id] * (L - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def denoiser(self, cfg: DecodeConfig | None = None) -> Denoiser:
        """How the samplers, the loss and scoring call the LLM (the layout's denoiser): recomputing,
        or with the cache a decode setting asks for."""
        return self.layout.denoiser(self, cfg)

    def logits(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        response: torch.Tensor,
        prefix_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits over the response block (B, L, V) for a (possibly masked) response."""
        den = self.denoiser()
        state = den.prefill(prefix, prefix_mask, prefix_positions)
        return den.response_logits(state, response, torch.ones_like(response, dtype=torch.bool))

    def loss(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        prefix_positions: torch.Tensor | None,
        texts: Sequence[str],
        generator: torch.Generator | None = None,
    ) -> dict:
        """Masked-diffusion loss over the EOS-padded response."""
        target = self.response_ids(texts)
        lc = self.cfg.loss
        noisy, masked, p = forward_process(
            target, self.mask_id, lc.eps, generator, self.cfg.llm.block_size, lc.suffix_mask_prob
        )
        logits = self.training_logits(prefix, prefix_mask, noisy, prefix_positions, masked, target)
        loss = masked_diffusion_loss(logits, target, masked, p, lc.weighting)
        return {"loss": loss, "num_utts": len(texts)}

    def training_logits(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        response: torch.Tensor,
        prefix_positions: torch.Tensor | None,
        masked: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the loss reads: the whole response block's logits (B, L, V); a model with a costly
        output layer gives those of the ``masked`` positions only (n, V). ``target`` (the clean
        response) is for a model that also reads it (block diffusion)."""
        return self.layout.training_logits(self, prefix, prefix_mask, response, prefix_positions, masked, target)

    def forward(self, texts: Sequence[str], audio: Audio | None, generator: torch.Generator | None = None) -> dict:
        """``SpeechLLM.forward``, plus (``loss.ar_weight`` > 0) the next-token loss of the same LLM run
        causally on the same batch."""
        if self.cfg.loss.ar_weight <= 0:
            return super().forward(texts, audio, generator)
        prefix = self.prefix(audio)
        out = self.loss(*prefix, texts, generator)
        out["ar_loss"] = self.layout.next_token_loss(self, prefix, texts)
        out["loss"] = out["loss"] + self.cfg.loss.ar_weight * out["ar_loss"]
        return out

    @torch.no_grad()
    def transcribe(
        self, batch: dict, cfg: DecodeConfig, stats: PassCounts | None = None, generator: torch.Generator | None = None
    ) -> list[str]:
        """Direct decoding (pure diffusion or semi-AR blocks): features in, text out."""
        if cfg.mode != "decoding":
            raise ValueError(f"transcribe() takes mode 'decoding', not {cfg.mode!r}")
        b = self.cfg.llm.block_size
        if b is not None and (cfg.block_length is None or b % cfg.block_length):
            # Larger blocks would predict a block's first token from one still masked: never trained.
            raise ValueError(
                f"this model is block diffusion (model.llm.block_size {b}): decode semi-autoregressively "
                f"with a block_length that divides {b}, not {cfg.block_length}"
            )
        prefix, mask, positions = self.batch_prefix(batch)
        if cfg.num_beams > 1:
            tokens, _ = generate_beam(
                self.denoiser(cfg),
                prefix,
                prefix_mask=mask,
                prefix_positions=positions,
                gen_length=cfg.gen_len,
                block_length=cfg.block_length,
                num_beams=cfg.num_beams,
                mask_id=self.mask_id,
                eos_id=self.eos_id,
                stats=stats,
            )
            return [self.tokenizer.decode(row) for row in tokens[:, 0].tolist()]
        if cfg.gen_len == "auto":
            gen_len, block = self.canvas_lengths(batch, mask, cfg), None
        else:
            gen_len, block = cfg.gen_len, cfg.block_length
        ids = generate(
            self.denoiser(cfg),
            prefix,
            prefix_mask=mask,
            prefix_positions=positions,
            gen_length=gen_len,
            steps=cfg.steps,
            block_length=block,
            remasking=cfg.remasking,
            temperature=cfg.temperature,
            mask_id=self.mask_id,
            eos_id=self.eos_id,
            generator=generator,
            stats=stats,
            commit=cfg.commit,
            threshold=cfg.threshold,
        )
        return [self.tokenizer.decode(row) for row in ids.tolist()]

    def canvas_lengths(self, batch: dict, prefix_mask: torch.Tensor, cfg: DecodeConfig) -> torch.Tensor:
        """Per-row canvas length for ``gen_len: auto`` (the layout's estimate)."""
        return self.layout.canvas_lengths(self, batch, prefix_mask, cfg)

    @torch.no_grad()
    def deliberate(
        self,
        batch: dict,
        first_pass_texts: Sequence[str],
        cfg: DecodeConfig,
        confidences: Sequence[Sequence[float]] | None = None,
        stats: PassCounts | None = None,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """Re-mask and repair first-pass transcripts. ``confidences`` are per token of each text."""
        if not cfg.is_deliberation:
            raise ValueError(f"deliberate() takes a deliberation mode, not {cfg.mode!r}")
        prefix, mask, positions = self.batch_prefix(batch)
        hyps = [self.tokenizer.encode(t) for t in first_pass_texts]
        pad_to = None
        if cfg.eos_pad:
            # gen_len auto: each hypothesis keeps len_margin EOS after it, not the whole training block.
            pad_to = [len(h) + cfg.len_margin for h in hyps] if cfg.gen_len == "auto" else self.cfg.loss.response_length
        out = deliberate(
            self.denoiser(cfg),
            prefix,
            hyps,
            prefix_mask=mask,
            prefix_positions=positions,
            mode="diffusion" if cfg.mode == "diffusion_deliberation" else "semi_ar",
            mask_ratio=cfg.mask_ratio,
            confidences=confidences,
            masking_type=cfg.masking_type,
            num_chunks=cfg.num_chunks,
            steps=cfg.steps,
            remasking=cfg.remasking,
            temperature=cfg.temperature,
            mask_id=self.mask_id,
            eos_id=self.eos_id,
            pad_id=self.tokenizer.pad_id,
            pad_to=pad_to,
            generator=generator,
            stats=stats,
            commit=cfg.commit,
            threshold=cfg.threshold,
        )
        return [self.tokenizer.decode(row) for row in out]

    @torch.no_grad()
    def score_texts(
        self, batch: dict, candidates: Sequence[Sequence[str]], cfg: DecodeConfig, stats: PassCounts | None = None
    ) -> list[list[float]]:
        """Pseudo-log-likelihood of each cut's candidate transcripts (n-best rescoring). A candidate
        is laid out as deliberation lays out a hypothesis: its tokens, EOS, then ``len_margin`` more
        EOS; its tokens and first EOS are scored, in ``cfg.pll_groups`` passes, ``cfg.batch_size``
        candidates a pass."""
        prefix, mask, positions = self.batch_prefix(batch)
        row_of = [i for i, texts in enumerate(candidates) for _ in texts]
        seqs = [self.tokenizer.encode(t) for texts in candidates for t in texts]
        if not seqs:
            return [[] for _ in candidates]
        L = max(map(len, seqs)) + 1 + cfg.len_margin
        response = torch.full((len(seqs), L), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
        real = torch.zeros(len(seqs), L, dtype=torch.bool, device=self.device)
        scored = torch.zeros_like(real)
        for r, ids in enumerate(seqs):
            n = len(ids)
            response[r, :n] = torch.tensor(ids, dtype=torch.long)
            response[r, n : n + 1 + cfg.len_margin] = self.eos_id
            real[r, : n + 1 + cfg.len_margin] = True
            scored[r, : n + 1] = True
        den = self.denoiser(cfg)
        rows = torch.tensor(row_of, device=self.device)
        out, passes, spans = (
            [],
            torch.zeros(len(candidates), dtype=torch.long),
            torch.zeros(len(candidates), dtype=torch.long),
        )
        for start in range(0, len(seqs), cfg.batch_size):
            part = rows[start : start + cfg.batch_size]
            state = den.prefill(prefix[part], mask[part], None if positions is None else positions[part])
            sl = slice(start, start + cfg.batch_size)
            chunk_stats = PassCounts()
            out += pseudo_log_likelihood(
                den, state, response[sl], real[sl], scored[sl], cfg.pll_groups, self.mask_id, chunk_stats
            ).tolist()
            passes.index_add_(0, part.cpu(), chunk_stats.forward_passes)
            spans.index_add_(0, part.cpu(), chunk_stats.positions)
        add_counts(stats, passes=passes, positions=spans)
        scores: list[list[float]] = [[] for _ in candidates]
        for i, s in zip(row_of, out):
            scores[i].append(s)
        return scores
