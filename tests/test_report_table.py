"""The report as markdown (scoring/report_table.py) and the marked blocks it rewrites, on a small
hand-made report.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_llada.scoring.compare import headline
from whisper_llada.scoring.report_table import markdown_report, markers, update_files

ROOT = Path(__file__).resolve().parents[1]
FUSION = {
    "dev_parts": ["dev-clean"],
    "lm_weight": 0.316228,
    "length_weight": -1.0,
    "ctc_weight": 0.1,
    "wer_first_pass": 26.81,
    "wer": 24.88,
    "wer_without_lm": 25.68,
    "wer_oracle": 22.47,
}


def row(name, kind, test, wer, rtf, settings=None, scored=200, cascade_rtf=None):
    r = {
        "name": name,
        "kind": kind,
        "settings": settings or {},
        "test": test,
        "wer": wer,
        "rtf": rtf,
        "num_words": 2460 if test == "test-clean" else 1246,
        "utts_scored": scored,
        "utts_in_part": 200 if test == "test-clean" else 100,
        "left_out": [],
    }
    if kind == "deliberation":
        r["cascade_rtf"] = cascade_rtf
    return r


def make_report(scored: int = 200) -> dict:
    systems = [
        row("whisper/beam-8", "first_pass", "test-clean", 41.3, 0.028),
        row("whisper/beam-8", "first_pass", "dev-clean", 42.78, 0.03, scored=100),
        row("ctc/hlg", "first_pass", "test-clean", 50.08, 0.015),
        row("ar/autoregressive/beam-4", "autoregressive", "test-clean", 25.69, 0.053, {"as_first_pass": "ar"}),
        row("mdm/decoding/beam-4", "decoding", "test-clean", 28.17, 0.057, scored=scored),
        row(
            "mdm/nbest_rescoring/on-ar",
            "deliberation",
            "test-clean",
            24.88,
            0.052,
            {"first_pass": "ar", "fusion": FUSION},
            cascade_rtf=0.12,
        ),
    ]
    stats = {
        "ar": {"dev-clean": {"wer": 26.81, "nbest_oracle_wer": 22.47, "confidence_auc": 0.71}},
        "ctc": {"test-clean": {"wer": 50.08, "nbest_oracle_wer": 43.7, "confidence_auc": 0.775, "lattice_depth": 5.5}},
    }
    return {"headline": headline(systems), "systems": systems, "first_pass_stats": stats}


def table_rows(md: str) -> dict[str, list[str]]:
    """The cells of each system row of the markdown, by system name."""
    out = {}
    for line in md.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0].strip("`")] = cells[1:]
    return out


def test_table_holds_every_test_row_best_first_with_its_dev_figure():
    md = markdown_report(make_report())
    rows = table_rows(md)
    # Test rows only (the dev part's first pass becomes a dev figure), best WER first.
    assert list(rows) == [
        "mdm/nbest_rescoring/on-ar",
        "ar/autoregressive/beam-4",
        "mdm/decoding/beam-4",
        "whisper/beam-8",
        "ctc/hlg",
    ]
    # kind, WER (the headline's best single system and cascade in bold), RTF, cascade RTF, dev WER
    assert rows["mdm/nbest_rescoring/on-ar"] == ["deliberation", "**24.88**", "0.0520", "0.1200", "24.88"]
    assert rows["ar/autoregressive/beam-4"] == ["autoregressive", "**25.69**", "0.0530", "", "26.81"]
    assert rows["mdm/decoding/beam-4"] == ["decoding", "28.17", "0.0570", "", "-"]
    assert rows["whisper/beam-8"] == ["first_pass", "41.30", "0.0280", "", "42.78"]
    assert rows["ctc/hlg"][-1] == "-"  # no dev result for it in the report
    assert "| system | kind | test-clean WER | RTF | RTF with first pass | dev-clean WER |" in md
    assert "**test-clean**, 200 utterances, 2460 reference words" in md
    assert "dev-clean WER" in md and "**dev-clean**" not in md


def test_headline_and_first_pass_statistics():
    md = markdown_report(make_report())
    assert "* best single system: `ar/autoregressive/beam-4` (autoregressive), 25.69" in md
    assert "`mdm/nbest_rescoring/on-ar`, 24.88, -3.15 % against the best single system" in md
    assert "weights chosen on dev-clean: lm 0.316228, words -1, ctc 0.1; dev WER 26.81 -> 24.88" in md
    assert "(without the LM 25.68, n-best oracle 22.47)" in md
    assert "`mdm/decoding/beam-4` 28.17 (RTF 0.0570): +9.65 %" in md
    assert "| ctc | test-clean | 50.08 | 43.70 | 0.775 | 5.5 |" in md
    assert "| ar | dev-clean | 26.81 | 22.47 | 0.710 | - |" in md


def test_utterances_left_out_add_a_scored_column():
    md = markdown_report(make_report(scored=198))
    assert "scored / in part |" in md
    assert table_rows(md)["mdm/decoding/beam-4"][-1] == "198 / 200"
    assert "every utterance scored" not in md
    assert "every utterance scored" in markdown_report(make_report())


def doc(tmp_path: Path, name: str, marked: bool = True) -> Path:
    begin, end = markers()
    middle = f"{begin}\n| old | table |\n{end}\n" if marked else "| old | table |\n"
    path = tmp_path / name
    path.write_text(f"# Title\n\nBefore the table.\n\n{middle}\nAfter the table.\n")
    return path


def test_update_replaces_only_the_marked_block(tmp_path):
    paths = [doc(tmp_path, "README.md"), doc(tmp_path, "RESULTS.md")]
    md = markdown_report(make_report())
    assert update_files(paths, md) == paths
    begin, end = markers()
    for path in paths:
        text = path.read_text()
        assert text.startswith(f"# Title\n\nBefore the table.\n\n{begin}\n")
        assert text.endswith(f"\n{end}\n\nAfter the table.\n")
        inside = text.split(begin)[1].split(end)[0]
        assert "old" not in inside and md.strip() in inside
    assert update_files(paths, md) == []  # a second update changes nothing


def test_a_file_without_markers_is_an_error_naming_it_and_nothing_is_written(tmp_path):
    good, bad = doc(tmp_path, "README.md"), doc(tmp_path, "RESULTS.md", marked=False)
    before = good.read_text()
    with pytest.raises(ValueError, match="RESULTS.md: needs exactly one '<!-- embedded-report:begin -->'"):
        update_files([good, bad], markdown_report(make_report()))
    assert good.read_text() == before
    twice = doc(tmp_path, "twice.md")
    twice.write_text(twice.read_text() * 2)
    with pytest.raises(ValueError, match="twice.md: .*found 2 and 2"):
        update_files([twice], "x")


def test_compare_systems_markdown_flag(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(make_report()))
    readme, bare = doc(tmp_path, "README.md"), doc(tmp_path, "bare.md", marked=False)
    cmd = [sys.executable, str(ROOT / "local/compare_systems.py"), "--markdown", str(report)]
    out = subprocess.run([*cmd, "--update", str(readme)], capture_output=True, text=True, check=True).stdout
    assert "| `ar/autoregressive/beam-4` | autoregressive | **25.69** |" in out
    assert f"{readme}: updated" in out and "**25.69**" in readme.read_text()
    failed = subprocess.run([*cmd, "--update", str(bare)], capture_output=True, text=True)
    assert failed.returncode != 0 and f"{bare}: needs exactly one" in failed.stderr
