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
    # A row that reads the CTC pass too (its confidences, or its score in a fusion) adds its RTF.
    used = [
        {"first_pass": "whisper", "mode": "diffusion_deliberation", "masking_type": "first_pass"},
        {"first_pass": "whisper", "mode": "nbest_rescoring", "fusion": {"ctc_weight": 0.03}},
        {"first_pass": "whisper", "mode": "nbest_rescoring", "fusion": {"ctc_weight": 0.0}},
    ]
    rows = rows[:2] + [
        {"name": f"d/{i}", "kind": "deliberation", "test": "t", "wer": 35.0, "rtf": 0.02, "settings": u}
        for i, u in enumerate(used)
    ]
    add_cascade_rtf(rows)
    assert [r["cascade_rtf"] for r in rows[2:]] == [0.13, 0.13, 0.12]


def test_fusion_weights_are_chosen_on_dev_and_never_lose_there():
    """The grid point with the fewest dev errors: the LM's weight when it knows the right
    candidate, none when it is wrong (the first pass's 1-best kept), ties to the smaller weights."""
    from whisper_llada.decoding.fusion import LM_WEIGHTS, Candidate, Fusion, tune_fusion

    refs = {"a": "the cat sat".split(), "b": "a dog ran".split()}

    def cands(lm_right: bool):
        def c(text, fp, good):
            return Candidate(
                text, fp, (0.0 if good else -5.0) if lm_right else (-5.0 if good else 0.0), len(text.split())
            )

        return {
            "a": [c("the cat sad", -0.1, False), c("the cat sat", -0.2, True)],
            "b": [c("a dog ran", -0.1, True), c("a dog rat", -0.3, False)],
        }

    f, info = tune_fusion(cands(True), refs)
    assert f.lm_weight > 0 and info["wer_first_pass"] == pytest.approx(100 / 6, abs=0.01) and info["wer"] == 0.0
    assert info["wer_oracle"] == 0.0 and info["utts"] == 2 and info["words"] == 6
    # The smallest LM weight that flips cut a: 0.1 / 5 = 0.02, so the grid's first point above it.
    assert f.lm_weight == min(w for w in LM_WEIGHTS if w > 0.02)
    f, info = tune_fusion(cands(False), refs)
    assert f == Fusion() and info["wer"] == info["wer_first_pass"]
    assert Fusion().best([Candidate("x", 0.0, 0.0, 1), Candidate("y", 0.0, 9.0, 1)]) == 0  # ties: first pass order
    with pytest.raises(ValueError, match="no reference"):
        tune_fusion(cands(True), {"a": refs["a"]})


def test_fusion_takes_the_ctc_score_where_records_have_one():
    """A CTC log-likelihood on the candidates is a third feature; wer_without_lm says what the
    fusion gives without the second model's score."""
    from whisper_llada.decoding.fusion import Candidate, tune_fusion

    refs = {"a": "the cat sat".split()}
    cands = {"a": [Candidate("the cat sad", -0.1, 0.0, 3, -20.0), Candidate("the cat sat", -0.2, 0.0, 3, -10.0)]}
    f, info = tune_fusion(cands, refs)
    assert f.lm_weight == 0 and f.ctc_weight > 0 and info["wer"] == info["wer_without_lm"] == 0.0
    assert info["wer_first_pass"] == pytest.approx(100 / 3, abs=0.01)
    f, info = tune_fusion(cands, refs, features=("lm", "words"))  # the CTC score left out
    assert f.ctc_weight == 0 and info["wer"] == info["wer_first_pass"]


def test_headline_chooses_the_best_cascade_on_dev_where_it_can():
    from whisper_llada.scoring.compare import format_headline, headline

    def row(name, kind, wer, dev=None):
        fusion = {
            "wer": dev,
            "dev_parts": ["dev"],
            "lm_weight": 0.1,
            "length_weight": 0,
            "wer_first_pass": 50,
            "wer_oracle": 20,
        }
        return {
            "name": name,
            "kind": kind,
            "test": "test",
            "wer": wer,
            "rtf": 0.1,
            "settings": {"fusion": fusion} if dev else {},
        }

    rows = [
        row("whisper/beam-8", "first_pass", 40.0),
        row("a/nbest_rescoring/x", "deliberation", 30.0, dev=40.0),
        row("b/nbest_rescoring/y", "deliberation", 32.0, dev=35.0),
        row("a/diffusion_deliberation/z", "deliberation", 25.0),  # no dev figure: not chosen over those with one
    ]
    h = headline(rows)["test"]["best_cascade"]
    assert (h["name"], h["chosen_on"], h["change_vs_best_single"]) == ("b/nbest_rescoring/y", "dev", -20.0)
    assert "best cascade (by dev WER) b/nbest_rescoring/y: 32.00" in format_headline(headline(rows))
    h = headline([rows[0], rows[3]])["test"]["best_cascade"]
    assert (h["name"], h["chosen_on"]) == ("a/diffusion_deliberation/z", "test")
