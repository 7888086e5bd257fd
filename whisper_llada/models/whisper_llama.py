"""Whisper-LLaMA, the autoregressive twin: the same audio front end feeding a causal Llama LM.

Trained with next-token loss; decodes greedily or by beam search with a KV cache through
``transformers``' ``generate``. It is the paper's baseline and the speed reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.diffusion.sampling import sequence_positions
from whisper_llada.models.speech_llm import SpeechLLM


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding, as ``generate`` computes them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class WhisperLLaMA(SpeechLLM):
    def loss(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        prefix_positions: torch.Tensor | None,
        texts: Sequence[str],
        generator: torch.Generator | None = None,
    ) -> dict:
        """Next-token loss on the transcript and its EOS."""
        del generator  # next-token loss draws nothing at random
        eos, pad = self.tokenizer.eos_id, self.tokenizer.pad_id
        rows = [ids + [eos] for ids in self.encode_texts(texts)]
        L = max(map(len, rows))
        resp = torch.tensor([r + [pad] * (L - len(r)) for r in rows], device=self.device)
        resp_mask = torch.tensor([[True] * len(r) + [False] * (L - len(r)) for r in rows], device=self.device)
        x = torch.cat([prefix, self.embed_tokens(resp)], dim=1)
        mask = torch.cat([prefix_mask, resp_mask], dim=1)
        labels = torch.cat(
            [torch.full(prefix_mask.shape, -100, device=self.device), resp.masked_fill(~resp_mask, -100)], dim=1
        )
        if prefix_positions is None:
            positions = positions_from_mask(mask)
        else:
            positions = sequence_positions(prefix_positions, L)
        out = self.llm(inputs_embeds=x, attention_mask=mask.long(), position_ids=positions, labels=labels)
        return {"loss": out.loss, "num_tokens": int(resp_mask.sum()), "num_utts": len(texts)}

    @torch.no_grad()
    def generate_ids(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        prefix_positions: torch.Tensor | None = None,
        max_new_tokens: int = 128,
        num_beams: int = 1,
        num_return_sequences: int = 1,
        use_cache: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """New token ids (B * num_return_sequences, <= max_new_tokens) and beam scores (or None)."""
        from transformers import GenerationConfig

        gen = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=num_beams,
            num_return_sequences=num_return_sequences,
            eos_token_id=self.tokenizer.eos_id,
            pad_token_id=self.tokenizer.pad_id,
            use_cache=use_cache,
            return_dict_in_generate=True,
            output_scores=num_beams > 1,
        )
        # Explicit prefix positions (``positions: aligned``); generate continues them by one a step.
        kw = {} if prefix_positions is None else {"position_ids": prefix_positions}
        out = self.llm.generate(inputs_embeds=prefix, attention_mask=prefix_mask.long(), generation_config=gen, **kw)
        return out.sequences, getattr(out, "sequences_scores", None)

    @torch.no_grad()
    def transcribe(
        self, batch: dict, cfg: DecodeConfig, stats: PassCounts | None = None, generator: torch.Generator | None = None
    ) -> list[str]:
        """Greedy (``num_beams`` 1) or beam-search decoding with a KV cache: features in, text out."""
        del generator  # deterministic
        if cfg.mode != "autoregressive":
            raise ValueError(f"the autoregressive twin decodes with mode 'autoregressive', not {cfg.mode!r}")
        prefix, mask, positions = self.batch_prefix(batch)
        ids, _ = self.generate_ids(prefix, mask, positions, max_new_tokens=cfg.gen_len, num_beams=cfg.num_beams)
        if stats is not None:
            # One cached forward pass per generated position (the first reads the prefix).
            passes = torch.tensor(
                [
                    min(row.index(self.tokenizer.eos_id) + 1, cfg.gen_len)
                    if self.tokenizer.eos_id in row
                    else ids.shape[1]
                    for row in ids.tolist()
                ]
            )
            add_counts(stats, passes=passes, calls=ids.shape[1])
        return [self.tokenizer.decode(row) for row in ids.tolist()]
