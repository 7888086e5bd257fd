"""How good a first pass's lattices and confidences are: n-best oracle WER, lattice depth, and
confidence quality (ROC AUC of confidence against word correctness, reliability bins and plot).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def word_correct(ref: Sequence[str], hyp: Sequence[str]) -> list[bool]:
    """Per hypothesis word: aligned (kaldialign) to the same reference word."""
    import kaldialign

    out = []
    for r, h in kaldialign.align(list(ref), list(hyp), "*"):
        if h != "*":
            out.append(r == h)
    return out


def oracle_errors(ref: Sequence[str], nbest: Sequence[Sequence[str]]) -> int:
    """Fewest word errors among the n-best entries."""
    import kaldialign

    return min(kaldialign.edit_distance(list(ref), list(h))["total"] for h in nbest) if nbest else len(ref)


def roc_auc(conf: Sequence[float], correct: Sequence[bool]) -> float:
    """Probability that a correct word gets a higher confidence than a wrong one (ties count
    half): the Mann-Whitney statistic. NaN when either class is empty."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=bool)
    pos, neg = conf[correct], conf[~correct]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def reliability(conf: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Per confidence bin: its range, word count, mean confidence and fraction correct."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=bool)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append(
            {
                "lo": round(float(edges[b]), 3),
                "hi": round(float(edges[b + 1]), 3),
                "words": int(m.sum()),
                "mean_conf": float(conf[m].mean()) if m.any() else None,
                "accuracy": float(correct[m].mean()) if m.any() else None,
            }
        )
    return out


def first_pass_stats(records: dict, refs: dict[str, str]) -> dict:
    """Statistics of first-pass records against reference texts (normalised alike)."""
    import kaldialign

    n_ref = errors = oracle = 0
    conf, correct, depth = [], [], []
    for cut_id, rec in records.items():
        ref = refs[cut_id].split()
        hyp = rec["text"].split()
        n_ref += len(ref)
        errors += kaldialign.edit_distance(ref, hyp)["total"]
        oracle += oracle_errors(ref, [e["text"].split() for e in rec.get("nbest", [])] or [hyp])
        if rec.get("words"):
            if [w["word"] for w in rec["words"]] != hyp:
                raise ValueError(f"record {cut_id}: its words are not its text")
            conf += [w["conf"] for w in rec["words"]]
            correct += word_correct(ref, hyp)
        if "lattice_depth" in rec:
            depth.append(rec["lattice_depth"])
    out = {
        "utterances": len(records),
        "ref_words": n_ref,
        "wer": 100 * errors / max(n_ref, 1),
        "nbest_oracle_wer": 100 * oracle / max(n_ref, 1),
    }
    if conf:
        out.update(
            confidence_auc=roc_auc(conf, correct), confident_words=len(conf), reliability=reliability(conf, correct)
        )
    if depth:
        out["lattice_depth"] = float(np.mean(depth))
    return out


def plot_reliability(stats: dict, path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from whisper_llada.utils.checkpoint_io import atomic_write

    bins = [b for b in stats.get("reliability", []) if b["words"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    ax.plot(
        [b["mean_conf"] for b in bins],
        [b["accuracy"] for b in bins],
        "o-",
        label=f"AUC {stats.get('confidence_auc', float('nan')):.3f}",
    )
    ax.set_xlabel("word confidence")
    ax.set_ylabel("fraction of words correct")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
