"""N-best oracle WER of first-pass record files (union of several systems' n-best)."""
import sys, gzip, json
from exp_scripts.common import ROOT, wer
import kaldialign

def read(p):
    with gzip.open(p, "rt") as f:
        return {r["id"]: r for r in map(json.loads, f)}

def refs(part):
    import lhotse
    cuts = lhotse.load_manifest(str(ROOT / f"data/fbank/librispeech_cuts_{part}.jsonl.gz"))
    return {c.id: " ".join(s.text for s in c.supervisions) for c in cuts}

def oracle(part, files, nmax=100):
    R = refs(part)
    recs = [read(f) for f in files]
    pairs, best1 = [], []
    for cid, ref in R.items():
        cands = []
        for r in recs:
            cands += [h["text"] for h in r[cid]["nbest"][:nmax]]
        cands = list(dict.fromkeys(cands))
        errs = [sum(a != b for a, b in kaldialign.align(ref.split(), c.split(), "*")) for c in cands]
        pairs.append((ref, cands[min(range(len(cands)), key=errs.__getitem__)]))
        best1.append((ref, recs[0][cid]["text"]))
    return wer(best1), wer(pairs), sum(len(set(r[c]["nbest"][i]["text"] for r in recs for i in range(min(nmax, len(r[c]["nbest"]))))) for c in R for _ in [0]) / len(R)

if __name__ == "__main__":
    part = sys.argv[1]
    files = sys.argv[2:]
    for n in (1, 2, 4, 8, 16):
        print(part, files, "n", n, "1best %.2f oracle %.2f avg cands %.1f" % oracle(part, files, n))
