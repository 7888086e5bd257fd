"""Scoring given responses with a masked-diffusion LM: the pseudo-log-likelihood, each token's
log-probability with it masked and the rest of the response visible, over interleaved mask groups.

With ``groups`` >= the response length every token is masked alone (the exact pseudo-log-likelihood);
fewer groups mask every ``groups``-th token together, one pass a group, which costs ``groups``
passes a response whatever its length.
"""

from __future__ import annotations

import torch

from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.diffusion.denoiser import Denoiser, PrefixState


@torch.no_grad()
def pseudo_log_likelihood(
    denoiser: Denoiser,
    state: PrefixState,
    response: torch.Tensor,
    response_mask: torch.Tensor,
    scored: torch.Tensor,
    groups: int,
    mask_id: int,
    stats: PassCounts | None = None,
) -> torch.Tensor:
    """Sum over the ``scored`` positions (B, L) of log p(token | prefix, the response with that
    token's group masked), per row (B,). ``response_mask`` marks real (not padding) positions;
    ``stats`` adds ``forward_passes`` and ``positions`` per row as the samplers do."""
    if groups < 1:
        raise ValueError(f"pseudo-log-likelihood groups {groups}: expected a positive number")
    B, L = response.shape
    group_of = torch.arange(L, device=response.device) % groups
    total = torch.zeros(B, dtype=torch.float64, device=response.device)
    passes = torch.zeros(B, dtype=torch.long)
    positions = torch.zeros(B, dtype=torch.long)
    rows_all = torch.arange(B, device=response.device)
    for g in range(min(groups, L)):
        masked = scored & (group_of == g)
        rows = rows_all[masked.any(1)]
        if rows.numel() == 0:
            continue
        noisy = response.masked_fill(masked, mask_id)
        positions[rows.cpu()] += denoiser.positions_per_pass(state, rows, L, clean=response)
        select = masked[rows]
        # The response is known: a block-diffusion model reads the blocks before a mask from it.
        logits = denoiser.selected_logits(state, noisy, response_mask, rows, select, clean=response)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, response[rows][select][:, None]).squeeze(-1)
        total.index_add_(0, rows.repeat_interleave(select.sum(1)), logp.double())
        passes[rows.cpu()] += 1
    add_counts(stats, passes, positions)
    return total
