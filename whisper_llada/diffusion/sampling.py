"""Decoding and deliberation samplers for masked-diffusion LMs, batched and exact.

``generate`` unmasks an all-mask response (pure diffusion or semi-autoregressive blocks);
``deliberate`` re-masks part of a first-pass hypothesis and re-predicts it. With
temperature 0 and the fixed commit rule each row gets the tokens the paper's batch-1 code
gives; rows of a batch never influence each other (left-padded prefixes, right-padded
responses, per-row schedules and canvas lengths), and a pass runs only on the rows that
still have work.

The model is called only through a ``Denoiser`` (``whisper_llada.diffusion.denoiser``):
``prefill`` once, ``response_logits`` every step. A plain LM module is wrapped in the
recomputing one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from whisper_llada.diffusion.commit import CommitRule
from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.diffusion.denoiser import Denoiser, PrefixState, sequence_positions
from whisper_llada.diffusion.options import MASKING

__all__ = ["generate", "deliberate", "num_transfer_tokens", "sequence_positions"]

REMASKING = ("low_confidence", "random")
# The paper's rule; a frozen dataclass, so one instance serves as every call's default.
_FIXED_RULE = CommitRule()
# Which tokens deliberation re-masks: the settings' masking_type values (first_pass: the lowest
# ``confidences`` given, the first pass's own).
MASKING_TYPES = MASKING


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


def as_denoiser(model) -> Denoiser:
    return model if isinstance(model, Denoiser) else Denoiser(model)


class _Runner:
    """Calls the denoiser on a subset of rows and counts, per row, passes and the sequence
    positions they ran (the prefix's too when it is recomputed)."""

    def __init__(self, denoiser: Denoiser, state: PrefixState, stats: PassCounts | None):
        self.denoiser, self.state, self.stats = denoiser, state, stats
        B = state.embeds.shape[0]
        self.passes = torch.zeros(B, dtype=torch.long)
        self.positions = torch.zeros(B, dtype=torch.long)
        self.calls = 0
        if denoiser.cache == "exact":  # prefill ran one pass over each row's prefix
            self.passes += 1
            self.positions += state.length

    def __call__(
        self, rows: torch.Tensor, x: torch.Tensor, resp_mask: torch.Tensor, select: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (b, L, V) of ``rows``, or (n, V) of their ``select``ed (b, L) positions only."""
        n = self.denoiser.positions_per_pass(self.state, rows, x.shape[1], x, select)
        if select is None:
            logits = self.denoiser.response_logits(self.state, x, resp_mask, rows)
        else:
            logits = self.denoiser.selected_logits(self.state, x, resp_mask, rows, select)
        self.passes[rows.cpu()] += 1
        self.positions[rows.cpu()] += n
        self.calls += 1
        return logits

    def invalidate(self) -> None:
        self.denoiser.invalidate(self.state)

    def report(self) -> None:
        add_counts(self.stats, self.passes, self.positions, self.calls)


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
        conf = torch.rand(x0.shape, dtype=torch.float32, device=x0.device, generator=generator)
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
    eos_id: int | None = None,
    rule: CommitRule = _FIXED_RULE,
) -> torch.Tensor:
    """Commit masked tokens of ``window``, most confident first: ``schedule[:, i]`` at step i
    (the fixed rule), or as many as ``rule`` finds sure (the threshold rule, until none is left).

    With ``eos_id``, a committed EOS turns every later position into EOS.
    """
    L = x.shape[1]
    pos = torch.arange(L, device=x.device)
    i = 0
    while True:
        open_ = (x == mask_id) & window
        if rule.adaptive:
            want = open_.sum(1)
        elif i < schedule.shape[1]:
            # More scheduled than open can only follow an EOS fill; the paper's topk then picks
            # unmasked positions, which changes nothing.
            want = torch.minimum(schedule[:, i], open_.sum(1))
        else:
            break
        i += 1
        rows = (want > 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            if rule.adaptive:
                break
            continue  # the paper's code still runs the model here, to no effect
        if temperature == 0 and remasking == "low_confidence":
            # Only open positions can be committed: ask for their logits alone (a model with a
            # costly output layer then computes no others). Deterministic, so the same tokens.
            sel = open_[rows]
            x0, conf = x[rows].clone(), torch.full(sel.shape, float("-inf"), dtype=torch.float32, device=x.device)
            x0[sel], conf[sel] = _propose(run(rows, x, resp_mask, sel), remasking, temperature, generator)
        else:  # random draws keep their (b, L) shapes, so a seed gives what it always gave
            x0, conf = _propose(run(rows, x, resp_mask), remasking, temperature, generator)
        conf = conf.masked_fill(~open_[rows], float("-inf"))
        k = rule.count(conf, open_[rows], want[rows])
        order = torch.argsort(conf, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, pos.expand_as(order))
        take = rank < k[:, None]
        xr = torch.where(take, x0, x[rows])
        if eos_id is not None:
            eos_hit = take & (x0 == eos_id)
            first = torch.where(eos_hit.any(1), eos_hit.int().argmax(1), L)
            # Only the canvas (resp_mask) turns to EOS; positions past a row's length stay as they are.
            fill = (pos[None, :] >= first[:, None]) & resp_mask[rows]
            xr = torch.where(fill, torch.full_like(xr, eos_id), xr)
        x[rows] = xr
    return x


def _rule(commit: CommitRule | str, threshold: float, remasking: str) -> CommitRule:
    rule = commit if isinstance(commit, CommitRule) else CommitRule(commit, threshold)
    if rule.adaptive and remasking != "low_confidence":
        raise ValueError(
            f"the threshold commit rule reads the model's confidence: remasking must be low_confidence, not {remasking!r}"
        )
    return rule


def _canvas(gen_length, block_length: int | None, steps: int, B: int, device) -> tuple:
    """``generate``'s canvas, checked: (per-row lengths (B,), whether they differ by row, the
    canvas width L, the block length, the number of blocks)."""
    lengths = torch.as_tensor(gen_length, device=device).long().expand(B) if B else torch.zeros(0, dtype=torch.long)
    per_row = torch.is_tensor(gen_length) and gen_length.dim() > 0
    L = int(lengths.max()) if B else int(gen_length if not per_row else 0)
    if block_length is None or per_row:
        if per_row and block_length is not None and block_length < L:
            raise ValueError(
                "per-row canvas lengths (gen_len auto) decode by pure diffusion: block_length must be null"
            )
        block_length = L
    if (B and int(lengths.min()) <= 0) or block_length <= 0 or steps <= 0:
        raise ValueError(
            f"gen_length ({gen_length}), block_length ({block_length}) and steps ({steps}) must be positive"
        )
    if L % block_length:
        raise ValueError(f"gen_length {L} is not a multiple of block_length {block_length}")
    num_blocks = L // block_length
    if steps % num_blocks:
        raise ValueError(
            f"steps {steps} is not a multiple of the number of blocks {num_blocks} (gen_length / block_length)"
        )
    return lengths, per_row, L, block_length, num_blocks


@torch.no_grad()
def generate(
    model,
    prefix_embeds: torch.Tensor,
    *,
    prefix_mask: torch.Tensor | None = None,
    gen_length: int | torch.Tensor = 128,
    steps: int = 128,
    block_length: int | None = 128,
    remasking: str = "low_confidence",
    temperature: float = 0.0,
    mask_id: int,
    eos_id: int,
    generator: torch.Generator | None = None,
    stats: PassCounts | None = None,
    prefix_positions: torch.Tensor | None = None,
    commit: CommitRule | str = "fixed",
    threshold: float = 0.9,
) -> torch.Tensor:
    """Unmask a response of ``gen_length`` tokens; returns (B, max length), EOS after the first EOS.

    ``model``: a ``Denoiser``, or an LM module (then recomputed every step). ``block_length ==
    gen_length`` (or None) is pure diffusion; shorter blocks are decoded left to right
    (semi-autoregressive) with ``steps // num_blocks`` steps each. ``gen_length`` may be a tensor
    (B,) of per-row canvas lengths (pure diffusion only; a row takes ``min(steps, its length)``
    steps). ``commit``: ``fixed`` (the paper) or ``threshold`` (``threshold`` = tau). ``stats``,
    if given, receives ``forward_passes`` and ``positions`` per row and ``model_calls``.
    ``prefix_positions`` (B, P), if given, are the prefix's position ids; the response continues
    from the last.
    """
    if remasking not in REMASKING:
        raise ValueError(f"remasking {remasking!r}: expected one of {REMASKING}")
    rule = _rule(commit, threshold, remasking)
    B = prefix_embeds.shape[0]
    device = prefix_embeds.device
    lengths, per_row, L, block_length, num_blocks = _canvas(gen_length, block_length, steps, B, device)
    den = as_denoiser(model)
    run = _Runner(den, den.prefill(prefix_embeds, prefix_mask, prefix_positions), stats)
    pos = torch.arange(L, device=device)
    resp_mask = pos[None, :] < lengths[:, None]
    x = torch.where(
        resp_mask,
        torch.full((B, L), mask_id, dtype=torch.long, device=device),
        torch.full((B, L), eos_id, dtype=torch.long, device=device),
    )
    row_steps = (
        torch.minimum(lengths, torch.tensor(steps // num_blocks, device=device)) if per_row else steps // num_blocks
    )
    for b in range(num_blocks):
        start, end = b * block_length, (b + 1) * block_length
        # A row whose EOS filled this block has no masks left in it: its steps are skipped.
        in_block = ((x == mask_id) & (pos >= start) & (pos < end)).sum(1)
        schedule = num_transfer_tokens(in_block, row_steps)
        window = (pos < end).expand(B, -1) & resp_mask
        if b:
            run.invalidate()  # an approximate cache is refreshed at every block
        x = _denoise(
            run,
            x,
            resp_mask,
            window,
            schedule,
            mask_id=mask_id,
            remasking=remasking,
            temperature=temperature,
            generator=generator,
            eos_id=eos_id,
            rule=rule,
        )
    run.report()
    return x


def _responses(hyps: Sequence[Sequence[int]], pad_id: int, eos_id: int, pad_to, device):
    """Right-padded responses: tokens (B, L), positions the model sees, positions that may change.

    With ``pad_to`` (one length, or one per row), each hypothesis is followed by EOS up to
    ``pad_to`` tokens (seen, never masked), the layout a model trained on EOS-padded responses knows.
    """
    lens = [len(h) for h in hyps]
    targets = list(pad_to) if isinstance(pad_to, (list, tuple)) else [pad_to or 0] * len(hyps)
    seen = [max(n, t or 0) if n else 0 for n, t in zip(lens, targets)]
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
    if masking_type == "first_pass":
        if confidences is None or len(confidences) != B:
            raise ValueError("masking_type='first_pass' needs one list of confidences per hypothesis")
        score = torch.full((B, L), float("inf"), dtype=torch.float32, device=x.device)
        for i, c in enumerate(confidences):
            n = int(real[i].sum())
            if len(c) != n:
                raise ValueError(f"hypothesis {i}: {n} tokens but {len(c)} confidences")
            if n:
                score[i, :n] = torch.as_tensor(list(c), dtype=torch.float, device=x.device)
    else:
        # The paper scores each first-pass token by one pass over an all-pad response.
        rows = (num > 0).nonzero().squeeze(1)
        score = torch.full((B, L), float("inf"), dtype=torch.float32, device=x.device)
        if rows.numel():
            logits = run(rows, torch.full_like(x, pad_id), visible)
            probs = F.softmax(logits.float(), dim=-1)
            score[rows] = torch.gather(probs, -1, x[rows, :, None]).squeeze(-1).masked_fill(~real[rows], float("inf"))
            run.invalidate()  # that pass saw an all-pad response: an approximate cache must not keep it
    order = torch.argsort(score, dim=1, stable=True)  # lowest first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=x.device).expand_as(order))
    return (rank < num[:, None]) & real


@torch.no_grad()
def deliberate(
    model,
    prefix_embeds: torch.Tensor,
    hyps: Sequence[Sequence[int]],
    *,
    prefix_mask: torch.Tensor | None = None,
    mode: str = "diffusion",
    mask_ratio: float = 0.3,
    masking_type: str = "low_confidence",
    confidences: Sequence[Sequence[float]] | None = None,
    num_chunks: int = 4,
    steps: int = 128,
    remasking: str = "low_confidence",
    temperature: float = 0.0,
    mask_id: int,
    eos_id: int,
    pad_id: int,
    pad_to: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    stats: PassCounts | None = None,
    prefix_positions: torch.Tensor | None = None,
    commit: CommitRule | str = "fixed",
    threshold: float = 0.9,
) -> list[list[int]]:
    """Re-mask part of each first-pass hypothesis and re-predict it; lengths are kept.

    ``mode="diffusion"``: mask ``int(L * mask_ratio)`` tokens (lowest model confidence,
    random, or lowest ``confidences`` for ``"first_pass"``) and unmask them over
    ``min(steps, #masked)`` steps. ``mode="semi_ar"``: for each of ``num_chunks`` chunks
    in turn (the last takes the rest), mask the whole chunk and denoise it in
    ``steps // num_chunks`` steps. ``pad_to`` appends unmaskable EOS up to that many
    tokens, one length or one per row (the paper: None, the response is the hypothesis alone).
    ``model``, ``commit``, ``threshold``, ``stats`` and ``prefix_positions`` as in ``generate``.
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
        raise ValueError(
            f"semi-AR deliberation needs 1 <= num_chunks <= steps (num_chunks {num_chunks}, steps {steps})"
        )
    if steps < 1:
        raise ValueError(f"steps {steps} must be positive")
    if len(hyps) != prefix_embeds.shape[0]:
        raise ValueError(f"{len(hyps)} hypotheses for a batch of {prefix_embeds.shape[0]}")
    device = prefix_embeds.device
    rule = _rule(commit, threshold, remasking)
    den = as_denoiser(model)
    run = _Runner(den, den.prefill(prefix_embeds, prefix_mask, prefix_positions), stats)
    x, visible, real = _responses(hyps, pad_id, eos_id, pad_to, device)
    lens = real.sum(1)
    common = dict(mask_id=mask_id, remasking=remasking, temperature=temperature, generator=generator, rule=rule)
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
            if c:
                run.invalidate()  # an approximate cache is refreshed at every chunk
            schedule = num_transfer_tokens(in_chunk.sum(1), steps // num_chunks)
            x = _denoise(run, x, visible, real, schedule, **common)
    run.report()
    return [x[i, : int(lens[i])].tolist() for i in range(len(hyps))]
