"""Scoring files, normalisers and system comparison on hand-made results."""

from __future__ import annotations

import pytest

from whisper_llada.data.text_norm import get_normalizer, librispeech_normalize
from whisper_llada.scoring.compare import compare_results
from whisper_llada.scoring.wer import error_counts, errs_text, read_recogs, recogs_text, write_results

RESULTS = [
    ("u1", "THE CAT SAT ON THE MAT".split(), "THE CAT SAT IN THE MAT".split()),
    ("u2", "A RED BIRD".split(), "A RED RED BIRD".split()),
    ("u3", "HELLO WORLD".split(), "HELLO".split()),
]


def test_counts_and_errs_layout(tmp_path):
    c = error_counts(RESULTS)
    assert (c["sub"], c["ins"], c["del"], c["ref_words"]) == (1, 1, 1, 11)
    assert c["wer"] == pytest.approx(100 * 3 / 11)
    wer = write_results(tmp_path, "test", "x", RESULTS, "librispeech", header="Test: test")
    text = (tmp_path / "errs-test-x.txt").read_text()
    lines = text.splitlines()
    assert lines[0] == f"%WER = {wer:.2f}" and lines[1].startswith("Errors: 1 insertions, 1 deletions, 1 substitutions")
    assert "Normalizer: librispeech" in lines[2]
    for section in ("PER-UTT DETAILS:", "SUBSTITUTIONS:", "DELETIONS:", "INSERTIONS:", "PER-WORD STATS:"):
        assert any(l.startswith(section) for l in lines)
    assert "1   ON -> IN" in text and "u3:\tHELLO (WORLD->*)" in text
    assert read_recogs(tmp_path / "recogs-test-x.txt") == sorted(RESULTS)
    assert "hyp=THE CAT SAT IN THE MAT" in recogs_text(RESULTS)


def test_sclite_mode_is_passed_through():
    a = errs_text(RESULTS, "none", sclite_mode=True)[1]
    assert a == pytest.approx(error_counts(RESULTS, sclite_mode=True)["wer"])


def test_compare_fixed_introduced_left():
    a = RESULTS
    b = [
        ("u1", RESULTS[0][1], "THE CAT SAT ON THE MAT".split()),  # fixes the substitution
        ("u2", RESULTS[1][1], "A RED RED BIRD".split()),  # leaves the insertion
        ("u3", RESULTS[2][1], "JELLO WORLD".split()),
    ]  # fixes the deletion, makes a substitution
    t = compare_results(a, b)["totals"]
    assert (t["fixed"], t["introduced"], t["left"]) == (2, 1, 1)
    with pytest.raises(ValueError, match="same cuts"):
        compare_results(a, b[:2])


def test_normalizers():
    assert librispeech_normalize("Hello, world! It's 'quoted' -- ok.") == "HELLO WORLD IT'S QUOTED OK"
    w = get_normalizer("whisper")
    assert w("Mr. Smith's colour, 10 dollars!") == w("mister smith's colour 10 dollars")
    with pytest.raises(ValueError, match="unknown normalizer"):
        get_normalizer("fancy")


def test_cascade_rtf_adds_the_first_pass():
    from whisper_llada.scoring.compare import add_cascade_rtf, format_table

    rows = [
        {"name": "whisper/beam", "kind": "first_pass", "test": "t", "wer": 40.0, "rtf": 0.1},
        {"name": "delib/x", "kind": "deliberation", "test": "t", "wer": 35.0, "rtf": 0.02},
        {"name": "delib/y", "kind": "deliberation", "test": "u", "wer": 35.0, "rtf": 0.02},
        {"name": "dec/z", "kind": "decoding", "test": "t", "wer": 50.0, "rtf": 0.05},
    ]
    add_cascade_rtf(rows)
    assert rows[1]["cascade_rtf"] == 0.12 and rows[2]["cascade_rtf"] is None and "cascade_rtf" not in rows[3]
    table = format_table(rows)
    assert "0.1200" in table.splitlines()[1]
    # With two first passes, a deliberation row adds the one its settings name.
    rows = [
        {"name": "whisper/beam", "kind": "first_pass", "test": "t", "wer": 40.0, "rtf": 0.1},
        {"name": "ctc/lattice", "kind": "first_pass", "test": "t", "wer": 45.0, "rtf": 0.01},
        {
            "name": "delib/a",
            "kind": "deliberation",
            "test": "t",
            "wer": 35.0,
            "rtf": 0.02,
            "settings": {"first_pass": "ctc"},
        },
        {"name": "delib/b", "kind": "deliberation", "test": "t", "wer": 35.0, "rtf": 0.02, "settings": {}},
    ]
    add_cascade_rtf(rows)
    assert rows[2]["cascade_rtf"] == 0.03 and rows[3]["cascade_rtf"] is None
