"""Log-linear fusion of rescoring features: weights by coordinate search on dev, applied to test.

python -m exp_scripts.fuse exp_scripts/res/feats --feats zs,ar,mdm,nwords
"""
import argparse
import json

import kaldialign

from exp_scripts.common import wer


def load(prefix, part):
    return json.load(open(f"{prefix}.{part}.json"))["rows"]


def errors(ref, hyp):
    return sum(a != b for a, b in kaldialign.align(ref.split(), hyp.split(), "*"))


def prepare(rows, feats):
    """Per utt: list of (feature vector, errors, text); missing first-pass scores get the row's min - 1."""
    out = []
    for r in rows:
        cands = r["cands"]
        vecs = []
        for f in feats:
            vals = [c.get(f) for c in cands]
            have = [v for v in vals if v is not None]
            fill = (min(have) - 1.0) if have else 0.0
            if f.startswith("rank"):
                fill = 99
            vecs.append([fill if v is None else v for v in vals])
        out.append(([list(x) for x in zip(*vecs)], [errors(r["ref"], c["text"]) for c in cands],
                    [c["text"] for c in cands], r["ref"]))
    return out


def total_err(data, w):
    tot = 0
    for vecs, errs, _, _ in data:
        best = max(range(len(vecs)), key=lambda i: sum(a * b for a, b in zip(w, vecs[i])))
        tot += errs[best]
    return tot


def tune(data, nf, base_idx=0, grid=(-2, -1, -0.5, -0.25, 0, 0.1, 0.25, 0.5, 1, 2, 4), rounds=3):
    w = [0.0] * nf
    w[base_idx] = 1.0
    best = total_err(data, w)
    for _ in range(rounds):
        for k in range(nf):
            if k == base_idx:
                continue
            for g in grid:
                w2 = list(w)
                w2[k] = g
                e = total_err(data, w2)
                if e < best:
                    best, w = e, w2
    return w, best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("prefix")
    p.add_argument("--feats", required=True, help="comma list; the first has weight 1")
    p.add_argument("--dev", default="dev-clean")
    p.add_argument("--test", default="test-clean")
    args = p.parse_args()
    feats = args.feats.split(",")
    dev = prepare(load(args.prefix, args.dev), feats)
    nref = sum(len(d[3].split()) for d in dev)
    w, e = tune(dev, len(feats))
    oracle = sum(min(d[1]) for d in dev)
    msg = {"feats": feats, "w": w, "dev": round(100 * e / nref, 2), "dev_oracle": round(100 * oracle / nref, 2)}
    try:
        test = prepare(load(args.prefix, args.test), feats)
        nt = sum(len(d[3].split()) for d in test)
        msg["test"] = round(100 * total_err(test, w) / nt, 2)
        msg["test_oracle"] = round(100 * sum(min(d[1]) for d in test) / nt, 2)
    except FileNotFoundError:
        pass
    print("FUSE", json.dumps(msg))


if __name__ == "__main__":
    main()
