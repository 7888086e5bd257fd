"""Comparing systems: a table of every result set (WER, RTF), what a second system fixed,
introduced and left of a first one's errors, and a plot of WER against RTF.

Errors are keyed by reference position (a substitution or deletion of word i, or an
insertion after word i), so "fixed" means wrong in A and right in B at the same place.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import kaldialign

from whisper_llada.decoding.strategy import report_kinds
from whisper_llada.scoring.wer import EPS, Result, read_errs_accounting, read_recogs
from whisper_llada.utils.checkpoint_io import atomic_write

# mode (the results' directory) -> the kind the report files its results as, from each strategy.
KINDS = report_kinds()


def error_keys(ref: list[str], hyp: list[str], sclite_mode: bool = False) -> Counter:
    keys: Counter = Counter()
    i = -1  # index of the last reference word consumed
    for r, h in kaldialign.align(ref, hyp, EPS, sclite_mode=sclite_mode):
        if r == EPS:
            keys[("ins", i)] += 1
            continue
        i += 1
        if h == EPS:
            keys[("del", i)] += 1
        elif r != h:
            keys[("sub", i)] += 1
    return keys


def compare_results(a: list[Result], b: list[Result], sclite_mode: bool = False) -> dict:
    """Totals and per-utterance lists of errors fixed, introduced and left by B relative to A."""
    bmap = {c: (ref, hyp) for c, ref, hyp in b}
    if set(bmap) != {c for c, _, _ in a}:
        raise ValueError("the two result sets are not on the same cuts")
    tot = Counter()
    per_utt = []
    for cut_id, ref, hyp_a in a:
        ref_b, hyp_b = bmap[cut_id]
        if ref_b != ref:
            raise ValueError(f"cut {cut_id}: the two result sets have different references")
        ea, eb = error_keys(ref, hyp_a, sclite_mode), error_keys(ref, hyp_b, sclite_mode)
        # Substitution <-> deletion at one place is the same error left, not one fixed and one made.
        pa = Counter({(i,): n for (_, i), n in ea.items()})
        pb = Counter({(i,): n for (_, i), n in eb.items()})
        fixed, made, left = sum((pa - pb).values()), sum((pb - pa).values()), sum((pa & pb).values())
        tot.update(fixed=fixed, introduced=made, left=left, ref_words=len(ref))
        if fixed or made:
            per_utt.append(
                {
                    "id": cut_id,
                    "ref": " ".join(ref),
                    "a": " ".join(hyp_a),
                    "b": " ".join(hyp_b),
                    "fixed": fixed,
                    "introduced": made,
                    "left": left,
                }
            )
    return {"totals": dict(tot), "utterances": per_utt}


def collect_systems(exp_dir: Path, firstpass_dir: Path | None = None, label: str | None = None) -> list[dict]:
    """One row per errs file: name, kind, settings, test part, WER, RTF, number of words. ``label``
    (a report over several experiments: their names) goes before the names of ``exp_dir``'s rows."""
    rows = []
    sources = [(p, KINDS.get(p.parent.name, p.parent.name)) for p in sorted(Path(exp_dir).glob("*/errs-*.txt"))]
    if firstpass_dir is not None:
        sources += [(p, "first_pass") for p in sorted(Path(firstpass_dir).glob("*/errs-*.txt"))]
    for path, kind in sources:
        prefix = f"{label}/" if label and kind != "first_pass" else ""
        lines = path.read_text().splitlines()
        try:
            wer = float(lines[0].split("=")[1])
            words = int(re.search(r"over (\d+) reference words", lines[1]).group(1))
        except (IndexError, ValueError, AttributeError):
            raise ValueError(
                f"{path}: not an errs file of this project's scoring (damaged? delete it and rerun "
                "the stage that wrote it)"
            ) from None
        settings, speed, test = {}, {}, None
        for line in lines[2:12]:
            key, _, value = line.partition(": ")
            if key == "Setting":
                settings = json.loads(value)
            elif key == "Speed":
                speed = json.loads(value)
            elif key == "Test":
                test = value
        name = path.name[len("errs-") : -len(".txt")]
        if test is None:
            raise ValueError(f"{path}: no 'Test:' line; not written by this project's scoring")
        rows.append(
            {
                "name": f"{prefix}{path.parent.name}/{name[len(test) + 1 :]}",
                "kind": kind,
                "settings": settings,
                "test": test,
                "wer": wer,
                "rtf": speed.get("rtf"),
                "num_words": words,
                "recogs": str(path.parent / ("recogs-" + name + ".txt")),
                **read_errs_accounting(path, lines),
            }
        )
    return rows


def first_pass_stats(firstpass_dir: Path) -> dict:
    """``{system: {part: stats}}`` from the ``stats-{part}.json`` the CTC first-pass stage writes."""
    out: dict = {}
    for path in sorted(Path(firstpass_dir).glob("*/stats-*.json")):
        stats = json.loads(path.read_text())
        stats.pop("reliability", None)
        out.setdefault(path.parent.name, {})[path.stem[len("stats-") :]] = stats
    return out


def format_first_pass_stats(stats: dict) -> str:
    def num(x, f="{:.2f}"):
        return f.format(x) if x is not None else "-"

    w = max([14, *map(len, stats)])
    lines = [
        f"{'first pass':{w}s} {'test':12s} {'WER':>7s} {'n-best oracle':>13s} {'conf. AUC':>9s} {'lattice depth':>13s}"
    ]
    for system, parts in stats.items():
        for part, s in parts.items():
            lines.append(
                f"{system:{w}s} {part:12s} {s['wer']:7.2f} {s['nbest_oracle_wer']:13.2f} "
                f"{num(s.get('confidence_auc'), '{:.3f}'):>9s} {num(s.get('lattice_depth'), '{:.1f}'):>13s}"
            )
    return "\n".join(lines)


def first_pass_row(rows: list[dict], system: str | None, part: str) -> dict | None:
    """The result row of first pass ``system`` on ``part`` (None: the part's one first pass; a
    decoding whose setting wrote ``as_first_pass`` records is that system), or None when that is
    not exactly one row."""
    fp = [
        f
        for f in rows
        if f["test"] == part
        and (
            (f["kind"] == "first_pass" and (system is None or f["name"].startswith(f"{system}/")))
            or (system is not None and f.get("settings", {}).get("as_first_pass") == system)
        )
    ]
    return fp[0] if len(fp) == 1 else None


def add_cascade_rtf(rows: list[dict]) -> list[dict]:
    """Give each deliberation row ``cascade_rtf``: its RTF plus that of the first pass it repairs
    (the system its settings name, else the one first pass of its test part) and, where it uses
    the CTC recogniser's output too (its word confidences, or its score in a fusion), the CTC
    pass's; None when one of them is not one result."""

    def first_pass_rtf(system, part):
        fp = first_pass_row(rows, system, part)
        return fp["rtf"] if fp else None

    for r in rows:
        if r["kind"] != "deliberation":
            continue
        settings = r.get("settings", {})
        system = settings.get("first_pass")  # written by deliberation since first passes can be several
        parts = [first_pass_rtf(system, r["test"])]
        uses_ctc = settings.get("masking_type") == "first_pass" or settings.get("fusion", {}).get("ctc_weight")
        if uses_ctc and system != "ctc":
            parts.append(first_pass_rtf("ctc", r["test"]))
        ok = None not in parts and r["rtf"] is not None
        r["cascade_rtf"] = round(sum(parts) + r["rtf"], 5) if ok else None
    return rows


SINGLE = ("first_pass", "decoding", "autoregressive")


def headline(rows: list[dict]) -> dict:
    """Per test part with decoded results: the best single system (first passes, direct decoding and
    the AR twin alike), the best cascade (by its dev WER where fusions give one) and its relative change against both that system and its own
    first pass (with the dev figures its weights were chosen by), and the best AR row against the
    best diffusion row."""

    def best(kinds, part):
        cands = [r for r in rows if r["test"] == part and r["kind"] in kinds]
        return min(cands, key=lambda r: r["wer"]) if cands else None

    def rel(a, b):
        return round(100.0 * (a - b) / b, 2) if b else None

    out = {}
    for part in sorted({r["test"] for r in rows if r["kind"] != "first_pass"}):
        h: dict = {}
        single, cascade = best(SINGLE, part), best(("deliberation",), part)
        # Cascades whose dev WER is known (a fusion's weights were chosen there) are chosen by it,
        # not by the test WER reported; only without any is the best on test shown.
        on_dev = [r for r in rows if r["test"] == part and "fusion" in r.get("settings", {})]
        if on_dev:
            cascade = min(on_dev, key=lambda r: r["settings"]["fusion"]["wer"])
        if single:
            h["best_single"] = {"name": single["name"], "kind": single["kind"], "wer": single["wer"]}
        if cascade:
            h["best_cascade"] = {
                "name": cascade["name"],
                "wer": cascade["wer"],
                "chosen_on": "dev" if on_dev else "test",
            }
            fp = first_pass_row(rows, cascade.get("settings", {}).get("first_pass"), part)
            if fp:
                h["best_cascade"].update(first_pass=fp["name"], first_pass_wer=fp["wer"])
                h["best_cascade"]["change_vs_first_pass"] = rel(cascade["wer"], fp["wer"])
            if single:
                h["best_cascade"]["change_vs_best_single"] = rel(cascade["wer"], single["wer"])
            if "fusion" in cascade.get("settings", {}):
                h["best_cascade"]["chosen_on_dev"] = cascade["settings"]["fusion"]
        ar, diff = best(("autoregressive",), part), best(("decoding",), part)
        if ar and diff:
            h["ar_vs_diffusion"] = {
                "autoregressive": {"name": ar["name"], "wer": ar["wer"], "rtf": ar["rtf"]},
                "diffusion": {"name": diff["name"], "wer": diff["wer"], "rtf": diff["rtf"]},
                "wer_change": rel(diff["wer"], ar["wer"]),
            }
        out[part] = h
    return out


def format_headline(heads: dict) -> str:
    out = []
    for part, h in heads.items():
        out.append(f"Headline, {part}:")
        if "best_single" in h:
            b = h["best_single"]
            out.append(f"  best single system  {b['name']} ({b['kind']}): {b['wer']:.2f}")
        if "best_cascade" in h:
            c = h["best_cascade"]
            line = f"  best cascade ({'by dev WER' if c.get('chosen_on') == 'dev' else 'by test WER'}) {c['name']}: {c['wer']:.2f}"
            if c.get("change_vs_best_single") is not None:
                line += f", {c['change_vs_best_single']:+.2f} % against the best single system"
            if "first_pass_wer" in c:
                line += f", {c['change_vs_first_pass']:+.2f} % against its first pass {c['first_pass']} ({c['first_pass_wer']:.2f})"
            out.append(line)
            d = c.get("chosen_on_dev")
            if d:
                out.append(
                    f"    weights chosen on {'+'.join(d['dev_parts'])}: lm {d['lm_weight']:g}, words "
                    f"{d['length_weight']:g}, ctc {d.get('ctc_weight', 0):g}; dev WER {d['wer_first_pass']:.2f} "
                    f"-> {d['wer']:.2f} (without the LM {d.get('wer_without_lm', '-')}, n-best oracle {d['wer_oracle']:.2f})"
                )
        if "ar_vs_diffusion" in h:
            a = h["ar_vs_diffusion"]
            ar, df = a["autoregressive"], a["diffusion"]
            out.append(
                f"  AR vs diffusion     {ar['name']} {ar['wer']:.2f} (RTF {ar['rtf']}) against "
                f"{df['name']} {df['wer']:.2f} (RTF {df['rtf']}): {a['wer_change']:+.2f} %"
            )
    return "\n".join(out)


def format_table(rows: list[dict]) -> str:
    """One line per result, best WER first within a test part; deliberation rows also show the
    RTF of the whole cascade (first pass + deliberation)."""

    def num(x):
        return f"{x:.4f}" if x is not None else "-"

    # The name column is as wide as the longest name: a system name is never cut short.
    w = max([len("system")] + [len(r["name"]) for r in rows])
    out = [f"{'system':{w}s} {'kind':14s} {'test':12s} {'WER':>7s} {'RTF':>8s} {'+1st pass':>9s} {'scored':>11s}"]
    for r in sorted(rows, key=lambda r: (r["test"], r["wer"])):
        cascade = num(r["cascade_rtf"]) if "cascade_rtf" in r else ""
        scored = f"{r['utts_scored']}/{r['utts_in_part']}" if r.get("utts_in_part") is not None else "-"
        out.append(
            f"{r['name']:{w}s} {r['kind']:14s} {r['test']:12s} {r['wer']:7.2f} {num(r['rtf']):>8s} {cascade:>9s} "
            f"{scored:>11s}"
        )
    left = [(r, u) for r in rows for u in r.get("left_out", [])]
    if left:
        out += ["", "Utterances left out of a WER above (scored / in the part):"]
        out += [f"{r['name']} {r['test']}: {u['id']}: {u['reason']}" for r, u in left]
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"first_pass": "s", "decoding": "o", "deliberation": "^", "autoregressive": "D"}
    for kind, m in markers.items():
        pts = [r for r in rows if r["kind"] == kind and r["rtf"] is not None]
        if pts:
            ax.scatter([r["rtf"] for r in pts], [r["wer"] for r in pts], marker=m, label=kind)
            for r in pts:  # each point says which system and test part it is
                ax.annotate(
                    f"{r['name']} ({r['test']})",
                    (r["rtf"], r["wer"]),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.set_xlabel("real-time factor")
    ax.set_ylabel("WER (%)")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def compare_files(a: Path, b: Path, sclite_mode: bool = False) -> dict:
    return compare_results(read_recogs(a), read_recogs(b), sclite_mode)
