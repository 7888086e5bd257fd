"""Data preparation on bad input: unreadable audio, cuts that cannot be used, broken records."""

from __future__ import annotations

import gzip
import logging

import pytest
from recipe_utils import ROOT, run

from whisper_llada.data.dataset import filter_cuts
from whisper_llada.firstpass.records import read_records, write_records


def _cut(cut_id: str, duration: float, text: str):
    from lhotse import MonoCut, Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    rec = Recording(
        id=cut_id,
        sources=[AudioSource(type="file", channels=[0], source="/nonexistent.flac")],
        sampling_rate=16000,
        num_samples=int(duration * 16000),
        duration=duration,
    )
    sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0, duration=duration, text=text)
    return MonoCut(id=cut_id, start=0, duration=duration, channel=0, recording=rec, supervisions=[sup])


def test_filter_cuts_reports_each_reason(tokenizer, caplog):
    cuts = [
        _cut("ok", 3.0, "THE CAT"),
        _cut("long", 31.0, "THE CAT"),
        _cut("empty", 2.0, " "),
        _cut("wordy", 3.0, " ".join(["RIVER STONE"] * 20)),
        _cut("short", 0.1, "A"),
    ]
    with caplog.at_level(logging.WARNING):
        kept = filter_cuts(cuts, tokenizer=tokenizer, max_tokens=24, min_duration=0.5, where="train")
    assert [c.id for c in kept] == ["ok"]
    msg = caplog.text
    for reason in (
        "longer than 30 s (the encoder's window)",
        "empty transcript",
        "response_length 24",
        "shorter than 0.5 s",
    ):
        assert reason in msg
    assert "kept 1 of 5 cuts" in msg
    with pytest.raises(ValueError, match=r"train: cut long: longer than 30 s .*strict mode"):
        filter_cuts(cuts, tokenizer=tokenizer, max_tokens=24, where="train", strict=True)


def test_features_stage_skips_unreadable_audio(tmp_path):
    from recipe_utils import make_corpus

    make_corpus(tmp_path / "dl", n_train=3, n_dev=1, n_test=1)
    flacs = sorted((tmp_path / "dl/LibriSpeech/train-clean-100").rglob("*.flac"))
    corrupt, vanishing = flacs[0], flacs[1]
    corrupt.write_bytes(b"this is not audio")
    # The smoke config's data, its manifests under tmp_path.
    cfg = [
        "--config",
        str(ROOT / "egs/librispeech/conf/smoke.yaml"),
        "--set",
        f"data.raw_manifest_dir={tmp_path}/manifests",
        "--set",
        f"data.manifest_dir={tmp_path}/fbank",
    ]
    out = run(
        [
            "python",
            "-m",
            "local.prepare_manifests",
            *cfg,
            "--corpus-dir",
            str(tmp_path / "dl/LibriSpeech"),
            "--parts",
            "train-clean-100",
        ],
        tmp_path.parent,
    )
    assert f"{corrupt}: unreadable audio" in out and "1 unreadable files left out" in out
    vanishing.unlink()  # lost after the manifests were made: the features stage names it and goes on
    out = run(["python", "-m", "local.compute_fbank", *cfg, "--parts", "train-clean-100"], tmp_path.parent)
    assert vanishing.stem in out and "skipped" in out
    from lhotse import load_manifest

    cuts = load_manifest(tmp_path / "fbank/librispeech_cuts_train-clean-100.jsonl.gz")
    assert len(cuts) == 1 and all(c.has_features for c in cuts)
    # A rerun with the same options finds the finished part and does nothing; other options redo it.
    again = run(["python", "-m", "local.compute_fbank", *cfg, "--parts", "train-clean-100"], tmp_path.parent)
    assert "already exists - skipping" in again


def test_first_pass_records_round_trip_and_errors(tmp_path):
    recs = [{"id": "a", "text": "HELLO", "nbest": [{"text": "HELLO", "score": -1.0}]}]
    write_records(tmp_path / "p.jsonl.gz", recs)
    assert read_records(tmp_path / "p.jsonl.gz") == {"a": recs[0]}
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"id": "a", "text": "x"}\n{"nope": 1}\n'))
    with pytest.raises(ValueError, match=r"bad.jsonl.gz:2: not a first-pass record"):
        read_records(tmp_path / "bad.jsonl.gz")
    with pytest.raises(FileNotFoundError, match="run the first-pass stage"):
        read_records(tmp_path / "missing.jsonl.gz")


def test_token_confidences_follow_their_words(tokenizer):
    from whisper_llada.inference import token_confidences

    rec = {
        "id": "x",
        "text": "THE CAT SAT",
        "words": [{"word": "THE", "conf": 0.9}, {"word": "CAT", "conf": 0.2}, {"word": "SAT", "conf": 0.7}],
    }
    conf = token_confidences(tokenizer, rec)
    assert len(conf) == len(tokenizer.encode("THE CAT SAT"))
    assert conf[0] == 0.9 and min(conf) == 0.2
    with pytest.raises(ValueError, match="no word confidences"):
        token_confidences(tokenizer, {"id": "y", "text": "THE"})


def test_whisper_feature_settings_must_match(tmp_path):
    import json

    import pytest

    from whisper_llada.data.features import check_feature_settings

    d = tmp_path / "whisper-large-v3"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"num_mel_bins": 128}))
    pre = {"feature_size": 128, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 30}
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    check_feature_settings(d, 128)  # agrees: no error
    with pytest.raises(ValueError, match=r"config.json: the encoder takes 128 mel bins, the recipe's features have 80"):
        check_feature_settings(d, 80)
    (d / "preprocessor_config.json").write_text(json.dumps({**pre, "hop_length": 320}))
    with pytest.raises(ValueError, match=r"preprocessor_config.json: hop_length is 320, .* use 160"):
        check_feature_settings(d, 128)
