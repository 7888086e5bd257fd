"""The masked-diffusion training objective over the response block.

``forward_process`` masks each response token with a per-utterance probability p; the
loss is cross-entropy on masked positions, averaged plainly (the paper) or weighted by
1/p and normalised by the answer length (LLaDA's SFT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def forward_process(
    response: torch.Tensor,
    mask_id: int,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    block: int | None = None,
    suffix_prob: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw t ~ U(0,1) per row, p = (1-eps) t + eps, mask each token with probability p.

    With ``block`` and ``suffix_prob``, that share of rows instead masks in every block of ``block``
    tokens a suffix of uniform length 1..block (their p: the share masked).
    Returns (noisy response, boolean mask, p of shape (B,)).
    """
    B, L = response.shape
    t = torch.rand(B, device=response.device, generator=generator)
    p = (1 - eps) * t + eps
    masked = torch.rand(B, L, device=response.device, generator=generator) < p[:, None]
    if block and suffix_prob > 0:
        rows = torch.rand(B, device=response.device, generator=generator) < suffix_prob
        nblocks = -(-L // block)
        start = torch.randint(0, block, (B, nblocks), device=response.device, generator=generator)
        offset = torch.arange(L, device=response.device) % block
        suffix = offset[None, :] >= start.repeat_interleave(block, 1)[:, :L]
        masked = torch.where(rows[:, None], suffix, masked)
        p = torch.where(rows, suffix.float().mean(1), p)
    noisy = torch.where(masked, torch.full_like(response, mask_id), response)
    return noisy, masked, p


def masked_diffusion_loss(
    logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, p: torch.Tensor, weighting: str = "plain"
) -> torch.Tensor:
    """Cross-entropy on masked positions of the response.

    logits (B, L, V), or (n, V) of the masked positions only (row-major; a model with a costly
    output layer computes no others), targets (B, L), masked (B, L) bool, p (B,).
    ``plain``: mean over all masked tokens of the batch.
    ``llada``: sum over masked tokens of CE / p, divided by the row's answer length L,
    then averaged over rows.
    """
    B, L = targets.shape
    if logits.dim() == 2:
        ce = torch.zeros(B, L, dtype=torch.float32, device=logits.device)
        ce[masked] = F.cross_entropy(logits.float(), targets[masked], reduction="none")
    else:
        V = logits.shape[-1]
        ce = F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1), reduction="none").view(B, L)
        ce = ce * masked
    if weighting == "plain":
        return ce.sum() / masked.sum().clamp(min=1)
    if weighting == "llada":
        return (ce / p[:, None]).sum(dim=1).div(L).mean()
    raise ValueError(f"unknown loss weighting {weighting!r} (expected 'plain' or 'llada')")
