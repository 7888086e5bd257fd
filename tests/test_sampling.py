"""Decoding and deliberation samplers: hand-checked cases, a batch-1 reference, batching, edges."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.diffusion.sampling import deliberate, generate, num_transfer_tokens
from whisper_llada.models.llada import LLaDAConfig, LLaDAModelLM

V, EOS, PAD, MASK = 12, 10, 10, 11


class TableLM(nn.Module):
    """Logits of response position j are ``table[j]`` whatever the input: a scripted model."""

    def __init__(self, probs: list[list[float]]):
        super().__init__()
        self.table = torch.tensor(probs).log()
        self.emb = nn.Embedding(self.table.shape[1] + 1, 4)
        self.calls = 0

    def get_input_embeddings(self):
        return self.emb

    def forward(self, inputs_embeds, attention_mask=None, **_):
        self.calls += 1
        B, T, _ = inputs_embeds.shape
        L = self.table.shape[0]
        logits = torch.zeros(B, T, self.table.shape[1])
        logits[:, T - L :] = self.table[: min(L, T)]
        return type("Out", (), {"logits": logits})


def one_hot_probs(best: int, p: float, vocab: int = 6) -> list[float]:
    rest = (1 - p) / (vocab - 1)
    return [p if i == best else rest for i in range(vocab)]


def tiny_llada(seed=0) -> LLaDAModelLM:
    torch.manual_seed(seed)
    cfg = LLaDAConfig.from_dict(
        dict(
            d_model=32,
            n_heads=4,
            n_layers=2,
            mlp_hidden_size=64,
            vocab_size=V,
            rope_theta=10000.0,
            mask_token_id=MASK,
            eos_token_id=EOS,
            pad_token_id=PAD,
            include_bias=True,
        )
    )
    model = LLaDAModelLM(cfg).eval()
    with torch.no_grad():  # larger logits so argmax decisions are far from ties
        model.model.transformer.ff_out.weight.mul_(20)
        model.model.transformer.ff_out.bias[EOS] = 1.0  # EOS wins at some positions
    return model


# --- a batch-1 reference written from docs/decoding.md (the paper's semantics) -------------------------------------


def ref_schedule(n: int, steps: int) -> list[int]:
    return [n // steps + (1 if i < n % steps else 0) for i in range(steps)]


def ref_logits(model, prefix, x):
    emb = torch.cat([prefix, model.get_input_embeddings()(x)], dim=1)
    return model(inputs_embeds=emb).logits[:, -x.shape[1] :]


def ref_generate(model, prefix, gen_length, steps, block_length):
    x = torch.full((1, gen_length), MASK)
    nb = gen_length // block_length
    passes = 0
    stop = False
    for b in range(nb):
        sched = ref_schedule(int((x[0, b * block_length : (b + 1) * block_length] == MASK).sum()), steps // nb)
        for i in range(steps // nb):
            masked = x[0] == MASK
            if not masked.any():
                stop = True
                break
            logits = ref_logits(model, prefix, x)[0]
            passes += 1
            x0 = logits.argmax(-1)
            conf = torch.softmax(logits.float(), -1).gather(-1, x0[:, None])[:, 0]
            conf[(b + 1) * block_length :] = -math.inf
            conf = torch.where(masked, conf, torch.tensor(-math.inf))
            k = min(sched[i], int(torch.isfinite(conf).sum()))
            picked = conf.topk(k).indices if k else torch.tensor([], dtype=torch.long)
            for j in sorted(picked.tolist()):
                x[0, j] = x0[j]
            eos_at = [j for j in sorted(picked.tolist()) if x0[j] == EOS]
            if eos_at:
                x[0, eos_at[0] :] = EOS
                stop = True
        if stop:
            break
    return x[0].tolist(), passes


def ref_denoise(model, prefix, x, steps):
    n = int((x[0] == MASK).sum())
    for k in ref_schedule(n, steps):
        masked = x[0] == MASK
        if not masked.any():
            break
        logits = ref_logits(model, prefix, x)[0]
        x0 = logits.argmax(-1)
        conf = torch.softmax(logits.float(), -1).gather(-1, x0[:, None])[:, 0]
        conf = torch.where(masked, conf, torch.tensor(-math.inf))
        if k:
            for j in conf.topk(k).indices.tolist():
                x[0, j] = x0[j]
    return x


def ref_deliberate_lowconf(model, prefix, hyp, mask_ratio, steps):
    L = len(hyp)
    x = torch.tensor([hyp])
    n = int(L * mask_ratio)
    probs = torch.softmax(ref_logits(model, prefix, torch.full((1, L), PAD))[0].float(), -1)
    conf = probs.gather(-1, x[0][:, None])[:, 0]
    x[0, conf.topk(n, largest=False).indices] = MASK
    return ref_denoise(model, prefix, x, min(steps, n))[0].tolist()


def ref_deliberate_semi_ar(model, prefix, hyp, num_chunks, steps):
    L = len(hyp)
    cur = torch.tensor([hyp])
    size = L // num_chunks
    for c in range(num_chunks):
        s, e = c * size, (L if c == num_chunks - 1 else (c + 1) * size)
        x = cur.clone()
        x[0, s:e] = MASK
        cur[0, s:e] = ref_denoise(model, prefix, x, steps // num_chunks)[0, s:e]
    return cur[0].tolist()


# --- tests -------------------------------------------------------------------------------------


def test_num_transfer_tokens():
    assert num_transfer_tokens(torch.tensor([10, 3]), 4).tolist() == [[3, 3, 2, 2], [1, 1, 1, 0]]
    assert num_transfer_tokens(torch.tensor([5, 2]), torch.tensor([2, 1])).tolist() == [[3, 2], [2, 0]]


def test_hand_checked_pure_diffusion_with_eos():
    # Position 2 is EOS with the highest confidence: it is committed first and fills 2..3.
    model = TableLM([one_hot_probs(1, 0.9), one_hot_probs(2, 0.5), one_hot_probs(5, 0.95), one_hot_probs(3, 0.6)])
    stats = PassCounts()
    out = generate(model, torch.zeros(1, 3, 4), gen_length=4, steps=4, block_length=4, mask_id=6, eos_id=5, stats=stats)
    assert out.tolist() == [[1, 2, 5, 5]]
    assert stats.forward_passes.tolist() == [3]  # the 4th step has nothing left to unmask


def test_hand_checked_semi_ar_skips_blocks_after_eos():
    probs = [one_hot_probs(1, 0.9), one_hot_probs(5, 0.8), one_hot_probs(2, 0.99), one_hot_probs(3, 0.99)]
    model = TableLM(probs)
    stats = PassCounts()
    out = generate(model, torch.zeros(1, 2, 4), gen_length=4, steps=4, block_length=2, mask_id=6, eos_id=5, stats=stats)
    # Block 1 commits 1 then EOS; the confident tokens of block 2 are never reached.
    assert out.tolist() == [[1, 5, 5, 5]]
    assert stats.forward_passes.tolist() == [2]


def test_hand_checked_fewer_steps_than_masks():
    probs = [
        one_hot_probs(1, 0.3),
        one_hot_probs(2, 0.9),
        one_hot_probs(3, 0.8),
        one_hot_probs(4, 0.7),
        one_hot_probs(1, 0.2),
    ]
    model = TableLM(probs)
    stats = PassCounts()
    out = generate(model, torch.zeros(1, 1, 4), gen_length=5, steps=2, block_length=5, mask_id=6, eos_id=5, stats=stats)
    assert out.tolist() == [[1, 2, 3, 4, 1]] and stats.forward_passes.tolist() == [2]


@pytest.mark.parametrize(
    "gen_length,steps,block_length", [(16, 16, 16), (16, 6, 16), (16, 8, 4), (12, 12, 3), (16, 4, 8)]
)
def test_generate_matches_reference(gen_length, steps, block_length):
    saw_eos = 0
    for seed in range(4):
        model = tiny_llada(seed)
        prefix = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(seed))
        stats = PassCounts()
        ours = generate(
            model,
            prefix,
            gen_length=gen_length,
            steps=steps,
            block_length=block_length,
            mask_id=MASK,
            eos_id=EOS,
            stats=stats,
        )
        ref, ref_passes = ref_generate(model, prefix, gen_length, steps, block_length)
        assert ours[0].tolist() == ref
        assert int(stats.forward_passes[0]) <= ref_passes
        saw_eos += EOS in ref[:-1]
    assert saw_eos, "no case exercised the EOS rule"


@pytest.mark.parametrize("ratio,steps", [(0.3, 128), (0.5, 2), (1.0, 3)])
def test_diffusion_deliberation_matches_reference(ratio, steps):
    for seed in range(3):
        model = tiny_llada(seed)
        g = torch.Generator().manual_seed(seed)
        prefix = torch.randn(1, 5, 32, generator=g)
        hyp = torch.randint(0, 10, (11,), generator=g).tolist()
        ours = deliberate(
            model,
            prefix,
            [hyp],
            mode="diffusion",
            mask_ratio=ratio,
            masking_type="low_confidence",
            steps=steps,
            mask_id=MASK,
            eos_id=EOS,
            pad_id=PAD,
        )
        assert ours == [ref_deliberate_lowconf(model, prefix, hyp, ratio, steps)]


@pytest.mark.parametrize("L,num_chunks,steps", [(11, 4, 128), (11, 3, 6), (3, 4, 8), (12, 4, 4)])
def test_semi_ar_deliberation_matches_reference(L, num_chunks, steps):
    for seed in range(3):
        model = tiny_llada(seed)
        g = torch.Generator().manual_seed(seed)
        prefix = torch.randn(1, 5, 32, generator=g)
        hyp = torch.randint(0, 10, (L,), generator=g).tolist()
        ours = deliberate(
            model,
            prefix,
            [hyp],
            mode="semi_ar",
            num_chunks=num_chunks,
            steps=steps,
            mask_id=MASK,
            eos_id=EOS,
            pad_id=PAD,
        )
        assert ours == [ref_deliberate_semi_ar(model, prefix, hyp, num_chunks, steps)]


def left_padded(prefixes):
    P = max(p.shape[0] for p in prefixes)
    emb = torch.stack([torch.cat([torch.zeros(P - p.shape[0], p.shape[1]), p]) for p in prefixes])
    mask = torch.stack([torch.arange(P) >= P - p.shape[0] for p in prefixes])
    return emb, mask


def test_batch_equals_rows_alone():
    model = tiny_llada(1)
    g = torch.Generator().manual_seed(0)
    prefixes = [torch.randn(n, 32, generator=g) for n in (5, 9, 3, 7)]
    hyps = [torch.randint(0, 10, (n,), generator=g).tolist() for n in (11, 4, 0, 8)]
    emb, mask = left_padded(prefixes)
    for kw in (dict(gen_length=16, steps=16, block_length=16), dict(gen_length=16, steps=8, block_length=4)):
        batch = generate(model, emb, prefix_mask=mask, mask_id=MASK, eos_id=EOS, **kw)
        for i, p in enumerate(prefixes):
            assert batch[i].tolist() == generate(model, p[None], mask_id=MASK, eos_id=EOS, **kw)[0].tolist()
    for kw in (
        dict(mode="diffusion", mask_ratio=0.5),
        dict(mode="semi_ar", num_chunks=3, steps=6),
        dict(mode="diffusion", mask_ratio=0.5, pad_to=10),
    ):
        batch = deliberate(model, emb, hyps, prefix_mask=mask, mask_id=MASK, eos_id=EOS, pad_id=PAD, **kw)
        assert batch[2] == []
        for i, p in enumerate(prefixes):
            alone = deliberate(model, p[None], [hyps[i]], mask_id=MASK, eos_id=EOS, pad_id=PAD, **kw)
            assert batch[i] == alone[0]


def test_deliberation_edge_cases():
    model = TableLM([one_hot_probs(1, 0.9)] * 3)
    prefix = torch.zeros(2, 2, 4)
    # int(3 * 0.3) == 0: unchanged, and the model is never called.
    out = deliberate(model, prefix, [[2, 3, 4], []], mask_ratio=0.3, mask_id=6, eos_id=5, pad_id=5)
    assert out == [[2, 3, 4], []] and model.calls == 0
    with pytest.raises(ValueError, match="num_chunks"):
        deliberate(model, prefix, [[1], [2]], mode="semi_ar", num_chunks=4, steps=3, mask_id=6, eos_id=5, pad_id=5)
    with pytest.raises(ValueError, match="2 hypotheses for a batch of 1"):
        deliberate(model, prefix[:1], [[1], [2]], mask_id=6, eos_id=5, pad_id=5)
    with pytest.raises(ValueError, match="confidences"):
        deliberate(
            model,
            prefix,
            [[1, 2, 3], [1, 2]],
            masking_type="first_pass",
            confidences=[[0.1]] * 2,
            mask_ratio=0.5,
            mask_id=6,
            eos_id=5,
            pad_id=5,
        )


def test_generate_argument_errors():
    model = TableLM([one_hot_probs(1, 0.9)] * 4)
    p = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="multiple of block_length"):
        generate(model, p, gen_length=10, steps=10, block_length=4, mask_id=6, eos_id=5)
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        generate(model, p, gen_length=8, steps=5, block_length=4, mask_id=6, eos_id=5)
    with pytest.raises(ValueError, match="remasking"):
        generate(model, p, gen_length=4, steps=4, block_length=4, remasking="greedy", mask_id=6, eos_id=5)


def test_first_pass_confidences_mask_the_lowest():
    # The scripted model predicts token 1 everywhere; only masked positions can change to 1.
    model = TableLM([one_hot_probs(1, 0.9)] * 6)
    kw = dict(confidences=[[0.9, 0.1, 0.8, 0.2, 0.7, 0.95]], mask_ratio=0.5, mask_id=6, eos_id=5, pad_id=5)
    out = deliberate(model, torch.zeros(1, 2, 4), [[2, 3, 4, 2, 3, 4]], masking_type="first_pass", **kw)
    assert out == [[2, 1, 4, 1, 1, 4]]
    # The sampler takes the settings' names alone, as DecodeConfig does.
    for other in ("given", "confident"):
        with pytest.raises(ValueError, match=f"masking_type '{other}'"):
            deliberate(model, torch.zeros(1, 2, 4), [[2, 3]], masking_type=other, **kw)


def test_seeded_runs_repeat():
    model = tiny_llada(2)
    prefix = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    hyps = [list(range(10)), [3, 1, 4, 1, 5, 9, 2, 6]]

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        a = generate(
            model,
            prefix,
            gen_length=16,
            steps=8,
            block_length=16,
            remasking="random",
            temperature=1.0,
            mask_id=MASK,
            eos_id=EOS,
            generator=g,
        )
        b = deliberate(
            model,
            prefix,
            hyps,
            masking_type="random",
            mask_ratio=0.5,
            temperature=1.0,
            mask_id=MASK,
            eos_id=EOS,
            pad_id=PAD,
            generator=g,
        )
        return a.tolist(), b

    assert run(7) == run(7)
    assert any(run(s) != run(7) for s in (8, 9, 10))


def test_eos_padded_deliberation_layout():
    """With pad_to the model sees hypothesis + EOS up to pad_to; only the hypothesis changes."""
    seen = []

    class Spy(TableLM):
        def forward(self, inputs_embeds, attention_mask=None, **kw):
            seen.append(attention_mask.sum(1).tolist())
            return super().forward(inputs_embeds, attention_mask)

    model = Spy([one_hot_probs(1, 0.9)] * 8)
    out = deliberate(
        model, torch.zeros(2, 2, 4), [[2, 3, 4, 2], [3] * 9], mask_ratio=0.5, pad_to=8, mask_id=6, eos_id=5, pad_id=5
    )
    assert [len(o) for o in out] == [4, 9]
    assert all(t in (1, 2, 3, 4) for o in out for t in o)
    assert seen[0] == [2 + 8, 2 + 9]  # prefix + max(len, pad_to)
