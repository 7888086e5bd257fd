"""The one interface between a masked-diffusion LM and what calls it (samplers, training loss, scoring):
``prefill`` a prefix once, then ``response_logits`` for a (partly masked) response as often as needed.

``Denoiser`` recomputes the whole sequence every call (exact, the paper's behaviour) and works with
any LM that takes ``inputs_embeds`` and ``attention_mask``. ``PrefixCacheDenoiser`` keeps the prefix's keys
and values: exact when the prefix never attends to the response (``prefix_attends_response`` false,
a model setting used alike in training), approximate (Fast-dLLM's prefix cache, refreshed every
``refresh`` calls) for a fully bidirectional model. An LM offers the cache by accepting
``past_key_values``, ``past_mask``, ``keep_kv`` and ``prefix_length`` in ``forward`` and setting
``supports_prefix_cache`` (native LLaDA does).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from whisper_llada.diffusion.options import CACHES


def sequence_positions(prefix_positions: torch.Tensor, n: int) -> torch.Tensor:
    """Position ids (B, P + n) of a prefix followed by ``n`` response positions, which continue
    from the last prefix position + 1, + 2, ... (as ``transformers``' ``generate`` continues them)."""
    after = prefix_positions[:, -1:] + 1 + torch.arange(n, device=prefix_positions.device)
    return torch.cat([prefix_positions, after], dim=1)


def _base(lm):
    """The module whose ``forward`` holds the signature (a ``peft`` wrapper forwards to it)."""
    return getattr(lm, "get_base_model", lambda: lm)()


def supports_prefix_cache(lm) -> bool:
    return bool(getattr(_base(lm), "supports_prefix_cache", False))


# Slots: a denoiser keeps what it caches in typed fields of its own state class, never new attributes.
@dataclass(slots=True)
class PrefixState:
    """A batch's prefix as ``prefill`` left it: embeddings (B, P, D), key-padding mask (B, P),
    position ids (B, P) or None (the LM's own 0..P-1), and, when cached, per-layer keys and values
    with the number of calls since each row's were computed."""

    embeds: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor | None = None
    kv: list | None = None
    age: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.embeds.shape[1]


class Denoiser:
    """Recomputes prefix and response on every call: exact for any LM.

    With ``prefix_attends_response`` false the prefix is kept from seeing the response (the LM
    must accept ``prefix_length``), as the model was trained.
    """

    cache = "none"

    def __init__(self, lm, prefix_attends_response: bool = True):
        self.lm = lm
        self.prefix_attends_response = prefix_attends_response
        params = inspect.signature(_base(lm).forward).parameters
        self._keep_arg = "logits_to_keep" in params
        self._pos_arg = "position_ids" in params
        if not prefix_attends_response and "prefix_length" not in params:
            raise ValueError(
                f"{type(_base(lm)).__name__} cannot keep its prefix from attending to the response "
                "(model.prefix_attends_response: false needs an LM that takes prefix_length)"
            )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def prefill(
        self, embeds: torch.Tensor, mask: torch.Tensor | None = None, positions: torch.Tensor | None = None
    ) -> PrefixState:
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        elif mask.shape != embeds.shape[:2]:
            raise ValueError(
                f"prefix mask {tuple(mask.shape)} does not match prefix embeddings {tuple(embeds.shape[:2])}"
            )
        if positions is not None and not self._pos_arg:
            raise ValueError(
                f"{type(_base(self.lm)).__name__} takes no position ids (model.positions must be sequential)"
            )
        return PrefixState(embeds, mask.to(torch.bool), positions)

    def invalidate(self, state: PrefixState) -> None:
        """The response changed wholesale (a new block, a new phase): an approximate cache refreshes."""

    def reorder(self, state: PrefixState, index: torch.Tensor) -> None:
        """Beam search kept hypotheses ``index`` (rows, each within its own cut): state that belongs
        to a hypothesis follows it. The prefix is a cut's, shared by its hypotheses: nothing here."""

    def positions_per_pass(
        self, state: PrefixState, rows: torch.Tensor, L: int, response=None, select=None, clean=None
    ) -> int:
        """Sequence positions the next call (on ``response``, for ``select``, given ``clean`` as
        ``selected_logits`` is) runs per row, the prefix's included when it is recomputed."""
        return state.length + L

    def response_logits(
        self,
        state: PrefixState,
        response: torch.Tensor,
        response_mask: torch.Tensor,
        rows: torch.Tensor | None = None,
        clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (b, L, V) over the response positions of ``rows`` (all rows when None); ``response``
        and ``response_mask`` (B, L) hold every row. ``clean`` (B, L): the unmasked response where
        the caller knows it (training, scoring); a block-diffusion model reads earlier blocks from
        it, others need nothing but ``response``."""
        del clean
        return self._full_pass(state, response, response_mask, rows).logits[:, -response.shape[1] :]

    def selected_logits(
        self,
        state: PrefixState,
        response: torch.Tensor,
        response_mask: torch.Tensor,
        rows: torch.Tensor | None,
        select: torch.Tensor,
        clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (n, V) of the ``select``ed (b, L) response positions of ``rows`` only, in row-major
        order: what a loss or a score needs. A model whose output layer is costly (a large
        vocabulary) computes no others; here, all are computed."""
        return self.response_logits(state, response, response_mask, rows, clean)[select]

    def _full_pass(self, state: PrefixState, response, response_mask, rows=None, **extra):
        """The LM's output for ``[prefix][response]`` of ``rows``; ``extra`` goes to the LM."""
        embeds, mask, positions = state.embeds, state.mask, state.positions
        if rows is not None:
            response, response_mask = response[rows], response_mask[rows]
            embeds, mask = embeds[rows], mask[rows]
            positions = None if positions is None else positions[rows]
        L = response.shape[1]
        x = torch.cat([embeds, self.embed(response).to(embeds.dtype)], dim=1)
        kw = {"attention_mask": torch.cat([mask, response_mask.to(torch.bool)], dim=1), **extra}
        if self._keep_arg:
            kw["logits_to_keep"] = L  # the prefix's logits would cost (P x vocab) for nothing
        if positions is not None:
            kw["position_ids"] = sequence_positions(positions, L)
        if not self.prefix_attends_response:
            kw["prefix_length"] = embeds.shape[1]
        return self.lm(inputs_embeds=x, **kw)


class PrefixCacheDenoiser(Denoiser):
    """Keeps the prefix's keys and values; each call runs only the response positions.

    ``refresh`` None: computed once from the prefix alone (exact for a prefix that never attends to
    the response). ``refresh`` k: recomputed with the current response every k calls of a row and
    whenever ``invalidate`` is called (Fast-dLLM's approximate prefix cache for a bidirectional LM).
    """

    def __init__(self, lm, prefix_attends_response: bool = True, refresh: int | None = None):
        super().__init__(lm, prefix_attends_response)
        if not supports_prefix_cache(lm):
            raise ValueError(f"{type(_base(lm)).__name__} keeps no prefix cache (it recomputes every step: cache none)")
        if prefix_attends_response and refresh is None:
            raise ValueError(
                "an exact prefix cache needs a model whose prefix does not attend to the response "
                "(model.prefix_attends_response: false, used in training too); this model attends "
                "in both directions: use the approximate cache (cache: approximate) or none"
            )
        if refresh is not None and refresh < 1:
            raise ValueError(f"cache refresh {refresh}: expected a positive number of steps")
        self.refresh = refresh
        self.cache = "exact" if refresh is None else "approximate"

    def _positions(self, state: PrefixState, rows: torch.Tensor, L: int) -> torch.Tensor:
        if state.positions is not None:
            return sequence_positions(state.positions[rows], L)[:, state.length :]
        return torch.arange(state.length, state.length + L, device=state.embeds.device).expand(rows.numel(), -1)

    def prefill(self, embeds, mask=None, positions=None) -> PrefixState:
        state = super().prefill(embeds, mask, positions)
        if self.refresh is None:
            kw = {} if positions is None else {"position_ids": positions}
            out = self.lm(
                inputs_embeds=embeds, attention_mask=state.mask, keep_kv=embeds.shape[1], logits_to_keep=1, **kw
            )
            state.kv = out.past_key_values
        # Calls of each row served since its cache was computed; a new one starts stale.
        state.age = torch.full((embeds.shape[0],), self.refresh or 0, dtype=torch.long)
        return state

    def invalidate(self, state: PrefixState) -> None:
        if self.refresh is not None and state.age is not None:
            state.age.fill_(self.refresh)

    def _stale(self, state: PrefixState, rows: torch.Tensor) -> bool:
        if self.refresh is None:
            return False
        return state.kv is None or bool((state.age[rows.cpu()] >= self.refresh).any())

    def positions_per_pass(
        self, state: PrefixState, rows: torch.Tensor, L: int, response=None, select=None, clean=None
    ) -> int:
        return state.length + L if self._stale(state, rows) else L

    def response_logits(self, state, response, response_mask, rows=None, clean=None):
        del clean
        B = state.embeds.shape[0]
        if rows is None:
            rows = torch.arange(B, device=state.embeds.device)
        if self._stale(state, rows):
            # Full pass over [prefix][response]; the prefix's keys and values (which saw this
            # response) serve the next calls of these rows.
            out = self._full_pass(state, response, response_mask, rows, keep_kv=state.length)
            if state.kv is None:
                state.kv = [
                    (k.new_zeros((B, *k.shape[1:])), v.new_zeros((B, *v.shape[1:]))) for k, v in out.past_key_values
                ]
            for (ck, cv), (k, v) in zip(state.kv, out.past_key_values):
                ck[rows], cv[rows] = k, v
            state.age[rows.cpu()] = 0
            return out.logits[:, -response.shape[1] :]
        L = response.shape[1]
        past = [(k[rows], v[rows]) for k, v in state.kv]
        out = self.lm(
            inputs_embeds=self.embed(response[rows]).to(state.embeds.dtype),
            attention_mask=response_mask[rows].to(torch.bool),
            past_key_values=past,
            past_mask=state.mask[rows],
            position_ids=self._positions(state, rows, L),
        )
        state.age[rows.cpu()] += 1
        return out.logits


def make_denoiser(
    lm, *, prefix_attends_response: bool = True, cache: str = "auto", refresh: int | None = None
) -> Denoiser:
    """The denoiser a decode setting asks for. ``cache``: ``auto`` (the exact cache where the model
    allows it, else none), ``none``, ``exact`` or ``approximate`` (refreshed every ``refresh`` calls)."""
    if cache not in CACHES:
        raise ValueError(f"cache {cache!r}: expected one of {CACHES}")
    if cache == "auto":
        cache = "exact" if not prefix_attends_response and supports_prefix_cache(lm) else "none"
    if cache == "none":
        return Denoiser(lm, prefix_attends_response)
    if cache == "exact" or not prefix_attends_response:
        # For a prefix-blind model the exact cache is free of error and cheaper than an approximate one.
        return PrefixCacheDenoiser(lm, prefix_attends_response, None)
    return PrefixCacheDenoiser(lm, prefix_attends_response, refresh or 4)
