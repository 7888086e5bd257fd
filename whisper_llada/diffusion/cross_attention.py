"""The denoisers of a masked-diffusion LM that cross-attends to the encoder's frames (Whisper's decoder):
recomputing, and the exact block cache of block diffusion, with the attention patterns they need.

The LM is any module shaped as ``models.whisper_decoder_lm.WhisperDecoderLM``: ``cross_kv(frames)``,
``forward(ids, key_mask, cross, frames_mask, causal, start, cache, positions, pattern)``, ``logits``,
``num_layers``. Each denoiser keeps what it caches in its own typed state (``CrossAttentionState``,
``BlockCacheState``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from whisper_llada.diffusion.denoiser import Denoiser, PrefixState


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


@dataclass(slots=True)
class CleanContext:
    """What scoring a block-causal model keeps per ``clean`` response tensor: the tensor and its
    padding mask (by identity), the prompt's and clean copy's per-layer keys and values, and their
    hidden states."""

    clean: torch.Tensor
    response_mask: torch.Tensor
    cache: list
    hidden: torch.Tensor


@dataclass(slots=True)
class CrossAttentionState(PrefixState):
    """A batch's prefix for a cross-attention LM: ``embeds`` are the encoder's frames, ``mask``
    their key padding, ``kv`` each layer's keys and values of them; ``clean_context`` what
    scoring keeps for the clean response it was last given."""

    clean_context: CleanContext | None = None


@dataclass(slots=True)
class BlockCacheState(CrossAttentionState):
    """``CrossAttentionState`` plus the block cache: per-layer keys and values of the prompt and the
    committed blocks (B, H, P + L, hd), allocated once the canvas length is known; how many
    positions of each row are cached; each row's hidden state of its last cached position (the
    carry that predicts the next block's first token); and the frames' keys, values and mask
    gathered for the rows last decoded."""

    blocks: list | None = None
    cached: torch.Tensor | None = None
    carry: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    frames_of: list | None = None
    frames_mask_of: torch.Tensor | None = None


class CrossAttentionDenoiser(Denoiser):
    """The samplers' interface for a cross-attention model: ``prefill`` computes each layer's keys and
    values of the encoder frames once (exact: the audio never attends to the response); every call
    runs the prompt and the response through the bidirectional decoder."""

    cache = "exact"

    def __init__(self, lm, prompt_ids: torch.Tensor, block_size: int | None = None):
        self.lm, self.prompt_ids, self.block_size = lm, prompt_ids, block_size
        self.prefix_attends_response = False

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    state_class = CrossAttentionState

    def prefill(self, embeds, mask=None, positions=None) -> CrossAttentionState:
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        return self.state_class(embeds, mask.to(torch.bool), None, kv=self.lm.cross_kv(embeds))

    def positions_per_pass(
        self, state: CrossAttentionState, rows: torch.Tensor, L: int, response=None, select=None, clean=None
    ) -> int:
        P = len(self.prompt_ids)
        if clean is None or self.block_size is None:
            return P + L
        if torch.is_grad_enabled():
            return P + 2 * L  # the two-copy pass
        # Scoring: the masked copy, and the prompt and the clean copy once per clean tensor.
        ctx = state.clean_context
        return L if ctx is not None and ctx.clean is clean else P + 2 * L

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
        ctx = state.clean_context
        if ctx is None or ctx.clean is not clean or ctx.response_mask is not response_mask:
            cache = [None] * self.lm.num_layers
            ids = torch.cat([self.prompt_ids[None].expand(B, -1), clean], 1)
            hidden = self.lm(
                ids, keys, state.kv, state.mask, causal=False, pattern=block_pattern(P, L, b, dev), cache=cache
            )
            state.clean_context = ctx = CleanContext(clean, response_mask, cache, hidden)
        cache, clean_hidden = ctx.cache, ctx.hidden
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

    state_class = BlockCacheState

    def __init__(self, lm, prompt_ids: torch.Tensor, block_size: int, mask_id: int):
        super().__init__(lm, prompt_ids, block_size)
        self.mask_id = mask_id

    def _step_block(self, state, response, response_mask, rows, select) -> int | None:
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
            state.blocks = [(z.clone(), z.clone()) for _ in range(self.lm.num_layers)]
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
        if state.blocks is not None:
            state.blocks = [(k[index], v[index]) for k, v in state.blocks]
            state.cached, state.carry = state.cached[index.cpu()], state.carry[index]

    @staticmethod
    def _take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``t``'s ``rows``: a view while every row is decoding, a copy once some have finished."""
        return t if len(rows) == t.shape[0] else t[rows]

    def _frames_of(self, state, rows):
        """The frames' keys and values and mask for ``rows``, gathered once per set of rows (a step's
        rows change only when some finish), not at every step."""
        if state.rows is None or not torch.equal(state.rows, rows):
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
