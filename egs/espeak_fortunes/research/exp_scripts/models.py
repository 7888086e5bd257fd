"""The two decoders compared in issue 16, both Whisper tiny.en's pretrained decoder over the (partly
trainable) tiny.en encoder: AR (causal, next-token) and masked diffusion (bidirectional, MASK id,
shifted logits as in DiffuLLaMA/Dream). Decoding: AR greedy with KV cache; diffusion low-confidence
unmasking on a canvas sized from the duration; scoring of given hypotheses for rescoring.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from exp_scripts.common import EOT, MASK, NOTS, SOT, _attn, dec_forward, pad_stack, run_top_encoder

PROMPT = [SOT, NOTS]
import os
EOS_RULE = os.environ.get("EOS_RULE", "paper")


class WhisperDec(nn.Module):
    def __init__(self, hf, enc_from: int, short_ids: torch.Tensor | None, full2short: torch.Tensor | None):
        super().__init__()
        self.hf = hf
        self.enc_from = enc_from  # cached level the top encoder layers start from (4 = frozen encoder)
        self.register_buffer("short_ids", short_ids if short_ids is not None else torch.arange(hf.config.vocab_size))
        f2s = full2short if full2short is not None else torch.arange(60000)
        self.register_buffer("full2short", f2s)
        hf.requires_grad_(False)
        hf.model.decoder.requires_grad_(True)
        hf.model.decoder.embed_positions.requires_grad_(False)
        if enc_from < 4:
            for layer in hf.model.encoder.layers[enc_from:]:
                layer.requires_grad_(True)
            hf.model.encoder.layer_norm.requires_grad_(True)

    @property
    def dec(self):
        return self.hf.model.decoder

    frozen_enc = False

    def encode(self, items):
        x, m = pad_stack([it[f"h{self.enc_from}"] for it in items])
        if self.enc_from < 4:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_enc):
                x = run_top_encoder(self.hf.model.encoder, x, m, self.enc_from)
        return x, m

    def logits(self, h):
        return h @ self.dec.embed_tokens.weight[self.short_ids].T

    def to_short(self, ids):
        return self.full2short[ids]

    def from_short(self, s):
        return self.short_ids[s]


def encode_texts(tok, texts):
    from exp_scripts.common import sentence_case
    return [tok.encode(" " + sentence_case(t), add_special_tokens=False) for t in texts]


def canvas_len(dur: float, a: float, b: int) -> int:
    return int(math.ceil(a * dur)) + b


# ---------------------------------------------------------------- losses
def ar_loss(model: WhisperDec, items, tok):
    enc, em = model.encode(items)
    rows = [PROMPT + ids + [EOT] for ids in encode_texts(tok, [it["text"] for it in items])]
    L = max(map(len, rows))
    ids = torch.tensor([r + [EOT] * (L - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (L - len(r)) for r in rows])
    h = dec_forward(model.dec, ids, mask, enc, em, causal=True)[:, 1:-1]
    tgt = ids[:, 2:]
    valid = mask[:, 2:]
    lg = model.logits(h[valid])
    return F.cross_entropy(lg, model.to_short(tgt[valid])), int(valid.sum())


def mdm_loss(model: WhisperDec, items, tok, a, b, gen: torch.Generator, shifted=True, weighting="plain",
             eps=1e-3):
    enc, em = model.encode(items)
    resp = []
    for it, ids in zip(items, encode_texts(tok, [it["text"] for it in items])):
        n = max(len(ids) + 1, canvas_len(it["dur"], a, b))
        resp.append(ids + [EOT] * (n - len(ids)))
    L = max(map(len, resp))
    r = torch.tensor([x + [EOT] * (L - len(x)) for x in resp])
    rmask = torch.tensor([[True] * len(x) + [False] * (L - len(x)) for x in resp])
    B = len(items)
    t = torch.rand(B, generator=gen)
    p = (1 - eps) * t + eps
    masked = (torch.rand(B, L, generator=gen) < p[:, None]) & rmask
    noisy = torch.where(masked, torch.full_like(r, MASK), r)
    ids = torch.cat([torch.tensor(PROMPT)[None].expand(B, -1), noisy], 1)
    km = torch.cat([torch.ones(B, len(PROMPT), dtype=torch.bool), rmask], 1)
    h = dec_forward(model.dec, ids, km, enc, em, causal=False)
    h = h[:, len(PROMPT) - 1:-1] if shifted else h[:, len(PROMPT):]
    lg = model.logits(h[masked])
    ce = F.cross_entropy(lg, model.to_short(r[masked]), reduction="none")
    if weighting == "plain":
        return ce.mean() if ce.numel() else h.sum() * 0, int(masked.sum())
    w = (1 / p)[:, None].expand(B, L)[masked]
    return (ce * w).sum() / rmask.sum(), int(masked.sum())


# ---------------------------------------------------------------- decoding
def cross_kv(model, enc):
    out = []
    for layer in model.dec.layers:
        a = layer.encoder_attn
        B, T, C = enc.shape
        hd = C // a.num_heads
        k = a.k_proj(enc).view(B, T, a.num_heads, hd).transpose(1, 2)
        v = a.v_proj(enc).view(B, T, a.num_heads, hd).transpose(1, 2)
        out.append((k, v))
    return out


def _sdpa(q_proj, out_proj, nh, x, k, v, mask):
    B, L, C = x.shape
    hd = C // nh
    q = (q_proj(x) * hd ** -0.5).view(B, L, nh, hd).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    return out_proj(o.transpose(1, 2).reshape(B, L, C))


def dec_cached(model, ids, start, self_cache, ckv, em, km_full=None, causal=True):
    """Decoder on new tokens ids (B, n) at positions start..; self_cache: list of (k, v) or None entries,
    extended in place. Returns hidden (B, n, C)."""
    dec = model.dec
    B, n = ids.shape
    h = dec.embed_tokens(ids) + dec.embed_positions.weight[start:start + n]
    emask = em[:, None, None, :]
    for i, layer in enumerate(dec.layers):
        a = layer.self_attn
        x = layer.self_attn_layer_norm(h)
        hd = x.shape[-1] // a.num_heads
        k = a.k_proj(x).view(B, n, a.num_heads, hd).transpose(1, 2)
        v = a.v_proj(x).view(B, n, a.num_heads, hd).transpose(1, 2)
        if self_cache[i] is not None:
            k = torch.cat([self_cache[i][0], k], 2)
            v = torch.cat([self_cache[i][1], v], 2)
        self_cache[i] = (k, v)
        S = k.shape[2]
        m = torch.ones(n, S, dtype=torch.bool).tril(S - n)[None, None] if causal else None
        h = h + _sdpa(a.q_proj, a.out_proj, a.num_heads, x, k, v, m)
        a = layer.encoder_attn
        x = layer.encoder_attn_layer_norm(h)
        h = h + _sdpa(a.q_proj, a.out_proj, a.num_heads, x, *ckv[i], emask)
        x = layer.final_layer_norm(h)
        h = h + layer.fc2(F.gelu(layer.fc1(x)))
    return dec.layer_norm(h)


@torch.no_grad()
def ar_greedy(model, items, max_len=80):
    enc, em = model.encode(items)
    B = len(items)
    ckv = cross_kv(model, enc)
    cache = [None] * len(model.dec.layers)
    h = dec_cached(model, torch.tensor(PROMPT)[None].expand(B, -1), 0, cache, ckv, em)[:, -1]
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for step in range(max_len):
        nxt = model.from_short(model.logits(h).argmax(-1))
        for i in range(B):
            if not done[i]:
                if int(nxt[i]) == EOT:
                    done[i] = True
                else:
                    out[i].append(int(nxt[i]))
        if bool(done.all()):
            break
        h = dec_cached(model, nxt[:, None], len(PROMPT) + step, cache, ckv, em)[:, -1]
    return out


@torch.no_grad()
def ar_beam(model, item, beam=4, max_len=80, nbest=1):
    """Beam search for one utterance; returns list of (ids, sum logprob, length-normalised score)."""
    enc, em = model.encode([item])
    ckv = cross_kv(model, enc)
    cache = [None] * len(model.dec.layers)
    h = dec_cached(model, torch.tensor(PROMPT)[None], 0, cache, ckv, em)[:, -1]
    beams = [([], 0.0)]
    finished = []
    for step in range(max_len):
        lp = torch.log_softmax(model.logits(h), -1)  # (nb, V)
        V = lp.shape[1]
        tot = torch.tensor([b[1] for b in beams])[:, None] + lp
        top = tot.view(-1).topk(min(2 * beam, tot.numel()))
        new, src = [], []
        for s, idx in zip(top.values.tolist(), top.indices.tolist()):
            bi, t = divmod(idx, V)
            tid = int(model.from_short(torch.tensor(t)))
            if tid == EOT:
                finished.append((beams[bi][0], s))
            else:
                new.append((beams[bi][0] + [tid], s))
                src.append(bi)
            if len(new) == beam:
                break
        if len(finished) >= beam or not new:
            break
        # best finished already beats every live beam (length-normalised as CT2/HF do: / len)
        beams = new
        sel = torch.tensor(src)
        cache = [(k[sel], v[sel]) for k, v in cache]
        ckv2 = [(k.expand(len(sel), -1, -1, -1), v.expand(len(sel), -1, -1, -1)) for k, v in ckv]
        h = dec_cached(model, torch.tensor([[b[0][-1]] for b in beams]), len(PROMPT) + step, cache, ckv2,
                       em.expand(len(sel), -1))[:, -1]
    fin = sorted(((ids, s, s / (len(ids) + 1)) for ids, s in finished), key=lambda x: -x[2])
    return fin[:nbest] if fin else [(beams[0][0], beams[0][1], beams[0][1])]


def transfer_counts(n_mask: int, steps: int):
    base, rem = divmod(n_mask, steps)
    return [base + (1 if s < rem else 0) for s in range(steps)]


@torch.no_grad()
def mdm_decode(model, items, a, b, steps=16, shifted=True, block=None):
    """Pure diffusion (block None) or semi-AR (block length) low-confidence decoding; canvas from duration."""
    enc, em = model.encode(items)
    B = len(items)
    lens = [canvas_len(it["dur"], a, b) for it in items]
    if os.environ.get("CANVAS") == "oracle":  # diagnostic only: the reference length + EOT + margin
        lens = [it["olen"] + int(os.environ.get("MARGIN", "1")) for it in items]
    L = max(lens)
    x = torch.full((B, L), MASK)
    valid = torch.tensor([[j < n for j in range(L)] for n in lens])
    x[~valid] = EOT
    ckv = cross_kv(model, enc)
    P = len(PROMPT)
    km = torch.cat([torch.ones(B, P, dtype=torch.bool), valid], 1)
    nblocks = 1 if block is None else math.ceil(L / block)
    spb = max(1, steps // nblocks)
    passes = 0
    for bi in range(nblocks):
        lo, hi = (0, L) if block is None else (bi * block, min(L, (bi + 1) * block))
        inblk = torch.zeros(L, dtype=torch.bool)
        inblk[lo:hi] = True
        counts = [transfer_counts(int(((x[r] == MASK) & inblk).sum()), spb) for r in range(B)]
        for s in range(spb):
            if not bool(((x == MASK) & inblk).any()):
                break
            if all(counts[r][s] == 0 for r in range(B)):
                continue
            ids = torch.cat([torch.tensor(PROMPT)[None].expand(B, -1), x], 1)
            h = _bidir(model, ids, km, ckv, em)
            passes += 1
            h = h[:, P - 1:-1] if shifted else h[:, P:]
            prob = torch.softmax(model.logits(h), -1)
            conf, arg = prob.max(-1)
            cand = (x == MASK) & inblk
            conf = conf.masked_fill(~cand, -1.0)
            for r in range(B):
                k = counts[r][s]
                if k == 0:
                    continue
                pos = conf[r].topk(k).indices
                x[r, pos] = model.from_short(arg[r, pos])
                eos = (x[r] == EOT) & valid[r]
                if EOS_RULE == "paper" and bool(eos.any()):
                    j = int(eos.nonzero()[0])
                    x[r, j:] = EOT
    out = []
    for r in range(B):
        row = x[r].tolist()
        if EOS_RULE == "paper":
            row = row[:row.index(EOT)] if EOT in row else row
        else:  # "drop": EOT is a blank anywhere; the text is every other token in order
            row = [t for t in row if t != EOT]
        out.append([t for t in row if t != MASK])
    return out, passes


def _bidir(model, ids, km, ckv, em):
    """Full bidirectional decoder pass with precomputed cross-attention keys/values."""
    dec = model.dec
    B, L = ids.shape
    h = dec.embed_tokens(ids) + dec.embed_positions.weight[:L]
    smask = km[:, None, None, :]
    emask = em[:, None, None, :]
    for i, layer in enumerate(dec.layers):
        a = layer.self_attn
        x = layer.self_attn_layer_norm(h)
        h = h + _attn(a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads, x, x, smask)
        a = layer.encoder_attn
        x = layer.encoder_attn_layer_norm(h)
        h = h + _sdpa(a.q_proj, a.out_proj, a.num_heads, x, *ckv[i], emask)
        x = layer.final_layer_norm(h)
        h = h + layer.fc2(F.gelu(layer.fc1(x)))
    return dec.layer_norm(h)
