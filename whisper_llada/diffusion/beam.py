"""Beam search for semi-autoregressive diffusion decoding: the AR twin's beam, made fair to diffusion.

Each hypothesis commits one token a step, at the open position of its current block that the model
is surest of (as greedy diffusion decoding does); its ``num_beams`` best tokens there extend it,
scored by their log-probabilities, and each cut keeps its ``num_beams`` best hypotheses.
"""

from __future__ import annotations

import torch

from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.diffusion.sampling import _Runner, as_denoiser

__all__ = ["generate_beam"]


@torch.no_grad()
def generate_beam(
    model,
    prefix_embeds: torch.Tensor,
    *,
    prefix_mask: torch.Tensor | None = None,
    prefix_positions: torch.Tensor | None = None,
    gen_length: int,
    block_length: int,
    num_beams: int,
    mask_id: int,
    eos_id: int,
    stats: PassCounts | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (B, K, L) and scores (B, K) of each cut's ``num_beams`` (K) best hypotheses, best first.

    Semi-AR blocks of ``block_length`` on a ``gen_length`` canvas, one token a step (``gen_length``
    steps). A hypothesis's score is the sum of its tokens' log-probabilities when they were
    committed; a committed EOS turns every later position into EOS, and once no mask is left the
    hypothesis has ended and keeps its score, as the AR twin's finished beams do. Two hypotheses
    that reach the same tokens by different orders are one: the lower scored is dropped. At one beam this is greedy semi-AR decoding with
    one token a step. ``model`` as in ``generate``; a cut's hypotheses share its prefix, and
    ``Denoiser.reorder`` carries any per-hypothesis state (a block cache) along with them.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams {num_beams}: expected a positive number")
    if block_length <= 0 or gen_length <= 0 or gen_length % block_length:
        raise ValueError(f"gen_length {gen_length} is not a positive multiple of block_length {block_length}")
    den = as_denoiser(model)
    if den.cache == "approximate":
        raise ValueError("beam search recomputes or caches exactly: cache approximate is not available with num_beams")
    B, K, L, dev = prefix_embeds.shape[0], num_beams, gen_length, prefix_embeds.device

    def rep(t):
        return None if t is None else t.repeat_interleave(K, 0)

    run = _Runner(den, den.prefill(rep(prefix_embeds), rep(prefix_mask), rep(prefix_positions)), None)
    x = torch.full((B * K, L), mask_id, dtype=torch.long, device=dev)
    resp_mask = torch.ones_like(x, dtype=torch.bool)
    # Every hypothesis starts as the same empty canvas: all but the first of a cut start at -inf.
    score = torch.full((B, K), float("-inf"), device=dev)
    score[:, 0] = 0.0
    done = torch.zeros(B * K, dtype=torch.bool, device=dev)
    for _ in range(L):
        # Hypotheses still growing (a -inf one is a placeholder, never extended).
        live = (~done & score.view(-1).isfinite()).nonzero().squeeze(1)
        if live.numel() == 0:
            break
        sc, y, parent = _extensions(run, x, live, resp_mask, score, done, mask_id, eos_id, block_length)
        score, src = _best_distinct(sc, y, B, K)
        x = y[src]
        done = ~(x == mask_id).any(1)
        den.reorder(run.state, parent[src])
    # Per cut, as the AR twin counts: the steps any of its hypotheses ran, and all their positions.
    add_counts(stats, run.passes.view(B, K).max(1).values, run.positions.view(B, K).sum(1), run.calls)
    order = score.argsort(dim=1, descending=True)
    tokens = x.view(B, K, L).gather(1, order[..., None].expand(-1, -1, L))
    return tokens, score.gather(1, order)


def _extensions(run: _Runner, x, live, resp_mask, score, done, mask_id: int, eos_id: int, block_length: int):
    """One step's K * K candidates of each cut (K = ``score.shape[1]``): each hypothesis extended by
    its K best tokens at its surest open position. Returns their scores (B * K, K), their tokens
    (B * K * K, L) and the row of ``x`` each grew from (B * K * K)."""
    BK, L, K, dev = x.shape[0], x.shape[1], score.shape[1], x.device
    open_, logp = _open_logprobs(run, x, live, resp_mask, mask_id, block_length)
    # Each hypothesis's position: the open one whose best token is surest.
    conf = torch.full(open_.shape, float("-inf"), device=dev)
    conf[open_] = logp.max(-1).values
    at = conf.argmax(1)
    index = open_.flatten().cumsum(0).view(open_.shape) - 1
    cand = logp[index[torch.arange(len(live), device=dev), at]]  # (live, V)
    # Each hypothesis's K best extensions are all a cut's best K can draw on: K * K candidates
    # a cut. A finished hypothesis carries on as itself, at no cost.
    cand_lp, cand_tok = cand.topk(K, dim=-1)
    sc = torch.full((BK, K), float("-inf"), device=dev)
    tk = torch.full((BK, K), eos_id, dtype=torch.long, device=dev)
    sc[live], tk[live] = score.view(-1)[live, None] + cand_lp, cand_tok
    ended = done.nonzero().squeeze(1)
    sc[ended, 0] = score.view(-1)[ended]
    at_all = torch.zeros(BK, dtype=torch.long, device=dev)
    at_all[live] = at
    parent = torch.arange(BK, device=dev).repeat_interleave(K)
    grow = ~done[parent] & sc.view(-1).isfinite()
    y, at_p, tok = x[parent], at_all[parent], tk.view(-1)
    y[grow, at_p[grow]] = tok[grow]
    # A committed EOS turns every later position into EOS.
    eos_hit = grow & (tok == eos_id)
    pos = torch.arange(L, device=dev)
    y = torch.where(eos_hit[:, None] & (pos[None, :] > at_p[:, None]), torch.full_like(y, eos_id), y)
    return sc, y, parent


def _open_logprobs(run: _Runner, x, live, resp_mask, mask_id: int, block_length: int) -> tuple:
    """The open positions (live, L) of each live hypothesis, in the block of its first mask (an
    EOS fills the positions after it, not the open ones before), and their log-probabilities
    (n open, V), row-major."""
    pos = torch.arange(x.shape[1], device=x.device)
    first = (x[live] == mask_id).int().argmax(1)
    block = first // block_length
    open_ = (x[live] == mask_id) & (pos // block_length == block[:, None])
    # One call per block among them, so that a block cache serves each (it holds one block a call).
    parts = [block == c for c in block.unique().tolist()]
    got = [run(live[part], x, resp_mask, open_[part]) for part in parts]
    logp = got[0].new_empty(int(open_.sum()), got[0].shape[1])
    for part, lp in zip(parts, got):
        logp[part.repeat_interleave(open_.sum(1))] = lp  # the open positions of its rows, row-major
    return open_, logp.float().log_softmax(-1)


def _best_distinct(sc: torch.Tensor, y: torch.Tensor, B: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cut's K best of its K * K candidates (scores ``sc`` (B * K, K), tokens ``y`` (B * K * K, L)),
    best first: (their scores (B, K), their rows of ``y`` (B * K)). The same tokens reached twice
    (by two orders) count once, at the better score."""
    L, dev = y.shape[1], y.device
    cand_score, order = sc.view(B, K * K).sort(dim=1, descending=True, stable=True)
    ys = y.view(B, K * K, L).gather(1, order[..., None].expand(-1, -1, L))
    same = (ys[:, :, None, :] == ys[:, None, :, :]).all(-1)
    earlier = torch.ones(K * K, K * K, dtype=torch.bool, device=dev).tril(-1)
    cand_score = cand_score.masked_fill((same & earlier).any(-1), float("-inf"))
    score, keep = cand_score.topk(K, dim=1)
    cut_start = (torch.arange(B, device=dev) * K)[:, None]  # a cut's first row
    return score, (order.gather(1, keep) + cut_start * K).view(-1)
