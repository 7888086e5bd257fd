"""Porting: egs/kaldi_datadir end to end on Kaldi data directories built here, whose recordings
each hold two utterances that only the ``segments`` file tells apart."""

from __future__ import annotations

import json

import pytest
from recipe_utils import make_kaldi_corpus, make_workspace, run

pytestmark = pytest.mark.slow


def test_kaldi_recipe_end_to_end(tmp_path):
    from lhotse import load_manifest

    rdir = make_workspace(tmp_path, "kaldi_datadir")
    rows = make_kaldi_corpus(tmp_path / "kaldi", {"train": 8, "dev": 2, "test": 2})
    # The smallest run of every stage: the recipe's smoke config with one setting per kind and no
    # CTC first pass (egs/librispeech's test covers it); a config in code that bases on the recipe's.
    (rdir / "tiny.yaml").write_text(
        "base: conf/smoke.yaml\n"
        "firstpass: {ctc_config: null}\n"
        "train: {num_epochs: 1, save_every_n: 0}\n"
        "decode: [{mode: decoding, gen_len: 48, steps: 8, block_length: 48, batch_size: 4}]\n"
        "deliberate: [{mode: diffusion_deliberation, mask_ratio: 0.3, masking_type: low_confidence, steps: 8,"
        " batch_size: 4}]\n"
    )
    out = run(["./run.sh", "--data-dir", str(tmp_path / "kaldi"), "--config", "tiny.yaml", "--nj", "1"], rdir)
    for i in range(1, 11):
        assert f"Stage {i}:" in out
    # One cut per segment, named by it, as long as the segment, its text only.
    for part, want in rows.items():
        cuts = load_manifest(rdir / f"data/fbank/kaldi_cuts_{part}.jsonl.gz")
        got = {c.id: c for c in cuts}
        assert sorted(got) == sorted(u for u, *_ in want)
        for utt, _, start, end, text in want:
            c = got[utt]
            assert c.duration == pytest.approx(end - start, abs=0.02)
            assert c.supervisions[0].text == text and c.features.num_frames == pytest.approx(100 * (end - start), abs=2)
    assert (rdir / "data/lang_bpe_60/bpe.model").is_file()
    recogs = next((rdir / "exp/tiny/decoding").glob("recogs-test-*.txt")).read_text()
    assert all(u in recogs for u, *_ in rows["test"])
    assert list((rdir / "exp/tiny/diffusion_deliberation").glob("errs-test-*.txt"))
    report = json.loads((rdir / "exp/tiny/report.json").read_text())
    assert {s["kind"] for s in report["systems"]} >= {"first_pass", "decoding", "deliberation"}
