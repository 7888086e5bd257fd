"""Decoding and deliberation samplers for masked-diffusion LMs, batched and exact.

``generate`` unmasks an all-mask response (pure diffusion or semi-autoregressive blocks);
``deliberate`` re-masks part of a first-pass hypothesis and re-predicts it. With
temperature 0 each row gets the tokens the paper's batch-1 code gives; rows of a batch
never influence each other (left-padded prefixes, right-padded responses, per-row
schedules), and a forward pass runs only on the rows that still have work.

The model is anything that takes ``inputs_embeds`` and ``attention_mask``, returns
``.logits`` and has ``get_input_embeddings()``.
"""

from __future__ import annotations

import inspect
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

REMASKING = ("low_confidence", "random")
MASKING_TYPES = ("low_confidence", "random", "given")


def num_transfer_tokens(num_masked: torch.Tensor, steps: torch.Tensor | int) -> torch.Tensor:
    """Spread each row's masks evenly over its steps; the first ``remainder`` steps take one more.

    num_masked (B,), steps int or (B,) -> (B, max steps) with zeros past a row's own steps.
    """
    num_masked = num_masked.long()
    steps_t = torch.as_tensor(steps, device=num_masked.device).long().expand_as(num_masked)
    width = int(steps_t.max()) if steps_t.numel() else 0
    safe = steps_t.clamp(min=1)
    base, rem = num_masked // safe, num_masked % safe
    i = torch.arange(width, device=num_masked.device)[None, :]
    out = base[:, None] + (i < rem[:, None]).long()
    return out * (i < steps_t[:, None]).long()


def _accepts_logits_to_keep(model) -> bool:
    target = getattr(model, "get_base_model", lambda: model)()
    params = inspect.signature(target.forward).parameters
    return "logits_to_keep" in params


def sequence_positions(prefix_positions: torch.Tensor, n: int) -> torch.Tensor:
    """Position ids (B, P + n) of a prefix followed by ``n`` response positions, which continue
    from the last prefix position + 1, + 2, ... (as ``transformers``' ``generate`` continues them)."""
    after = prefix_positions[:, -1:] + 1 + torch.arange(n, device=prefix_positions.device)
    return torch.cat([prefix_positions, after], dim=1)


class _Runner:
    """Runs the model on a subset of rows and returns logits over the response positions.

    With ``prefix_positions`` (B, P) the model gets explicit position ids, the response
    continuing from the last prefix position; without, the model's own (0..T-1).
    """

    def __init__(self, model, prefix: torch.Tensor, prefix_mask: torch.Tensor, stats: Optional[dict],
                 prefix_positions: Optional[torch.Tensor] = None):
        self.model, self.prefix, self.prefix_mask = model, prefix, prefix_mask
        self.prefix_positions = prefix_positions
        self.embed = model.get_input_embeddings()
        self.keep_arg = _accepts_logits_to_keep(model)
        self.stats = stats
        self.passes = torch.zeros(prefix.shape[0], dtype=torch.long)
        self.calls = 0

    def __call__(self, rows: torch.Tensor, x: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        emb = torch.cat([self.prefix[rows], self.embed(x[rows]).to(self.prefix.dtype)], dim=1)
        mask = torch.cat([self.prefix_mask[rows], resp_mask[rows]], dim=1)
        kwargs = {"logits_to_keep": L} if self.keep_arg else {}
        if self.prefix_positions is not None:
            kwargs["position_ids"] = sequence_positions(self.prefix_positions[rows], L)
        logits = self.model(inputs_embeds=emb, attention_mask=mask, **kwargs).logits[:, -L:]
        self.passes[rows.cpu()] += 1
        self.calls += 1
        return logits

    def report(self) -> None:
        if self.stats is not None:
            self.stats["forward_passes"] = self.stats.get("forward_passes", 0) + self.passes
            self.stats["model_calls"] = self.stats.get("model_calls", 0) + self.calls


def _propose(logits: torch.Tensor, remasking: str, temperature: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 (argmax, Gumbel-perturbed when temperature > 0) and its confidence."""
    if temperature > 0:
        # Gumbel-max in float64: low precision hurts generation quality for MDMs.
        noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
        x0 = torch.argmax(logits.double().exp() / (-torch.log(noise)) ** temperature, dim=-1)
    else:
        x0 = torch.argmax(logits, dim=-1)
    if remasking == "low_confidence":
        conf = torch.gather(F.softmax(logits.float(), dim=-1), -1, x0[..., None]).squeeze(-1)
    else:
        conf = torch.rand(x0.shape, device=x0.device, generator=generator)
    return x0, conf


def _denoise(
    run: _Runner,
    x: torch.Tensor,
    resp_mask: torch.Tensor,
    window: torch.Tensor,
    schedule: torch.Tensor,
    *,
    mask_id: int,
    remasking: str,
    temperature: float,
    generator,
    eos_id: Optional[int] = None,
) -> torch.Tensor:
    """Commit ``schedule[:, i]`` masked tokens of ``window`` per step, most confident first.

    With ``eos_id``, a committed EOS turns every later position into EOS.
    """
    L = x.shape[1]
    pos = torch.arange(L, device=x.device)
    for i in range(schedule.shape[1]):
        open_ = (x == mask_id) & window
        # More scheduled than open can only follow an EOS fill; the paper's topk then picks
        # unmasked positions, which changes nothing.
        k = torch.minimum(schedule[:, i], open_.sum(1))
        rows = (k > 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue  # the paper's code still runs the model here, to no effect
        logits = run(rows, x, resp_mask)
        x0, conf = _propose(logits, remasking, temperature, generator)
        conf = conf.masked_fill(~open_[rows], float("-inf"))
        order = torch.argsort(conf, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, pos.expand_as(order))
        take = rank < k[rows, None]
        xr = torch.where(take, x0, x[rows])
        if eos_id is not None:
            eos_hit = take & (x0 == eos_id)
            first = torch.where(eos_hit.any(1), eos_hit.int().argmax(1), L)
            xr = torch.where(pos[None, :] >= first[:, None], torch.full_like(xr, eos_id), xr)
        x[rows] = xr
    return x


def _prefix_mask(prefix_embeds: torch.Tensor, prefix_mask: Optional[torch.Tensor]) -> torch.Tensor:
    if prefix_mask is None:
        return torch.ones(prefix_embeds.shape[:2], dtype=torch.bool, device=prefix_embeds.device)
    if prefix_mask.shape != prefix_embeds.shape[:2]:
        raise ValueError(f"prefix_mask {tuple(prefix_mask.shape)} does not match prefix_embeds {tuple(prefix_embeds.shape[:2])}")
    return prefix_mask.to(torch.bool)


@torch.no_grad()
def generate(
    model,
    prefix_embeds: torch.Tensor,
    *,
    prefix_mask: Optional[torch.Tensor] = None,
    gen_length: int = 128,
    steps: int = 128,
    block_length: int = 128,
    remasking: str = "low_confidence",
    temperature: float = 0.0,
    mask_id: int,
    eos_id: int,
    generator: Optional[torch.Generator] = None,
    stats: Optional[dict] = None,
    prefix_positions: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Unmask a response of ``gen_length`` tokens; returns (B, gen_length), EOS-filled after the first EOS.

    ``block_length == gen_length`` is pure diffusion; shorter blocks are decoded left to
    right (semi-autoregressive) with ``steps // num_blocks`` steps each. ``stats``, if
    given, receives ``forward_passes`` per row and ``model_calls``. ``prefix_positions``
    (B, P), if given, are the prefix's position ids; the response continues from the last.
    """
    if remasking not in REMASKING:
        raise ValueError(f"remasking {remasking!r}: expected one of {REMASKING}")
    if gen_length <= 0 or block_length <= 0 or steps <= 0:
        raise ValueError(f"gen_length ({gen_length}), block_length ({block_length}) and steps ({steps}) must be positive")
    if gen_length % block_length:
        raise ValueError(f"gen_length {gen_length} is not a multiple of block_length {block_length}")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ValueError(f"steps {steps} is not a multiple of the number of blocks {num_blocks} (gen_length / block_length)")
    B = prefix_embeds.shape[0]
    device = prefix_embeds.device
    run = _Runner(model, prefix_embeds, _prefix_mask(prefix_embeds, prefix_mask), stats, prefix_positions)
    x = torch.full((B, gen_length), mask_id, dtype=torch.long, device=device)
    resp_mask = torch.ones_like(x, dtype=torch.bool)
    pos = torch.arange(gen_length, device=device)
    for b in range(num_blocks):
        start, end = b * block_length, (b + 1) * block_length
        # A row whose EOS filled this block has no masks left in it: its steps are skipped.
        in_block = ((x == mask_id) & (pos >= start) & (pos < end)).sum(1)
        schedule = num_transfer_tokens(in_block, steps // num_blocks)
        window = (pos < end).expand(B, -1)
        x = _denoise(run, x, resp_mask, window, schedule, mask_id=mask_id, remasking=remasking,
                     temperature=temperature, generator=generator, eos_id=eos_id)
    run.report()
    return x


def _responses(hyps: Sequence[Sequence[int]], pad_id: int, eos_id: int, pad_to: Optional[int], device):
    """Right-padded responses: tokens (B, L), positions the model sees, positions that may change.

    With ``pad_to``, each hypothesis is followed by EOS up to ``pad_to`` tokens (seen, never
    masked), the layout a model trained on EOS-padded responses knows.
    """
    lens = [len(h) for h in hyps]
    seen = [max(n, pad_to or 0) if n else 0 for n in lens]
    L = max([1, *seen])
    x = torch.full((len(hyps), L), pad_id, dtype=torch.long, device=device)
    visible = torch.zeros_like(x, dtype=torch.bool)
    editable = torch.zeros_like(visible)
    for i, h in enumerate(hyps):
        x[i, lens[i] : seen[i]] = eos_id
        if lens[i]:
            x[i, : lens[i]] = torch.as_tensor(list(h), dtype=torch.long, device=device)
        visible[i, : seen[i]] = True
        editable[i, : lens[i]] = True
    return x, visible, editable


def _choose_masks(
    run: _Runner,
    x: torch.Tensor,
    visible: torch.Tensor,
    real: torch.Tensor,
    num: torch.Tensor,
    masking_type: str,
    confidences,
    pad_id: int,
    generator,
) -> torch.Tensor:
    """Boolean (B, L): which ``num[i]`` positions of each row to re-mask."""
    B, L = x.shape
    if masking_type == "random":
        chosen = torch.zeros_like(real)
        for i in range(B):
            n = int(real[i].sum())
            if num[i] > 0:
                perm = torch.randperm(n, generator=generator, device=generator.device if generator else x.device)
                chosen[i, perm[: int(num[i])].to(x.device)] = True
        return chosen
    if masking_type == "given":
        if confidences is None or len(confidences) != B:
            raise ValueError("masking_type='given' needs one list of confidences per hypothesis")
        score = torch.full((B, L), float("inf"), device=x.device)
        for i, c in enumerate(confidences):
            n = int(real[i].sum())
            if len(c) != n:
                raise ValueError(f"hypothesis {i}: {n} tokens but {len(c)} confidences")
            if n:
                score[i, :n] = torch.as_tensor(list(c), dtype=torch.float, device=x.device)
    else:
        # The paper scores each first-pass token by one pass over an all-pad response.
        rows = (num > 0).nonzero().squeeze(1)
        score = torch.full((B, L), float("inf"), device=x.device)
        if rows.numel():
            logits = run(rows, torch.full_like(x, pad_id), visible)
            probs = F.softmax(logits.float(), dim=-1)
            score[rows] = torch.gather(probs, -1, x[rows, :, None]).squeeze(-1).masked_fill(~real[rows], float("inf"))
    order = torch.argsort(score, dim=1, stable=True)  # lowest first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=x.device).expand_as(order))
    return (rank < num[:, None]) & real


@torch.no_grad()
def deliberate(
    model,
    prefix_embeds: torch.Tensor,
    hyps: Sequence[Sequence[int]],
    *,
    prefix_mask: Optional[torch.Tensor] = None,
    mode: str = "diffusion",
    mask_ratio: float = 0.3,
    masking_type: str = "low_confidence",
    confidences: Optional[Sequence[Sequence[float]]] = None,
    num_chunks: int = 4,
    steps: int = 128,
    remasking: str = "low_confidence",
    temperature: float = 0.0,
    mask_id: int,
    eos_id: int,
    pad_id: int,
    pad_to: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    stats: Optional[dict] = None,
    prefix_positions: Optional[torch.Tensor] = None,
) -> list[list[int]]:
    """Re-mask part of each first-pass hypothesis and re-predict it; lengths are kept.

    ``mode="diffusion"``: mask ``int(L * mask_ratio)`` tokens (lowest model confidence,
    random, or lowest ``confidences`` for ``"given"``) and unmask them over
    ``min(steps, #masked)`` steps. ``mode="semi_ar"``: for each of ``num_chunks`` chunks
    in turn (the last takes the rest), mask the whole chunk and denoise it in
    ``steps // num_chunks`` steps. ``pad_to`` appends unmaskable EOS up to that many
    tokens (the paper: None, the response is the hypothesis alone). ``prefix_positions``
    as in ``generate``.
    """
    if mode not in ("diffusion", "semi_ar"):
        raise ValueError(f"mode {mode!r}: expected 'diffusion' or 'semi_ar'")
    if masking_type not in MASKING_TYPES:
        raise ValueError(f"masking_type {masking_type!r}: expected one of {MASKING_TYPES}")
    if remasking not in REMASKING:
        raise ValueError(f"remasking {remasking!r}: expected one of {REMASKING}")
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio {mask_ratio} is not in [0, 1]")
    if mode == "semi_ar" and (num_chunks < 1 or steps < num_chunks):
        raise ValueError(f"semi-AR deliberation needs 1 <= num_chunks <= steps (num_chunks {num_chunks}, steps {steps})")
    if steps < 1:
        raise ValueError(f"steps {steps} must be positive")
    if len(hyps) != prefix_embeds.shape[0]:
        raise ValueError(f"{len(hyps)} hypotheses for a batch of {prefix_embeds.shape[0]}")
    device = prefix_embeds.device
    run = _Runner(model, prefix_embeds, _prefix_mask(prefix_embeds, prefix_mask), stats, prefix_positions)
    x, visible, real = _responses(hyps, pad_id, eos_id, pad_to, device)
    lens = real.sum(1)
    common = dict(mask_id=mask_id, remasking=remasking, temperature=temperature, generator=generator)
    if mode == "diffusion":
        num = (lens.double() * mask_ratio).long()  # int(L * mask_ratio), as the paper
        chosen = _choose_masks(run, x, visible, real, num, masking_type, confidences, pad_id, generator)
        x = x.masked_fill(chosen, mask_id)
        schedule = num_transfer_tokens(num, torch.minimum(num, torch.tensor(steps, device=device)))
        x = _denoise(run, x, visible, real, schedule, **common)
    else:
        chunk = lens // num_chunks
        pos = torch.arange(x.shape[1], device=device)[None, :]
        for c in range(num_chunks):
            start = chunk * c
            end = lens if c == num_chunks - 1 else chunk * (c + 1)
            in_chunk = (pos >= start[:, None]) & (pos < end[:, None]) & real
            x = x.masked_fill(in_chunk, mask_id)
            schedule = num_transfer_tokens(in_chunk.sum(1), steps // num_chunks)
            x = _denoise(run, x, visible, real, schedule, **common)
    run.report()
    return [x[i, : int(lens[i])].tolist() for i in range(len(hyps))]
