#!/usr/bin/env python3
"""Compare systems: a table of every result (WER, RTF), and what one system fixed,
introduced and left of another's errors.

Reads  {exp_dir}/*/errs-*.txt, {firstpass_dir}/*/errs-*.txt and stats-*.json; --a/--b: two recogs files
Writes {output_dir}/report.txt, report.json (default: the first --exp-dir), and with --plot a PNG of
       WER against RTF. The headline names, per test part, the best single system, the best cascade
       (its change against both, and the dev figures that chose its weights) and AR against diffusion.
       A deliberation row also gets cascade_rtf: its RTF plus the first pass's;
       first passes with statistics (n-best oracle WER, confidence AUC, lattice depth) get a table.

--markdown REPORT: print a report.json as markdown tables instead (nothing is collected); with
       --update FILE..., also write them between the <!-- embedded-report:begin --> and
       <!-- embedded-report:end --> lines of each file (README.md, RESULTS.md), so results there
       are never copied by hand.
"""

import argparse
import json
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, action="append", help="repeatable; required unless --markdown")
    p.add_argument("--output-dir", type=Path, help="where report.{txt,json} go (default: the first --exp-dir)")
    p.add_argument("--firstpass-dir", type=Path, default=Path("data/firstpass"))
    p.add_argument("--a", type=Path, help="recogs file of the reference system (e.g. the first pass)")
    p.add_argument("--b", type=Path, help="recogs file of the system compared with it (e.g. deliberation)")
    p.add_argument("--plot", type=Path, help="write a PNG of WER against RTF here")
    p.add_argument("--sclite-mode", action="store_true")
    p.add_argument("--markdown", type=Path, metavar="REPORT", help="print this report.json as markdown")
    p.add_argument("--update", type=Path, nargs="+", metavar="FILE", help="with --markdown: write it into these files")
    p.add_argument("--marker", default="embedded-report", help="name in the files' begin/end comments")
    return p


def print_markdown(args: argparse.Namespace) -> None:
    """The --markdown form: a report written before, as markdown; with --update, into files."""
    from whisper_llada.scoring.report_table import markdown_report, update_files

    try:
        report = json.loads(args.markdown.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{args.markdown}: cannot read this report ({e}); run the report stage first") from None
    text = markdown_report(report)
    print(text, end="")
    if args.update:
        try:
            changed = update_files(args.update, text, args.marker)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        for path in args.update:
            print(f"{path}: {'updated' if path in changed else 'already up to date'}")


def main() -> None:
    parser = get_parser()
    args = parser.parse_args()
    if args.markdown:
        return print_markdown(args)
    if args.update:
        parser.error("--update needs --markdown REPORT")
    if not args.exp_dir:
        parser.error("--exp-dir is required (or --markdown REPORT)")
    from whisper_llada.scoring.compare import (
        add_cascade_rtf,
        collect_systems,
        compare_files,
        first_pass_stats,
        format_first_pass_stats,
        format_headline,
        format_table,
        headline,
        plot,
    )
    from whisper_llada.utils.checkpoint_io import atomic_write_text
    from whisper_llada.utils.logging import setup_logger

    setup_logger()
    rows = []
    for i, exp in enumerate(args.exp_dir):
        fp = args.firstpass_dir if i == 0 and args.firstpass_dir.is_dir() else None
        # Several experiments may hold equally named results (decoding/..., nbest_rescoring/...).
        rows += collect_systems(exp, fp, exp.name if len(args.exp_dir) > 1 else None)
    if not rows:
        raise SystemExit(f"{args.exp_dir}: no errs-*.txt results to compare (run decode / deliberate first)")
    out_dir = args.output_dir or args.exp_dir[0]
    rows = add_cascade_rtf(rows)
    table = format_table(rows)
    keys = (
        "name",
        "kind",
        "settings",
        "test",
        "wer",
        "rtf",
        "cascade_rtf",
        "num_words",
        "utts_scored",
        "utts_in_part",
        "left_out",
    )
    heads = headline(rows)
    report = {"headline": heads, "systems": [{k: r[k] for k in keys if k in r} for r in rows]}
    if heads:
        table = format_headline(heads) + "\n\n" + table
    stats = first_pass_stats(args.firstpass_dir) if args.firstpass_dir.is_dir() else {}
    if stats:
        report["first_pass_stats"] = stats
        table += "\n\n" + format_first_pass_stats(stats)
    if args.a and args.b:
        cmp = compare_files(args.a, args.b, args.sclite_mode)
        t = cmp["totals"]
        table += (
            f"\n\n{args.b.name} against {args.a.name}: {t.get('fixed', 0)} errors fixed, "
            f"{t.get('introduced', 0)} introduced, {t.get('left', 0)} left"
        )
        for u in cmp["utterances"]:
            table += f"\n{u['id']}: fixed {u['fixed']}, introduced {u['introduced']}\n  REF {u['ref']}\n  A   {u['a']}\n  B   {u['b']}"
        report["comparison"] = {"a": str(args.a), "b": str(args.b), **cmp}
    print(table)
    atomic_write_text(out_dir / "report.txt", table + "\n")
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
