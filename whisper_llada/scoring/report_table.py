"""A run's report (the ``report.json`` of local/compare_systems.py) as markdown, and the marked
blocks of README.md / RESULTS.md that hold it, rewritten from it so no result is copied by hand.

Only the report is read: the table shows what the report stage measured and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

MARKER = "embedded-report"


def markers(name: str = MARKER) -> tuple[str, str]:
    """The comment lines that open and close a generated block in a markdown file."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return fmt.format(x) if x is not None else "-"


def scored_parts(report: dict) -> list[str]:
    """The parts with decoded results (the headline's); without any, every part in the report."""
    parts = list(report.get("headline", {}))
    return parts or sorted({s["test"] for s in report["systems"]})


def dev_wer(system: dict, report: dict, dev_parts: list[str]) -> str:
    """The dev figure of a test row, where the report holds one: a fusion's dev WER (the figure
    its weights were chosen by), a first pass's WER on the dev parts, or the dev WER of a decoding
    written as a first pass (``as_first_pass``; the first-pass statistics hold it). Else "-":
    recipes decode their test parts only."""
    settings = system.get("settings", {})
    if "fusion" in settings:
        return _num(settings["fusion"].get("wer"))
    if system["kind"] == "first_pass":
        found = {s["test"]: s["wer"] for s in report["systems"] if s["name"] == system["name"]}
    elif settings.get("as_first_pass"):
        stats = report.get("first_pass_stats", {}).get(settings["as_first_pass"], {})
        found = {part: s.get("wer") for part, s in stats.items()}
    else:
        return "-"
    wers = [_num(found.get(part)) for part in dev_parts]
    return " / ".join(wers) if any(w != "-" for w in wers) else "-"


def _part_table(report: dict, part: str, dev_parts: list[str]) -> list[str]:
    rows = sorted((s for s in report["systems"] if s["test"] == part), key=lambda s: s["wer"])
    head = report.get("headline", {}).get(part, {})
    best = {head[k]["name"] for k in ("best_single", "best_cascade") if k in head}
    in_part = {s.get("utts_in_part") for s in rows}
    all_scored = all(s.get("utts_scored") == s.get("utts_in_part") for s in rows)
    dev_name = " / ".join(dev_parts) if dev_parts else "dev"
    cols = ["system", "kind", f"{part} WER", "RTF", "RTF with first pass", f"{dev_name} WER"]
    if not all_scored:
        cols.append("scored / in part")
    words = {s.get("num_words") for s in rows}
    caption = f"**{part}**"
    if len(in_part) == 1 and None not in in_part:
        caption += f", {in_part.pop()} utterances"
    if len(words) == 1 and None not in words:
        caption += f", {words.pop()} reference words"
    caption += ", best WER first"
    if all_scored:
        caption += "; every utterance scored in every row"
    out = [caption + ":", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in rows:
        wer = _num(s["wer"])
        cells = [
            f"`{s['name']}`",
            s["kind"],
            f"**{wer}**" if s["name"] in best else wer,
            _num(s.get("rtf"), "{:.4f}"),
            _num(s.get("cascade_rtf"), "{:.4f}") if s["kind"] == "deliberation" else "",
            dev_wer(s, report, dev_parts),
        ]
        if not all_scored:
            cells.append(f"{s.get('utts_scored', '-')} / {s.get('utts_in_part', '-')}")
        out.append("| " + " | ".join(cells) + " |")
    return out


def _headline(head: dict) -> list[str]:
    out = []
    if "best_single" in head:
        b = head["best_single"]
        out.append(f"* best single system: `{b['name']}` ({b['kind']}), {b['wer']:.2f}")
    if "best_cascade" in head:
        c = head["best_cascade"]
        line = f"* best cascade (chosen by {c.get('chosen_on', 'test')} WER): `{c['name']}`, {c['wer']:.2f}"
        if c.get("change_vs_best_single") is not None:
            line += f", {c['change_vs_best_single']:+.2f} % against the best single system"
        if "first_pass_wer" in c:
            line += f", {c['change_vs_first_pass']:+.2f} % against its first pass `{c['first_pass']}` ({c['first_pass_wer']:.2f})"
        out.append(line)
        d = c.get("chosen_on_dev")
        if d:
            out.append(
                f"  * weights chosen on {' + '.join(d['dev_parts'])}: lm {d['lm_weight']:g}, words "
                f"{d['length_weight']:g}, ctc {d.get('ctc_weight', 0):g}; dev WER {d['wer_first_pass']:.2f} -> "
                f"{d['wer']:.2f} (without the LM {_num(d.get('wer_without_lm'))}, n-best oracle "
                f"{_num(d.get('wer_oracle'))})"
            )
    if "ar_vs_diffusion" in head:
        a = head["ar_vs_diffusion"]
        ar, df = a["autoregressive"], a["diffusion"]
        out.append(
            f"* AR against diffusion: `{ar['name']}` {ar['wer']:.2f} (RTF {_num(ar['rtf'], '{:.4f}')}) against "
            f"`{df['name']}` {df['wer']:.2f} (RTF {_num(df['rtf'], '{:.4f}')}): {a['wer_change']:+.2f} %"
        )
    return out


def _first_pass_stats(stats: dict) -> list[str]:
    out = [
        "| first pass | part | WER | n-best oracle WER | confidence AUC | lattice depth (arcs/frame) |",
        "|---|---|---|---|---|---|",
    ]
    for system, parts in stats.items():
        for part, s in parts.items():
            out.append(
                f"| {system} | {part} | {_num(s.get('wer'))} | {_num(s.get('nbest_oracle_wer'))} | "
                f"{_num(s.get('confidence_auc'), '{:.3f}')} | {_num(s.get('lattice_depth'), '{:.1f}')} |"
            )
    return out


def markdown_report(report: dict) -> str:
    """Per test part a table of every system (WER, RTF, the cascade's RTF, the dev figure) and its
    headline, then the first passes' statistics; as the report stage computed them."""
    tests = scored_parts(report)
    dev_parts = sorted({s["test"] for s in report["systems"]} - set(tests))
    out = []
    for part in tests:
        out += _part_table(report, part, dev_parts)
        head = _headline(report.get("headline", {}).get(part, {}))
        if head:
            out += ["", f"Headline, {part}:", "", *head]
        out.append("")
    if report.get("first_pass_stats"):
        out += ["First passes:", "", *_first_pass_stats(report["first_pass_stats"]), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def replace_block(text: str, block: str, source: str, name: str = MARKER) -> str:
    """``text`` with what lies between its ``name`` markers replaced by ``block``; a ValueError
    naming ``source`` when the markers are missing, repeated or out of order."""
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(
            f"{source}: needs exactly one '{begin}' line followed by one '{end}' line around the "
            f"generated table (found {text.count(begin)} and {text.count(end)}); add them where the table goes"
        )
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    note = "<!-- generated by local/compare_systems.py --markdown from a run's report.json: edit the run, not this -->"
    return f"{head}{begin}\n{note}\n\n{block.strip()}\n\n{end}{tail}"


def update_files(paths: Iterable[Path], block: str, name: str = MARKER) -> list[Path]:
    """Rewrite the marked block of every file, atomically; every file is checked before any is
    written, so a file without markers leaves them all as they were. Returns the files changed."""
    from whisper_llada.utils.checkpoint_io import atomic_write_text

    new = {}
    for path in map(Path, paths):
        old = path.read_text(encoding="utf-8")
        text = replace_block(old, block, str(path), name)
        if text != old:
            new[path] = text
    for path, text in new.items():
        atomic_write_text(path, text)
    return list(new)
