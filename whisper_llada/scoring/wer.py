"""icefall-format result files: ``recogs-*`` (ref/hyp per cut), ``errs-*`` (WER and error
analysis by ``kaldialign.align``) and ``wer-summary-*`` (settings, best first).

One ``sclite_mode`` is passed to every align call, so counts and details always agree.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import kaldialign

from whisper_llada.utils.checkpoint_io import atomic_write_text

EPS = "*"
Result = tuple[str, list[str], list[str]]  # cut id, reference words, hypothesis words
LeftOut = tuple[str, str]  # cut id, why it was not decoded


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


def utterances_line(num_results: int, left_out: Sequence[LeftOut]) -> str:
    """What a WER is over: the utterances of the part, and those not decoded (in the WER as all deleted)."""
    return (
        f"Utterances: {num_results - len(left_out)} scored of {num_results} in the part; "
        f"{len(left_out)} left out (counted as all deleted; see LEFT OUT)"
    )


def read_errs_accounting(path: str | Path, lines: Sequence[str]) -> dict:
    """``utts_scored``, ``utts_in_part`` and ``left_out`` [{id, reason}] of an errs file (None when it
    predates the accounting)."""
    out: dict = {"utts_scored": None, "utts_in_part": None, "left_out": []}
    m = next(
        (re.match(r"Utterances: (\d+) scored of (\d+) in the part", x) for x in lines if x.startswith("Utterances: ")),
        None,
    )
    if m:
        out["utts_scored"], out["utts_in_part"] = int(m.group(1)), int(m.group(2))
    if "LEFT OUT: cut id, reason" in lines:
        for line in lines[lines.index("LEFT OUT: cut id, reason") + 1 :]:
            if not line.strip():
                break
            cut_id, _, reason = line.partition("\t")
            out["left_out"].append({"id": cut_id, "reason": reason})
    if out["utts_in_part"] is not None and out["utts_in_part"] - out["utts_scored"] != len(out["left_out"]):
        raise ValueError(
            f"{path}: its LEFT OUT section does not match its Utterances line (a damaged file? "
            "delete it and rerun the stage that wrote it)"
        )
    return out


def errs_text(
    results: Sequence[Result],
    normalizer: str,
    sclite_mode: bool = False,
    header: str = "",
    left_out: Sequence[LeftOut] = (),
) -> tuple[str, float]:
    """``left_out``: (cut id, reason) of cuts in ``results`` that were not decoded (their hypothesis is empty)."""
    c = error_counts(results, sclite_mode)
    out = [
        f"%WER = {c['wer']:.2f}",
        f"Errors: {c['ins']} insertions, {c['del']} deletions, {c['sub']} substitutions, "
        f"over {c['ref_words']} reference words ({c['corr']} correct)",
        f"Normalizer: {normalizer}; sclite_mode: {sclite_mode}",
        utterances_line(len(results), left_out),
    ]
    if header:
        out.append(header)
    out.append(
        "Search below for sections starting with LEFT OUT:, PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
        "INSERTIONS:, PER-WORD STATS:"
    )
    out.append("")
    out.append("LEFT OUT: cut id, reason")
    out += [f"{cut_id}\t{' '.join(reason.split())}" for cut_id, reason in sorted(left_out)]  # one line each
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


def write_results(
    exp_dir: str | Path,
    test: str,
    suffix: str,
    results: Sequence[Result],
    normalizer: str,
    sclite_mode: bool = False,
    header: str = "",
    left_out: Sequence[LeftOut] = (),
) -> float:
    """Write ``recogs-`` and ``errs-`` files for one test set and setting; returns the WER.

    ``results`` holds every cut of the part; those in ``left_out`` (cut id, reason) with an empty
    hypothesis, so the WER counts their words as deleted and the errs file lists them. Rows of a
    long cut's pieces are joined into the cut's row first (``whisper_llada.data.pieces``).
    """
    from whisper_llada.data.pieces import join_pieces

    results, left_out = join_pieces(results, left_out)
    exp_dir = Path(exp_dir)
    ids = {c for c, _, _ in results}
    missing = [c for c, _ in left_out if c not in ids]
    if missing:
        raise ValueError(
            f"{test}: left-out cuts without a result row (e.g. {missing[:3]}): they would vanish from the WER"
        )
    # errs last: its presence marks the result done (a rerun skips it).
    atomic_write_text(exp_dir / f"recogs-{test}-{suffix}.txt", recogs_text(results))
    text, wer = errs_text(results, normalizer, sclite_mode, header, left_out)
    atomic_write_text(exp_dir / f"errs-{test}-{suffix}.txt", text)
    return wer


def write_wer_summary(
    path: str | Path, wers: dict[str, float], counts: dict[str, tuple[int, int]] | None = None
) -> None:
    """``counts``: setting -> (utterances scored, utterances in the part), shown beside each WER."""
    counts = counts or {}
    lines = ["settings\tWER\tscored/in part"]
    for k, v in sorted(wers.items(), key=lambda x: (x[1], x[0])):
        n = counts.get(k)
        lines.append(f"{k}\t{v:.2f}\t" + (f"{n[0]}/{n[1]}" if n else "-"))
    if any(n[0] != n[1] for n in counts.values()):
        lines.append("Utterances not scored are counted as all deleted; the errs files list them under LEFT OUT.")
    atomic_write_text(path, "\n".join(lines) + "\n")
