"""Train Whisper tiny.en's decoder (and optionally its top encoder layers) on the 2500 training
utterances, AR (next-token) or masked diffusion; evaluate on dev (and test with --test).

python -m exp_scripts.train --mode ar --enc-from 4 --steps 300 --save exp_scripts/ckpt/ar.pt
"""
import argparse
import json
import os
import time

import torch

from exp_scripts.common import CACHE, Timer, build_cache, load_hf, log, norm, shortlist, wer, batches
from exp_scripts import models as M


def get_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["ar", "mdm"], required=True)
    p.add_argument("--enc-from", type=int, default=4, help="4 frozen encoder; 3/2 train the top 1/2 layers")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--time-budget", type=float, default=1e9, help="stop after this many CPU seconds")
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--enc-lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--max-frames", type=int, default=8000)
    p.add_argument("--vocab", choices=["short", "full"], default="short")
    p.add_argument("--shifted", type=int, default=1)
    p.add_argument("--weighting", default="plain")
    p.add_argument("--init", default=None, help="state dict of trainable params to start from")
    p.add_argument("--init-enc", default=None, help="state dict: only its encoder weights are loaded")
    p.add_argument("--freeze-enc", action="store_true", help="top encoder layers (enc-from) not trained")
    p.add_argument("--save", default=None)
    p.add_argument("--eval", default="greedy", help="comma list: greedy, beam4, d8, d16, d32, s8b8 ...")
    p.add_argument("--test", action="store_true")
    p.add_argument("--dump", default=None, help="directory for hypothesis records {setting}.{part}.jsonl.gz")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--skip-dev", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=0.0)
    return p


def build(args):
    hf, tok = load_hf()
    dev = build_cache("dev-clean")
    test = build_cache("test-clean")
    if args.vocab == "short":
        excl = {it["text"] for it in dev + test}
        sid, f2s = shortlist(tok, excl)
    else:
        sid, f2s = None, None
    model = M.WhisperDec(hf, args.enc_from, sid, f2s)
    if args.init:
        sd = torch.load(args.init)
        missing = model.hf.load_state_dict(sd, strict=False)
        log("init from", args.init, "unexpected", missing.unexpected_keys[:3])
    if args.init_enc:
        sd = {k: v for k, v in torch.load(args.init_enc).items() if k.startswith("model.encoder.")}
        model.hf.load_state_dict(sd, strict=False)
        log("encoder from", args.init_enc, len(sd), "tensors")
    if args.freeze_enc:
        model.hf.model.encoder.requires_grad_(False)
        model.frozen_enc = True
    return model, tok, dev, test


def length_rule(train, tok):
    """Canvas = ceil(a * dur) + b covering ~99 % of training transcripts (+EOS)."""
    lens = [len(ids) + 1 for ids in M.encode_texts(tok, [it["text"] for it in train])]
    r = sorted(n / it["dur"] for n, it in zip(lens, train))
    a = r[int(0.99 * len(r))]
    return a, 2


def evaluate(model, tok, items, what, a, b, shifted, dump=None, part=""):
    res = {}
    for w in what.split(","):
        t = Timer()
        hyps = []
        passes = 0
        ids_done = []
        for bt in batches(items, 20000, shuffle=False):
            its = [items[i] for i in bt]
            if w == "greedy":
                out = M.ar_greedy(model, its)
            elif w.startswith("beam"):
                out = [M.ar_beam(model, it, beam=int(w[4:]))[0][0] for it in its]
            elif w.startswith("d"):
                out, p = M.mdm_decode(model, its, a, b, steps=int(w[1:]), shifted=shifted)
                passes += p
            elif w.startswith("s"):  # s<steps>b<block>
                st, bl = w[1:].split("b")
                out, p = M.mdm_decode(model, its, a, b, steps=int(st), shifted=shifted, block=int(bl))
                passes += p
            hyps += [(it["text"], norm(tok.decode(o))) for it, o in zip(its, out)]
            ids_done += [it["id"] for it in its]
        wall, cpu = t()
        res[w] = {"wer": round(wer(hyps), 2), "wall": round(wall, 1), "cpu": round(cpu, 1)}
        log(w, res[w], "| e.g.", hyps[0][1][:80])
        if dump:
            import gzip
            os.makedirs(dump, exist_ok=True)
            with gzip.open(f"{dump}/{w}.{part}.jsonl.gz", "wt") as f:
                for cid, (_, h) in sorted(zip(ids_done, hyps)):
                    f.write(json.dumps({"id": cid, "text": h, "nbest": [{"text": h, "score": 0.0}]}) + "\n")
    return res


def main():
    args = get_parser().parse_args()
    torch.manual_seed(args.seed)
    model, tok, dev, test = build(args)
    train = build_cache("train-clean-100")
    a, b = length_rule(train, tok)
    for it, ids in zip(dev + test, M.encode_texts(tok, [it["text"] for it in dev + test])):
        it["olen"] = len(ids) + 1
    log(f"canvas rule ceil({a:.2f} * dur) + {b}; vocab {len(model.short_ids)}")
    params = [p for p in model.parameters() if p.requires_grad]
    enc_params = [p for n, p in model.named_parameters() if p.requires_grad and ".encoder." in n]
    dec_params = [p for n, p in model.named_parameters() if p.requires_grad and ".encoder." not in n]
    groups = [{"params": dec_params, "lr": args.lr}]
    if enc_params:
        groups.append({"params": enc_params, "lr": args.enc_lr or args.lr})
    log("trainable", sum(p.numel() for p in params))
    opt = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    base = [g["lr"] for g in groups]
    gen = torch.Generator().manual_seed(args.seed)
    t = Timer()
    step, epoch = 0, 0
    model.train()
    if args.dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = args.dropout
    run_loss = []
    while step < args.steps and not args.eval_only:
        for bt in batches(train, args.max_frames, shuffle=True, seed=args.seed + epoch):
            its = [train[i] for i in bt]
            if args.mode == "ar":
                loss, n = M.ar_loss(model, its, tok)
            else:
                loss, n = M.mdm_loss(model, its, tok, a, b, gen, shifted=bool(args.shifted), weighting=args.weighting)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            f = min(1.0, (step + 1) / args.warmup) * max(0.05, 1 - step / args.steps)
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * f
            opt.step()
            step += 1
            run_loss.append(float(loss))
            if step % 25 == 0:
                log(f"step {step} epoch {epoch} loss {sum(run_loss[-25:]) / 25:.3f} wall/cpu {t()[0]:.0f}/{t()[1]:.0f}")
            if step >= args.steps or t()[1] > args.time_budget:
                break
        epoch += 1
        if t()[1] > args.time_budget:
            break
    wall, cpu = t()
    log(f"trained {step} steps ({epoch} epochs) wall {wall:.0f} s cpu {cpu:.0f} s")
    model.eval()
    if args.save:
        sd = {k: v for k, v in model.hf.state_dict().items()
              if any(k == n for n, p in model.hf.named_parameters() if p.requires_grad)
              or (args.enc_from < 4 and k.startswith("model.encoder."))}
        os.makedirs(os.path.dirname(args.save), exist_ok=True)
        torch.save(sd, args.save + ".tmp")
        os.replace(args.save + ".tmp", args.save)
    res = {"args": vars(args), "train_wall": round(wall), "train_cpu": round(cpu), "steps": step,
           "dev": None if args.skip_dev else evaluate(model, tok, dev, args.eval, a, b, bool(args.shifted), args.dump, "dev-clean")}
    if args.test:
        res["test"] = evaluate(model, tok, test, args.eval, a, b, bool(args.shifted), args.dump, "test-clean")
    print("RESULT", json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
