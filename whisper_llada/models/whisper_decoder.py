"""Whisper's own pretrained decoder as the second pass's LM, cross-attending to the frozen encoder:
as a masked-diffusion model (``arch: whisper_decoder_mdm``) and as its autoregressive twin
(``arch: whisper_decoder_ar``), the same weights, data and budget on both sides.

A layout beside the paper's (audio tokens as a prefix of a from-scratch LLaDA): a small recipe's
LLM then knows English before it hears the corpus. The diffusion model keeps the AR head's shifted
logits (the hidden state before a position predicts it) and attends in both directions; the mask
is a token Whisper never emits in transcripts (``<|startoflm|>``). See docs/models.md.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from whisper_llada.data.audio import Audio
from whisper_llada.diffusion.denoiser import Denoiser, PrefixState
from whisper_llada.models.speech_llm import SpeechLLM
from whisper_llada.models.whisper_llada import WhisperLLaDA


def _attend(attn: nn.Module, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> torch.Tensor:
    """One of Whisper's attention modules with given keys and values (B, H, S, hd); mask (B|1, 1, L|1, S) bool."""
    B, L, C = x.shape
    H = k.shape[1]
    q = attn.q_proj(x).view(B, L, H, C // H).transpose(1, 2)
    # Whisper scales queries inside q_proj's use (HF multiplies by head_dim ** -0.5); so does SDPA's default.
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.out_proj(o.transpose(1, 2).reshape(B, L, C))


def _heads(proj: nn.Module, x: torch.Tensor, H: int) -> torch.Tensor:
    B, T, C = x.shape
    return proj(x).view(B, T, H, C // H).transpose(1, 2)


class WhisperDecoderLM(nn.Module):
    """Whisper's decoder run either way: causal (next token) or bidirectional (masked diffusion),
    over per-layer cross-attention keys and values computed once per utterance (``cross_kv``)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.num_heads = decoder.layers[0].self_attn.num_heads

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def pretrained_only(self) -> list[nn.Module]:
        """What fine-tuning leaves as pretrained (the builder freezes it after choosing what trains):
        the learned positions, which a short corpus would unlearn beyond the lengths it reaches."""
        return [self.decoder.embed_positions]

    @property
    def max_positions(self) -> int:
        return self.decoder.embed_positions.weight.shape[0]

    def cross_kv(self, frames: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        H = self.num_heads
        return [
            (_heads(layer.encoder_attn.k_proj, frames, H), _heads(layer.encoder_attn.v_proj, frames, H))
            for layer in self.decoder.layers
        ]

    def forward(
        self,
        ids: torch.Tensor,
        key_mask: torch.Tensor,
        cross: list,
        frames_mask: torch.Tensor,
        causal: bool,
        start: int = 0,
        cache: Optional[list] = None,
        positions: Optional[torch.Tensor] = None,
        pattern: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Hidden states (B, L, C) of ``ids`` at positions ``start``.. (or the given ``positions`` (L,));
        ``key_mask`` (B, S) marks real keys (the cached ones first); ``cache``: per-layer (k, v) of
        earlier positions, extended in place; ``pattern`` (L, S) bool: which keys each query may see
        (instead of ``causal``)."""
        dec, H = self.decoder, self.num_heads
        L = ids.shape[1]
        if positions is None:
            positions = torch.arange(start, start + L, device=ids.device)
        if int(positions.max()) >= self.max_positions:
            raise ValueError(
                f"{int(positions.max()) + 1} decoder positions asked for; Whisper's decoder has {self.max_positions}"
            )
        h = dec.embed_tokens(ids) + dec.embed_positions.weight[positions]
        self_mask = key_mask[:, None, None, :]
        if pattern is not None:
            self_mask = self_mask & pattern
        elif causal:
            S = key_mask.shape[1]
            self_mask = self_mask & torch.ones(L, S, dtype=torch.bool, device=ids.device).tril(S - L)
        cross_mask = frames_mask[:, None, None, :]
        for i, layer in enumerate(dec.layers):
            x = layer.self_attn_layer_norm(h)
            k, v = _heads(layer.self_attn.k_proj, x, H), _heads(layer.self_attn.v_proj, x, H)
            if cache is not None:
                if cache[i] is not None:
                    k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
                cache[i] = (k, v)
            h = h + _attend(layer.self_attn, x, k, v, self_mask)
            x = layer.encoder_attn_layer_norm(h)
            h = h + _attend(layer.encoder_attn, x, *cross[i], cross_mask)
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        return dec.layer_norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.decoder.embed_tokens.weight.T  # Whisper ties its output to the embeddings


def build_whisper_decoder_lm(cfg, tokenizer, dtype) -> WhisperDecoderLM:
    """The registry's LLM builder: the decoder of ``model.whisper``'s directory (or its random config)."""
    del tokenizer
    from whisper_llada.models.whisper_encoder import load_whisper_part

    return WhisperDecoderLM(load_whisper_part("decoder", cfg.whisper.path, cfg.whisper.config).to(dtype))


def block_pattern(P: int, L: int, block: int, device=None) -> torch.Tensor:
    """Who sees whom (P + L, P + L) for ``[prompt][response]`` under block-causal attention: the
    prompt sees the prompt; a response position sees the prompt and every position of its own and
    earlier blocks of ``block`` tokens."""
    blk = torch.cat([torch.full((P,), -1, device=device), torch.arange(L, device=device) // block])
    see = blk[None, :] <= blk[:, None]
    see[:P, P:] = False
    return see


def training_pattern(P: int, L: int, block: int, device=None) -> torch.Tensor:
    """Block diffusion's training layout ``[prompt][noisy response][clean response]`` (P + 2L)^2:
    a noisy block sees the prompt, the clean blocks before it and itself; the clean copy is
    block-causal. One pass then gives every block its loss against clean context, as semi-AR
    decoding meets it."""
    blk = torch.arange(L, device=device) // block
    see = torch.zeros(P + 2 * L, P + 2 * L, dtype=torch.bool, device=device)
    see[:, :P] = True
    see[:P, P:] = False
    see[P : P + L, P : P + L] = blk[None, :] == blk[:, None]
    see[P : P + L, P + L :] = blk[None, :] < blk[:, None]
    see[P + L :, P + L :] = blk[None, :] <= blk[:, None]
    return see


class CrossAttentionDenoiser(Denoiser):
    """The samplers' interface for a cross-attention model: ``prefill`` computes each layer's keys and
    values of the encoder frames once (exact: the audio never attends to the response); every call
    runs the prompt and the response through the bidirectional decoder."""

    cache = "exact"

    def __init__(self, lm: WhisperDecoderLM, prompt_ids: torch.Tensor, block_size: Optional[int] = None):
        self.lm, self.prompt_ids, self.block_size = lm, prompt_ids, block_size
        self.prefix_attends_response = False

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def prefill(self, embeds, mask=None, positions=None) -> PrefixState:
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        return PrefixState(embeds, mask.to(torch.bool), None, kv=self.lm.cross_kv(embeds))

    def positions_per_pass(
        self, state: PrefixState, rows: torch.Tensor, L: int, response=None, select=None, clean=None
    ) -> int:
        P = len(self.prompt_ids)
        if clean is None or self.block_size is None:
            return P + L
        if torch.is_grad_enabled():
            return P + 2 * L  # the two-copy pass
        # Scoring: the masked copy, and the prompt and the clean copy once per clean tensor.
        ctx = getattr(state, "clean_context", None)
        return L if ctx is not None and ctx[0] is clean else P + 2 * L

    def response_logits(self, state, response, response_mask, rows=None, clean=None):
        return self.lm.logits(self._hidden(state, response, response_mask, rows, clean))

    def selected_logits(self, state, response, response_mask, rows, select, clean=None):
        # Only the selected positions meet the output layer: 51,865 ids make it most of a pass.
        return self.lm.logits(self._hidden(state, response, response_mask, rows, clean)[select])

    def _hidden(self, state, response, response_mask, rows, clean=None):
        """The decoder's hidden states that predict the response positions (b, L, C): shifted, the
        state before a position predicts it, as the pretrained AR head was trained. A block-causal
        model given the ``clean`` response (training, scoring) reads the blocks before each block
        from it (``training_pattern``); otherwise from ``response`` itself (decoding, where they are
        committed)."""
        P, b = len(self.prompt_ids), self.block_size
        if b is not None and clean is not None and not torch.is_grad_enabled():
            return self._hidden_on_clean(state, response, response_mask, rows, clean)
        kv, frames_mask = state.kv, state.mask
        if rows is not None:
            response, response_mask = response[rows], response_mask[rows]
            clean = None if clean is None else clean[rows]
            kv, frames_mask = [(k[rows], v[rows]) for k, v in kv], frames_mask[rows]
        B, L = response.shape
        prompt = self.prompt_ids[None].expand(B, -1)
        keys = torch.cat([torch.ones(B, P, dtype=torch.bool, device=prompt.device), response_mask.to(torch.bool)], 1)
        if b is None or clean is None:
            # Block-causal: a block's first token is predicted from the block before, which never sees it.
            pattern = None if b is None else block_pattern(P, L, b, prompt.device)
            hidden = self.lm(torch.cat([prompt, response], 1), keys, kv, frames_mask, causal=False, pattern=pattern)
            return hidden[:, P - 1 : P - 1 + L]
        pos = torch.arange(P + L, device=prompt.device)
        hidden = self.lm(
            torch.cat([prompt, response, clean], 1),
            torch.cat([keys, keys[:, P:]], 1),
            kv,
            frames_mask,
            causal=False,
            positions=torch.cat([pos, pos[P:]]),
            pattern=training_pattern(P, L, b, prompt.device),
        )
        # A block's first token from the clean copy's position before it, the others from their own
        # noisy block.
        j = torch.arange(L, device=prompt.device)
        src = torch.where(j % b == 0, P + L + j - 1, P + j - 1)
        src[0] = P - 1
        return hidden[:, src]

    def _hidden_on_clean(self, state, response, response_mask, rows, clean):
        """``_hidden`` of a block-causal model given the ``clean`` response, without gradients
        (scoring): the prompt and the clean copy never see the masked copy, so their keys and values
        are computed once per ``clean`` tensor (kept on ``state``) and each call runs only the L
        masked-copy positions against them. Pseudo-log-likelihood scoring in 4 groups then runs
        (P + L) + 4L positions instead of 4 (P + 2L)."""
        P, b, dev = len(self.prompt_ids), self.block_size, response.device
        B, L = clean.shape
        keys = torch.cat([torch.ones(B, P, dtype=torch.bool, device=dev), response_mask.to(torch.bool)], 1)
        # Kept for this clean tensor and padding only: the callers pass the same objects to every
        # group and neither changes in place.
        ctx = getattr(state, "clean_context", None)
        if ctx is None or ctx[0] is not clean or ctx[1] is not response_mask:
            cache = [None] * len(self.lm.decoder.layers)
            ids = torch.cat([self.prompt_ids[None].expand(B, -1), clean], 1)
            hidden = self.lm(
                ids, keys, state.kv, state.mask, causal=False, pattern=block_pattern(P, L, b, dev), cache=cache
            )
            state.clean_context = ctx = (clean, response_mask, cache, hidden)
        _, _, cache, clean_hidden = ctx
        kv, frames_mask = state.kv, state.mask
        if rows is not None:
            response, keys, clean_hidden = response[rows], keys[rows], clean_hidden[rows]
            cache = [(k[rows], v[rows]) for k, v in cache]
            kv, frames_mask = [(k[rows], v[rows]) for k, v in kv], frames_mask[rows]
        else:
            cache = list(cache)  # the call extends its copy of the list, not the kept one
        # training_pattern's masked-copy rows, its keys reordered to [prompt][clean][masked].
        order = torch.cat([torch.arange(P), torch.arange(P + L, P + 2 * L), torch.arange(P, P + L)]).to(dev)
        pattern = training_pattern(P, L, b, dev)[P : P + L][:, order]
        hidden = self.lm(
            response,
            torch.cat([keys, keys[:, P:]], 1),
            kv,
            frames_mask,
            causal=False,
            positions=torch.arange(P, P + L, device=dev),
            pattern=pattern,
            cache=cache,
        )
        # As in _hidden: a block's first token from the clean position before it (the prompt's last
        # for the first block), the others from their own masked block.
        j = torch.arange(L, device=dev)
        first = (j % b == 0)[None, :, None]
        return torch.where(first, clean_hidden[:, P - 1 + j], hidden[:, (j - 1).clamp(min=0)])


class BlockCacheDenoiser(CrossAttentionDenoiser):
    """Semi-AR decoding of a block-diffusion model with an exact cache: the prompt's and each
    committed block's self-attention keys and values are computed once (no block sees a later
    one), so a step runs only the current block's positions. Calls that are not such a step
    (scoring, positions outside one block, padded canvases) recompute, as the parent does."""

    def __init__(self, lm: WhisperDecoderLM, prompt_ids: torch.Tensor, block_size: int, mask_id: int):
        super().__init__(lm, prompt_ids, block_size)
        self.mask_id = mask_id

    def prefill(self, embeds, mask=None, positions=None) -> PrefixState:
        state = super().prefill(embeds, mask, positions)
        state.blocks = None  # per-layer keys and values, allocated once the canvas length is known
        return state

    def _step_block(self, state, response, response_mask, rows, select) -> Optional[int]:
        """The block every selected position of ``rows`` lies in when the call is a semi-AR step
        (the blocks before it committed, no padding), else None."""
        if not bool(response_mask[rows].all()):
            return None
        cols = select.any(0).nonzero()
        if cols.numel() == 0:
            return None
        b = self.block_size
        c = int(cols[0]) // b
        if int(cols[-1]) // b != c or bool((response[rows, : c * b] == self.mask_id).any()):
            return None
        if state.blocks is not None and bool((state.cached[rows.cpu()] != state.cached[int(rows[0])]).any()):
            return None
        return c

    def positions_per_pass(self, state, rows, L, response=None, select=None, clean=None) -> int:
        if response is None or select is None or clean is not None:
            return super().positions_per_pass(state, rows, L, clean=clean)
        c = self._step_block(state, response, torch.ones_like(response, dtype=torch.bool), rows, select)
        if c is None:
            return super().positions_per_pass(state, rows, L)
        done = 0 if state.blocks is None else int(state.cached[int(rows[0])])
        # The committed positions not yet cached, then the current block.
        return len(self.prompt_ids) + c * self.block_size - done + min(self.block_size, L - c * self.block_size)

    def selected_logits(self, state, response, response_mask, rows, select, clean=None):
        if clean is not None or rows is None:
            return super().selected_logits(state, response, response_mask, rows, select, clean)
        c = self._step_block(state, response, response_mask, rows, select)
        if c is None:
            return super().selected_logits(state, response, response_mask, rows, select, clean)
        L = response.shape[1]
        P, b, dev = len(self.prompt_ids), self.block_size, response.device
        if state.blocks is None:
            # Keys and values of the prompt and the whole canvas, per layer, filled as blocks commit.
            k0 = state.kv[0][0]
            z = k0.new_zeros(k0.shape[0], k0.shape[1], P + L, k0.shape[3])
            state.blocks = [(z.clone(), z.clone()) for _ in self.lm.decoder.layers]
            state.cached = torch.zeros(k0.shape[0], dtype=torch.long)
            state.carry = k0.new_zeros(k0.shape[0], k0.shape[1] * k0.shape[3])
        kv, frames_mask = self._frames_of(state, rows)
        done = int(state.cached[int(rows[0])])
        if done < P + c * b:
            # Cache the prompt (first call) and the blocks committed since: each sees those before it.
            ids = torch.cat([self.prompt_ids[None].expand(len(rows), -1), response[rows]], 1)[:, done : P + c * b]
            self._extend(state, rows, ids, done, kv, frames_mask)
            done = P + c * b
        block = response[rows, c * b : (c + 1) * b]
        cache = [(self._take(k, rows)[:, :, :done], self._take(v, rows)[:, :, :done]) for k, v in state.blocks]
        keys = torch.ones(len(rows), done + block.shape[1], dtype=torch.bool, device=dev)
        hidden = self.lm(block, keys, kv, frames_mask, causal=False, start=done, cache=cache)
        # The block's first token is predicted from the last committed position, the others from
        # the block's own positions before them (shifted logits).
        pred = torch.cat([state.carry[rows][:, None], hidden[:, :-1]], 1)
        return self.lm.logits(pred[select[:, c * b : c * b + block.shape[1]]])

    def reorder(self, state, index) -> None:
        # The committed blocks' keys and values are a hypothesis's own; the frames are its cut's.
        if getattr(state, "blocks", None) is not None:
            state.blocks = [(k[index], v[index]) for k, v in state.blocks]
            state.cached, state.carry = state.cached[index.cpu()], state.carry[index]

    @staticmethod
    def _take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``t``'s ``rows``: a view while every row is decoding, a copy once some have finished."""
        return t if len(rows) == t.shape[0] else t[rows]

    def _frames_of(self, state, rows):
        """The frames' keys and values and mask for ``rows``, gathered once per set of rows (a step's
        rows change only when some finish), not at every step."""
        if getattr(state, "rows", None) is None or not torch.equal(state.rows, rows):
            state.rows = rows.clone()
            state.frames_of = [(self._take(k, rows), self._take(v, rows)) for k, v in state.kv]
            state.frames_mask_of = self._take(state.mask, rows)
        return state.frames_of, state.frames_mask_of

    def _extend(self, state, rows, ids, start, kv, frames_mask) -> None:
        """Run ``ids`` (whole blocks, or the prompt and whole blocks) at positions ``start``.. against the
        cache, block-causally, and append their keys and values; the last one's hidden state is the carry."""
        P, n = len(self.prompt_ids), ids.shape[1]
        L = state.blocks[0][0].shape[2] - P
        pattern = block_pattern(P, L, self.block_size, ids.device)[start : start + n, : start + n]
        cache = [(self._take(k, rows)[:, :, :start], self._take(v, rows)[:, :, :start]) for k, v in state.blocks]
        keys = torch.ones(len(rows), start + n, dtype=torch.bool, device=ids.device)
        hidden = self.lm(ids, keys, kv, frames_mask, causal=False, start=start, cache=cache, pattern=pattern)
        for (K, V), (k, v) in zip(state.blocks, cache):
            K[rows, :, start : start + n], V[rows, :, start : start + n] = k[:, :, start:], v[:, :, start:]
        state.carry[rows] = hidden[:, -1]
        state.cached[rows.cpu()] = start + n


class _ReadsFrames:
    """What both Whisper-decoder archs read (the encoder's frames and their key-padding mask) and
    their next-token logits under teacher forcing."""

    def llm_audio(self, audio):
        if audio is None:
            raise ValueError(
                f"{self.cfg.arch} cannot pre-train on text alone (train.lm_epochs): it has no audio-free input"
            )
        frames, real = self.encoder_output(audio)
        return frames, Audio.frames(frames, real).mask

    def _next_token_logits(self, frames, mask, seqs: Sequence[Sequence[int]]):
        """Teacher forcing of each row's tokens + EOS after the prompt: the logits that predict them
        (n, V), the n targets, and the row of each."""
        eos, P = self.tokenizer.eos_id, len(self.prompt_ids)
        rows = [self.prompt_ids.tolist() + list(ids) + [eos] for ids in seqs]
        L = max(map(len, rows))
        ids = torch.tensor([r + [eos] * (L - len(r)) for r in rows], device=self.device)
        real = torch.tensor([[j < len(r) for j in range(L)] for r in rows], device=self.device)
        hidden = self.llm(ids, real, self.llm.cross_kv(frames), mask, causal=True)[:, P - 1 : -1]
        valid = real[:, P:]
        row = torch.arange(len(rows), device=self.device)[:, None].expand_as(valid)[valid]
        return self.llm.logits(hidden[valid]), ids[:, P:][valid], row


class WhisperDecoderMDM(_ReadsFrames, WhisperLLaDA):
    """Masked diffusion on Whisper's decoder: trained, decoded, deliberated and rescored by
    Whisper-LLaDA's loss and samplers, through ``CrossAttentionDenoiser``; its "prefix" is the
    encoder's frames."""

    block_causal_ok = True  # the builder accepts llm.block_size for this arch

    def prefix(self, audio):
        return (*self.llm_audio(audio), None)

    def denoiser(self, cfg=None) -> Denoiser:
        """Recomputing the response every call (training, scoring, ``cache: none``); a block-diffusion
        model decodes with the exact block cache (``cache`` auto or exact)."""
        b = self.cfg.llm.block_size
        if cfg is not None and cfg.cache == "approximate":
            raise ValueError(
                f"{self.cfg.arch}: cache approximate has nothing to approximate (the audio never attends to "
                "the response); use auto"
            )
        if b is not None and cfg is not None and cfg.cache in ("auto", "exact"):
            return BlockCacheDenoiser(self.llm, self.prompt_ids, b, self.mask_id)
        return CrossAttentionDenoiser(self.llm, self.prompt_ids, b)

    def forward(self, texts: Sequence[str], audio, generator: Optional[torch.Generator] = None) -> dict:
        frames, mask, _ = prefix = self.prefix(audio)
        out = self.loss(*prefix, texts, generator)
        if self.cfg.loss.ar_weight > 0:
            # The same decoder run causally on the same batch: the next-token loss it was pretrained with.
            logits, target, _ = self._next_token_logits(frames, mask, self.encode_texts(texts))
            out["ar_loss"] = F.cross_entropy(logits.float(), target)
            out["loss"] = out["loss"] + self.cfg.loss.ar_weight * out["ar_loss"]
        return out

    def training_logits(self, prefix, prefix_mask, response, prefix_positions, masked, target=None):
        den = self.denoiser()
        state = den.prefill(prefix, prefix_mask)
        return den.selected_logits(state, response, torch.ones_like(masked), None, masked, clean=target)

    def transcribe(self, batch: dict, cfg, stats: Optional[dict] = None, generator=None) -> list[str]:
        b = self.cfg.llm.block_size
        if b is not None and cfg.mode == "decoding" and (cfg.block_length is None or b % cfg.block_length):
            # Larger blocks would predict a block's first token from one still masked: never trained.
            raise ValueError(
                f"this model is block diffusion (model.llm.block_size {b}): decode semi-autoregressively "
                f"with a block_length that divides {b}, not {cfg.block_length}"
            )
        return super().transcribe(batch, cfg, stats, generator)

    def canvas_lengths(self, batch, prefix_mask, cfg):
        raise ValueError(f"{self.cfg.arch}: gen_len auto is not available yet; give gen_len a number")


class WhisperDecoderAR(_ReadsFrames, SpeechLLM):
    """The autoregressive twin on Whisper's decoder: next-token loss, beam search with a KV cache
    (greedy at one beam), teacher-forced scoring of candidates."""

    def forward(self, texts: Sequence[str], audio, generator: Optional[torch.Generator] = None) -> dict:
        del generator
        frames, mask = self.llm_audio(audio)
        logits, target, _ = self._next_token_logits(frames, mask, self.encode_texts(texts))
        loss = F.cross_entropy(logits.float(), target)
        return {"loss": loss, "num_tokens": len(target), "num_utts": len(texts)}

    @torch.no_grad()
    def score_texts(self, batch: dict, candidates: Sequence[Sequence[str]], cfg, stats: Optional[dict] = None):
        """Log-probability of each cut's candidate transcripts (tokens and EOS), teacher-forced,
        ``cfg.batch_size`` candidates a pass: n-best rescoring by the AR twin."""
        frames, mask = self.llm_audio(batch["audio"].to(self.device))
        row_of = [i for i, texts in enumerate(candidates) for _ in texts]
        seqs = [self.tokenizer.encode(t) for texts in candidates for t in texts]
        out: list[float] = []
        for start in range(0, len(seqs), cfg.batch_size):
            part = torch.tensor(row_of[start : start + cfg.batch_size], device=self.device)
            chunk = seqs[start : start + cfg.batch_size]
            logits, target, row = self._next_token_logits(frames[part], mask[part], chunk)
            lp = logits.float().log_softmax(-1).gather(1, target[:, None])[:, 0]
            out += torch.zeros(len(chunk), device=self.device).index_add_(0, row, lp).tolist()
        if stats is not None:
            stats["forward_passes"] = torch.bincount(torch.tensor(row_of, dtype=torch.long), minlength=len(candidates))
        scores: list[list[float]] = [[] for _ in candidates]
        for i, s in zip(row_of, out):
            scores[i].append(s)
        return scores

    @torch.no_grad()
    def transcribe(self, batch: dict, cfg, stats: Optional[dict] = None, generator=None) -> list[str]:
        del generator
        if cfg.mode != "autoregressive":
            raise ValueError(f"{self.cfg.arch} decodes autoregressively (mode autoregressive), not {cfg.mode!r}")
        return [nbest[0][0] for nbest in self.nbest(batch, cfg, stats)]

    @torch.no_grad()
    def nbest(self, batch: dict, cfg, stats: Optional[dict] = None) -> list[list[tuple[str, float]]]:
        """Each cut's ``cfg.num_beams`` best transcripts with their log-probabilities (tokens + EOS),
        best first: beam search with a KV cache (greedy at one beam)."""
        frames, mask = self.llm_audio(batch["audio"].to(self.device))
        B, P, K, eos = frames.shape[0], len(self.prompt_ids), cfg.num_beams, self.tokenizer.eos_id
        cross = [(k.repeat_interleave(K, 0), v.repeat_interleave(K, 0)) for k, v in self.llm.cross_kv(frames)]
        mask = mask.repeat_interleave(K, 0)
        cache = [None] * len(self.llm.decoder.layers)
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
        if stats is not None:
            stats["forward_passes"] = stats.get("forward_passes", 0) + steps
            stats["model_calls"] = stats.get("model_calls", 0) + int(steps.max())
        out = []
        for b in range(B):
            order = score[b].argsort(descending=True).tolist()
            out.append([(self.tokenizer.decode(tokens[b, k].tolist()), float(score[b, k])) for k in order])
        return out
