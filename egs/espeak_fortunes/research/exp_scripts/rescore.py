"""N-best rescoring: candidates from first-pass record files (union), features from zero-shot
Whisper, a fine-tuned AR decoder and a masked-diffusion decoder (pseudo-log-likelihood over K
interleaved mask groups), log-linear fusion with weights tuned on dev, applied to test.

python -m exp_scripts.rescore --ar ckpt/ar.pt --mdm ckpt/mdm.pt --nbest data/firstpass_b8/whisper \
   --nbest data/firstpass/ctc --out exp_scripts/res/feats
"""
import argparse
import gzip
import itertools
import json
import os

import torch
import torch.nn.functional as F

from exp_scripts import models as M
from exp_scripts.common import (EOT, MASK, ROOT, Timer, build_cache, dec_forward, load_hf, log, norm,
                                sentence_case, shortlist, wer)


def read_records(d, part):
    path = d.format(part=part) if "{part}" in d else ROOT / d / f"{part}.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return {r["id"]: r for r in map(json.loads, f)}


@torch.no_grad()
def ar_scores(model, item, cands_ids):
    """Sum log P(y, EOT | x) per candidate under a causal decoder."""
    enc, em = model.encode([item])
    rows = [M.PROMPT + ids + [EOT] for ids in cands_ids]
    L = max(map(len, rows))
    ids = torch.tensor([r + [EOT] * (L - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (L - len(r)) for r in rows])
    n = len(rows)
    h = dec_forward(model.dec, ids, mask, enc.expand(n, -1, -1), em.expand(n, -1), causal=True)[:, 1:-1]
    lp = torch.log_softmax(model.logits(h), -1)
    tgt = model.to_short(ids[:, 2:])
    valid = mask[:, 2:] & (tgt >= 0)
    oov = mask[:, 2:] & (tgt < 0)
    tok_lp = lp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0].masked_fill(~valid, 0)
    return (tok_lp.sum(1) - 10.0 * oov.sum(1)).tolist()


@torch.no_grad()
def mdm_scores(model, item, cands_ids, a, b, K=4, shifted=True):
    """PLL over K interleaved groups: for group g mask positions j % K == g of (tokens + EOT + pad);
    sum log p of the real tokens and the first EOT. K passes per candidate."""
    enc, em = model.encode([item])
    P = len(M.PROMPT)
    resp = []
    for ids in cands_ids:
        n = max(len(ids) + 1, M.canvas_len(item["dur"], a, b))
        resp.append(ids + [EOT] * (n - len(ids)))
    L = max(map(len, resp))
    r = torch.tensor([x + [EOT] * (L - len(x)) for x in resp])
    rmask = torch.tensor([[True] * len(x) + [False] * (L - len(x)) for x in resp])
    scored = torch.tensor([[j <= len(ids) for j in range(L)] for ids in cands_ids])  # tokens + first EOT
    n = len(resp)
    rows, masks = [], []
    for g in range(K):
        mg = (torch.arange(L) % K == g)[None].expand(n, -1) & rmask
        rows.append(torch.where(mg, torch.full_like(r, MASK), r))
        masks.append(mg)
    x = torch.cat(rows)
    mg = torch.cat(masks)
    km = torch.cat([torch.ones(len(x), P, dtype=torch.bool), rmask.repeat(K, 1)], 1)
    ids = torch.cat([torch.tensor(M.PROMPT)[None].expand(len(x), -1), x], 1)
    h = dec_forward(model.dec, ids, km, enc.expand(len(x), -1, -1), em.expand(len(x), -1), causal=False)
    h = h[:, P - 1:-1] if shifted else h[:, P:]
    tgt = model.to_short(r.repeat(K, 1))
    sel = mg & scored.repeat(K, 1)
    lp = torch.log_softmax(model.logits(h[sel]), -1)
    t = tgt[sel]
    tok_lp = torch.where(t >= 0, lp.gather(-1, t.clamp(min=0)[:, None])[:, 0], torch.full_like(t, -10.0, dtype=lp.dtype))
    out = torch.zeros(len(x))
    out.index_add_(0, sel.nonzero()[:, 0], tok_lp)
    return out.view(K, n).sum(0).tolist()


def get_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--nbest", action="append", required=True, help="first-pass record dirs (relative to recipe)")
    p.add_argument("--nmax", type=int, default=8)
    p.add_argument("--ar", default=None)
    p.add_argument("--ar-enc-from", type=int, default=4)
    p.add_argument("--mdm", default=None)
    p.add_argument("--mdm-enc-from", type=int, default=4)
    p.add_argument("--ar-shortlist", type=int, default=1)
    p.add_argument("--K", type=int, default=4)
    p.add_argument("--parts", default="dev-clean,test-clean")
    p.add_argument("--out", required=True)
    return p


def main():
    args = get_parser().parse_args()
    hf0, tok = load_hf()
    dev, test = build_cache("dev-clean"), build_cache("test-clean")
    sid, f2s = shortlist(tok, {it["text"] for it in dev + test})
    train = build_cache("train-clean-100")
    from exp_scripts.train import length_rule
    a, b = length_rule(train, tok)
    del train
    scorers = {"zs": ("ar", M.WhisperDec(hf0, 4, None, None))}
    for name, path, ef, kind in (("ar", args.ar, args.ar_enc_from, "ar"), ("mdm", args.mdm, args.mdm_enc_from, "mdm")):
        if path:
            hf, _ = load_hf()
            hf.load_state_dict(torch.load(path), strict=False)
            scorers[name] = (kind, M.WhisperDec(hf, ef, sid, f2s).eval())
    for part in args.parts.split(","):
        items = {it["id"]: it for it in (dev if part == "dev-clean" else test)}
        recs = [read_records(d, part) for d in args.nbest]
        rows = []
        tm = {k: [0.0, 0.0] for k in scorers}
        for cid, it in items.items():
            cands, src = [], {}
            for si, r in enumerate(recs):
                for rank, h in enumerate(r[cid]["nbest"][: args.nmax]):
                    t = h["text"]
                    if t not in src:
                        cands.append(t)
                        src[t] = {}
                    src[t].setdefault(f"fp{si}", h["score"])
                    src[t].setdefault(f"rank{si}", rank)
            cands = [c for c in cands if c] or [""]
            ids = [tok.encode(" " + sentence_case(c), add_special_tokens=False) if c else [] for c in cands]
            feats = [{"text": c, "nwords": len(c.split()), "ntok": len(i), **src.get(c, {})} for c, i in zip(cands, ids)]
            for name, (kind, model) in scorers.items():
                t = Timer()
                sc = ar_scores(model, it, ids) if kind == "ar" else mdm_scores(model, it, ids, a, b, K=args.K)
                w, c = t()
                tm[name][0] += w
                tm[name][1] += c
                for f, s in zip(feats, sc):
                    f[name] = s
            rows.append({"id": cid, "ref": it["text"], "cands": feats})
        log(part, "scoring wall/cpu per scorer", {k: [round(x, 1) for x in v] for k, v in tm.items()})
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(f"{args.out}.{part}.json", "w") as f:
            json.dump({"rows": rows, "time": tm}, f)


if __name__ == "__main__":
    main()
