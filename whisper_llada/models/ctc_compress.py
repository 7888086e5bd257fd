"""CTC compression of audio tokens: runs of the same greedy CTC label become one token.

Consecutive audio tokens with the same argmax label are averaged into one; blank runs are
dropped. The LLM then reads about one audio token per text token, in order.
"""

from __future__ import annotations

import torch


def ctc_compress(
    tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, blank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A, D) tokens, (B, A) mask, (B, A) greedy labels -> (B, S, D) run means and (B, S) mask.

    Kept runs are packed to the left of each row in their original order. A row whose
    labels are all blank keeps one token, the mean of its real tokens, so that no row is
    left without audio.
    """
    B, A, D = tokens.shape
    valid = mask.bool()
    prev = torch.cat([torch.full_like(labels[:, :1], -1), labels[:, :-1]], dim=1)
    prev_valid = torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], dim=1)
    starts = (labels != prev) | (valid != prev_valid)
    run = torch.cumsum(starts.long(), dim=1) - 1  # (B, A) run index of every token
    S = int(run.max()) + 1 if A else 0
    w = valid.to(tokens.dtype)
    sums = tokens.new_zeros(B, S, D).scatter_add(1, run[..., None].expand(-1, -1, D), tokens * w[..., None])
    counts = tokens.new_zeros(B, S).scatter_add(1, run, w)
    run_label = torch.full((B, S), blank, dtype=labels.dtype, device=labels.device).scatter(1, run, labels)
    keep = (counts > 0) & (run_label != blank)
    empty = ~keep.any(dim=1)
    if empty.any():
        # all-blank rows: one token, the mean over the row's real tokens (first slot)
        total = (tokens * w[..., None]).sum(1) / w.sum(1).clamp(min=1)[:, None]
        sums[empty, 0] = total[empty]
        counts[empty, 0] = 1.0
        keep[empty, 0] = True
    means = sums / counts.clamp(min=1)[..., None]
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    n = int(keep.sum(1).max())
    order = order[:, :n]
    out = torch.gather(means, 1, order[..., None].expand(-1, -1, D))
    return out, torch.gather(keep, 1, order)
