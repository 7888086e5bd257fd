"""The masked-diffusion loss: both weightings checked by hand on a toy batch."""

from __future__ import annotations

import math

import pytest
import torch

from whisper_llada.diffusion.loss import forward_process, masked_diffusion_loss


def toy():
    # Two rows of length 4, vocabulary 3. Logits favour token 0 everywhere.
    logits = torch.tensor([[2.0, 0.0, 0.0]]).repeat(2, 4, 1)
    targets = torch.tensor([[0, 1, 0, 2], [1, 1, 0, 0]])
    masked = torch.tensor([[True, True, False, False], [False, False, False, True]])
    p = torch.tensor([0.5, 0.25])
    return logits, targets, masked, p


def test_plain_mean_over_masked_tokens():
    logits, targets, masked, p = toy()
    z = math.log(math.exp(2) + 2)
    ce_hit, ce_miss = z - 2, z  # target 0 vs target 1 or 2
    expected = (ce_hit + ce_miss + ce_hit) / 3
    assert masked_diffusion_loss(logits, targets, masked, p, "plain").item() == pytest.approx(expected, rel=1e-6)


def test_llada_weighting():
    logits, targets, masked, p = toy()
    z = math.log(math.exp(2) + 2)
    row0 = ((z - 2) / 0.5 + z / 0.5) / 4
    row1 = ((z - 2) / 0.25) / 4
    got = masked_diffusion_loss(logits, targets, masked, p, "llada").item()
    assert got == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_unknown_weighting():
    with pytest.raises(ValueError, match="weighting"):
        masked_diffusion_loss(*toy(), "mean")


def test_forward_process_rate_and_mask_id():
    g = torch.Generator().manual_seed(0)
    resp = torch.randint(0, 10, (4000, 64), generator=g)
    noisy, masked, p = forward_process(resp, mask_id=99, eps=1e-3, generator=g)
    assert (noisy[masked] == 99).all() and (noisy[~masked] == resp[~masked]).all()
    assert p.min() >= 1e-3 and p.max() <= 1.0
    # The masked fraction of a row follows its p.
    frac = masked.float().mean(1)
    assert (frac - p).abs().mean() < 0.05
    assert abs(masked.float().mean().item() - 0.5) < 0.02  # E[p] = 1/2


def test_block_suffix_masks():
    """Rows masked as left-to-right decoding within blocks meets them: in each block of 4 a
    non-empty suffix, the tokens before it clean; the rest of the rows as before."""
    response = torch.arange(1, 1 + 64 * 12).view(64, 12)
    g = torch.Generator().manual_seed(3)
    noisy, masked, p = forward_process(response, 0, generator=g, block=4, suffix_prob=1.0)
    blocks = masked.view(64, 3, 4)
    assert blocks.any(-1).all()  # every block has a mask
    assert (blocks[..., 1:] >= blocks[..., :-1]).all()  # once masked, masked to the block's end
    assert len({tuple(b.tolist()) for b in blocks.view(-1, 4)}) == 4  # all four suffix lengths drawn
    assert torch.equal(noisy == 0, masked) and torch.allclose(p, masked.float().mean(1))
    _, iid, _ = forward_process(response, 0, generator=torch.Generator().manual_seed(3), block=4, suffix_prob=0.0)
    shuffled = iid.view(64, 3, 4)
    assert not (shuffled[..., 1:] >= shuffled[..., :-1]).all()  # the plain process is not a suffix
