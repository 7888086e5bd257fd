"""N-best of a fine-tuned AR decoder (beam search) as first-pass records, + its 1-best WER.

python -m exp_scripts.gen_nbest --ckpt exp_scripts/ckpt/ar.pt --enc-from 2 --beam 4 --out exp_scripts/fp/ar
"""
import argparse, gzip, json, os
import torch
from exp_scripts import models as M
from exp_scripts.common import Timer, build_cache, load_hf, log, norm, shortlist, wer

p = argparse.ArgumentParser()
p.add_argument("--ckpt", required=True)
p.add_argument("--enc-from", type=int, default=4)
p.add_argument("--beam", type=int, default=4)
p.add_argument("--parts", default="dev-clean,test-clean")
p.add_argument("--out", required=True)
args = p.parse_args()
hf, tok = load_hf()
dev, test = build_cache("dev-clean"), build_cache("test-clean")
sid, f2s = shortlist(tok, {it["text"] for it in dev + test})
hf.load_state_dict(torch.load(args.ckpt), strict=False)
model = M.WhisperDec(hf, args.enc_from, sid, f2s).eval()
os.makedirs(args.out, exist_ok=True)
for part in args.parts.split(","):
    items = dev if part == "dev-clean" else test
    t = Timer()
    recs, pairs = [], []
    for it in items:
        nb = M.ar_beam(model, it, beam=args.beam, nbest=args.beam)
        hyps = [{"text": norm(tok.decode(ids)), "score": sc} for ids, _, sc in nb]
        recs.append({"id": it["id"], "text": hyps[0]["text"], "nbest": hyps})
        pairs.append((it["text"], hyps[0]["text"]))
    w, c = t()
    with gzip.open(f"{args.out}/{part}.jsonl.gz", "wt") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    log(f"RESULT {part} beam {args.beam} WER {wer(pairs):.2f} wall {w:.0f} cpu {c:.0f}")
