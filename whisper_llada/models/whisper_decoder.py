"""The speech models on Whisper's own pretrained decoder, cross-attending to the frozen encoder
(the ``EncoderCrossAttention`` layout): as a masked-diffusion model (``arch: whisper_decoder_mdm``)
and as its autoregressive twin (``arch: whisper_decoder_ar``), the same weights, data and training steps on
both sides.

A layout beside the paper's (audio tokens as a prefix of a from-scratch LLaDA): a small recipe's
LLM then knows English before it hears the corpus. The diffusion model keeps the AR head's shifted
logits (the hidden state before a position predicts it) and attends in both directions; the mask
is a token Whisper never emits in transcripts (``<|startoflm|>``). The LM itself is
``models.whisper_decoder_lm``; its denoisers are ``diffusion.cross_attention``. See docs/models.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.models.masked_diffusion import MaskedDiffusionSpeechLM
from whisper_llada.models.speech_llm import SpeechLLM


class WhisperDecoderMDM(MaskedDiffusionSpeechLM):
    """Masked diffusion on Whisper's decoder: a ``MaskedDiffusionSpeechLM`` whose registry entry gives
    it the cross-attention layout (its denoisers ``CrossAttentionDenoiser`` and, for block
    diffusion, ``BlockCacheDenoiser``; its "prefix" is the encoder's frames)."""


class WhisperDecoderAR(SpeechLLM):
    """The autoregressive twin on Whisper's decoder: next-token loss, beam search with a KV cache
    (greedy at one beam), teacher-forced scoring of candidates."""

    def forward(self, texts: Sequence[str], audio, generator: torch.Generator | None = None) -> dict:
        del generator
        frames, mask = self.layout.frames(self, audio)
        logits, target, _ = self.layout.next_token_logits(self, frames, mask, self.encode_texts(texts))
        loss = F.cross_entropy(logits.float(), target)
        return {"loss": loss, "num_tokens": len(target), "num_utts": len(texts)}

    @torch.no_grad()
    def score_texts(self, batch: dict, candidates: Sequence[Sequence[str]], cfg, stats: PassCounts | None = None):
        """Log-probability of each cut's candidate transcripts (tokens and EOS), teacher-forced,
        ``cfg.batch_size`` candidates a pass: n-best rescoring by the AR twin."""
        frames, mask = self.layout.frames(self, batch["audio"].to(self.device))
        row_of = [i for i, texts in enumerate(candidates) for _ in texts]
        seqs = [self.tokenizer.encode(t) for texts in candidates for t in texts]
        out: list[float] = []
        for start in range(0, len(seqs), cfg.batch_size):
            part = torch.tensor(row_of[start : start + cfg.batch_size], device=self.device)
            chunk = seqs[start : start + cfg.batch_size]
            logits, target, row = self.layout.next_token_logits(self, frames[part], mask[part], chunk)
            lp = logits.float().log_softmax(-1).gather(1, target[:, None])[:, 0]
            out += torch.zeros(len(chunk), device=self.device).index_add_(0, row, lp).tolist()
        if stats is not None:
            add_counts(stats, passes=torch.bincount(torch.tensor(row_of, dtype=torch.long), minlength=len(candidates)))
        scores: list[list[float]] = [[] for _ in candidates]
        for i, s in zip(row_of, out):
            scores[i].append(s)
        return scores

    @torch.no_grad()
    def transcribe(self, batch: dict, cfg, stats: PassCounts | None = None, generator=None) -> list[str]:
        del generator
        if cfg.mode != "autoregressive":
            raise ValueError(f"{self.cfg.arch} decodes autoregressively (mode autoregressive), not {cfg.mode!r}")
        return [nbest[0][0] for nbest in self.nbest(batch, cfg, stats)]

    @torch.no_grad()
    def nbest(self, batch: dict, cfg, stats: PassCounts | None = None) -> list[list[tuple[str, float]]]:
        """Each cut's ``cfg.num_beams`` best transcripts with their log-probabilities (tokens + EOS),
        best first: beam search with a KV cache (greedy at one beam)."""
        frames, mask = self.layout.frames(self, batch["audio"].to(self.device))
        B, P, K, eos = frames.shape[0], len(self.prompt_ids), cfg.num_beams, self.tokenizer.eos_id
        cross = [(k.repeat_interleave(K, 0), v.repeat_interleave(K, 0)) for k, v in self.llm.cross_kv(frames)]
        mask = mask.repeat_interleave(K, 0)
        cache = [None] * self.llm.num_layers
        ids = self.prompt_ids[None].expand(B * K, -1)
        keys = torch.ones(B * K, P, dtype=torch.bool, device=self.device)
        # Every beam starts as the same prompt: all but the first of each cut start at -inf, so the
        # first step's top K come from one copy.
        score = torch.full((B, K), float("-inf"), device=self.device)
        score[:, 0] = 0.0
        tokens = torch.zeros(B, K, 0, dtype=torch.long, device=self.device)
        done = torch.zeros(B, K, dtype=torch.bool, device=self.device)
        steps = torch.zeros(B, dtype=torch.long)
        # Cuts still decoding: a cut whose beams have all ended leaves the batch, so the others'
        # steps do not carry it.
        live = torch.arange(B, device=self.device)
        for t in range(min(cfg.gen_len, self.llm.max_positions - P)):
            # The prompt at positions 0..P-1 first, then the token of step t - 1 at position P + t - 1.
            start = 0 if t == 0 else P + t - 1
            hidden = self.llm(ids, keys, cross, mask, causal=True, start=start, cache=cache)
            n = len(live)
            logp = self.llm.logits(hidden[:, -1]).float().log_softmax(-1).view(n, K, -1)
            # A finished beam carries on with EOS at no cost, so it keeps its score and its place.
            was = done[live]
            logp[was] = float("-inf")
            logp[..., eos][was] = 0.0
            V = logp.shape[-1]
            top, flat = (score[live][..., None] + logp).view(n, K * V).topk(K, dim=-1)
            origin, nxt = flat // V, flat % V
            score[live] = top
            tokens = torch.cat([tokens, torch.full((B, K, 1), eos, dtype=torch.long, device=self.device)], 2)
            kept = tokens[live, :, :t].gather(1, origin[..., None].expand(-1, -1, t))
            tokens[live] = torch.cat([kept, nxt[..., None]], 2)
            done[live] = was.gather(1, origin) | (nxt == eos)
            steps[live.cpu()] += 1
            going = ~done[live].all(1)
            if not bool(going.any()):
                break
            # Beams reordered by their origins; the rows of finished cuts dropped.
            rows = (origin + torch.arange(n, device=self.device)[:, None] * K)[going].view(-1)
            live = live[going]
            cache = [(k[rows], v[rows]) for k, v in cache]
            if not bool(going.all()):
                # A cut's beams share its frames: they follow only when cuts leave.
                same = (
                    torch.arange(n, device=self.device)[going][:, None] * K + torch.arange(K, device=self.device)
                ).view(-1)
                cross = [(k[same], v[same]) for k, v in cross]
                mask = mask[same]
            ids = nxt[going].view(-1, 1)
            keys = torch.ones(len(rows), keys.shape[1] + 1, dtype=torch.bool, device=self.device)
        add_counts(stats, passes=steps, calls=int(steps.max()))
        out = []
        for b in range(B):
            order = score[b].argsort(descending=True).tolist()
            out.append([(self.tokenizer.decode(tokens[b, k].tolist()), float(score[b, k])) for k in order])
        return out
