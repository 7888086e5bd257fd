"""icefall-format result files: ``recogs-*`` (ref/hyp per cut), ``errs-*`` (WER and error
analysis by ``kaldialign.align``) and ``wer-summary-*`` (settings, best first).

One ``sclite_mode`` is passed to every align call, so counts and details always agree.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import kaldialign

from whisper_llada.utils.checkpoint_io import atomic_write_text

EPS = "*"
Result = tuple[str, list[str], list[str]]  # cut id, reference words, hypothesis words


def recogs_text(results: Sequence[Result]) -> str:
    lines = []
    for cut_id, ref, hyp in sorted(results):
        lines.append(f"{cut_id}:\tref={' '.join(ref)}")
        lines.append(f"{cut_id}:\thyp={' '.join(hyp)}")
    return "\n".join(lines) + "\n"


def read_recogs(path: str | Path) -> list[Result]:
    refs, hyps = {}, {}
    for line in Path(path).read_text().splitlines():
        cut_id, _, rest = line.partition(":\t")
        key, _, text = rest.partition("=")
        (refs if key == "ref" else hyps)[cut_id] = text.split()
    if set(refs) != set(hyps):
        raise ValueError(f"{path}: cuts with a ref but no hyp or the reverse")
    return [(c, refs[c], hyps[c]) for c in sorted(refs)]


def error_counts(results: Sequence[Result], sclite_mode: bool = False) -> dict:
    ins = dels = subs = corr = n_ref = 0
    for _, ref, hyp in results:
        n_ref += len(ref)
        for r, h in kaldialign.align(ref, hyp, EPS, sclite_mode=sclite_mode):
            if r == EPS:
                ins += 1
            elif h == EPS:
                dels += 1
            elif r != h:
                subs += 1
            else:
                corr += 1
    errors = ins + dels + subs
    wer = 100.0 * errors / n_ref if n_ref else 0.0
    return {"ins": ins, "del": dels, "sub": subs, "corr": corr, "ref_words": n_ref, "errors": errors, "wer": wer}


def errs_text(results: Sequence[Result], normalizer: str, sclite_mode: bool = False, header: str = "") -> tuple[str, float]:
    c = error_counts(results, sclite_mode)
    out = [
        f"%WER = {c['wer']:.2f}",
        f"Errors: {c['ins']} insertions, {c['del']} deletions, {c['sub']} substitutions, "
        f"over {c['ref_words']} reference words ({c['corr']} correct)",
        f"Normalizer: {normalizer}; sclite_mode: {sclite_mode}",
    ]
    if header:
        out.append(header)
    out.append("Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, INSERTIONS:, PER-WORD STATS:")
    out.append("")
    out.append("PER-UTT DETAILS: corr or (ref->hyp)")
    subs: dict[tuple[str, str], int] = defaultdict(int)
    dels: dict[str, int] = defaultdict(int)
    ins: dict[str, int] = defaultdict(int)
    # word -> [correct, ref->other (sub or del), other->hyp (sub or ins)]
    words: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for cut_id, ref, hyp in sorted(results):
        pieces = []
        for r, h in kaldialign.align(ref, hyp, EPS, sclite_mode=sclite_mode):
            if r == h:
                pieces.append(r)
                words[r][0] += 1
                continue
            pieces.append(f"({r}->{h})")
            if r == EPS:
                ins[h] += 1
                words[h][2] += 1
            elif h == EPS:
                dels[r] += 1
                words[r][1] += 1
            else:
                subs[(r, h)] += 1
                words[r][1] += 1
                words[h][2] += 1
        out.append(f"{cut_id}:\t" + " ".join(pieces))
    out += ["", "SUBSTITUTIONS: count ref -> hyp"]
    out += [f"{n}   {r} -> {h}" for (r, h), n in sorted(subs.items(), key=lambda x: (-x[1], x[0]))]
    out += ["", "DELETIONS: count ref"]
    out += [f"{n}   {w}" for w, n in sorted(dels.items(), key=lambda x: (-x[1], x[0]))]
    out += ["", "INSERTIONS: count hyp"]
    out += [f"{n}   {w}" for w, n in sorted(ins.items(), key=lambda x: (-x[1], x[0]))]
    out += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    stats = sorted(words.items(), key=lambda x: (-(x[1][1] + x[1][2]), x[0]))
    out += [f"{w}   {c} {e1 + e2} {c + e1} {c + e2}" for w, (c, e1, e2) in stats]
    return "\n".join(out) + "\n", c["wer"]


def write_results(exp_dir: str | Path, test: str, suffix: str, results: Sequence[Result], normalizer: str,
                  sclite_mode: bool = False, header: str = "") -> float:
    """Write ``recogs-`` and ``errs-`` files for one test set and setting; returns the WER."""
    exp_dir = Path(exp_dir)
    atomic_write_text(exp_dir / f"recogs-{test}-{suffix}.txt", recogs_text(results))
    text, wer = errs_text(results, normalizer, sclite_mode, header)
    atomic_write_text(exp_dir / f"errs-{test}-{suffix}.txt", text)
    return wer


def write_wer_summary(path: str | Path, wers: dict[str, float]) -> None:
    lines = ["settings\tWER"] + [f"{k}\t{v:.2f}" for k, v in sorted(wers.items(), key=lambda x: (x[1], x[0]))]
    atomic_write_text(path, "\n".join(lines) + "\n")
