"""Corpus-agnostic data stages (Kaldi data directories with segments, ready lhotse manifests,
skipping), the one cut loader (lazy and eager), the normaliser, config bases and run.sh options."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from recipe_utils import ROOT

from whisper_llada.data.text_norm import get_normalizer
from whisper_llada.recipe import load_recipe_config

SMOKE = ROOT / "egs/librispeech/conf/smoke.yaml"


def _kaldi_dir(d, segments: bool = True):
    """Two 3-second recordings of noise, two utterances each (with segments) or one each."""
    import soundfile as sf

    (d / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for r in range(2):
        wav = d / "audio" / f"r{r}.wav"
        sf.write(wav, (0.1 * rng.standard_normal(48000)).astype(np.float32), 16000)
        rows.append((f"r{r}", wav))
    (d / "wav.scp").write_text("".join(f"{r} {w}\n" for r, w in rows))
    if segments:
        utts = [
            (f"s{r}-u{j}", f"r{r}", 0.2 + 1.4 * j, 1.4 + 1.4 * j, f"WORD{r} CAFÉ SHE’S {j}")
            for r in range(2)
            for j in range(2)
        ]
        (d / "segments").write_text("".join(f"{u} {r} {s:.2f} {e:.2f}\n" for u, r, s, e, _ in utts))
    else:
        utts = [(r, r, 0.0, 3.0, f"WORD {r}") for r, _ in rows]
    (d / "text").write_text("".join(f"{u} {t}\n" for u, *_, t in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u, *_ in utts))
    return utts


def _cfg(tmp_path, **data):
    sets = [f"data.raw_manifest_dir={tmp_path}/manifests", f"data.manifest_dir={tmp_path}/fbank"]
    sets += [f"data.{k}={v}" for k, v in data.items()]
    return load_recipe_config(SMOKE, sets)


def test_kaldi_dir_with_segments_gives_one_cut_per_segment(tmp_path, caplog):
    """The features stage used to crash on segments (lhotse's lazy trim_to_supervisions has no len)."""
    from lhotse import load_manifest

    from whisper_llada.data.corpus import prepare_manifests
    from whisper_llada.data.features import compute_whisper_fbank

    utts = _kaldi_dir(tmp_path / "kaldi/train")
    cfg = _cfg(tmp_path, corpus="kaldi", prefix="k", train_parts="[train]", dev_parts="[]", test_parts="[]")
    prepare_manifests(cfg.data, tmp_path / "kaldi", nj=1)
    d = cfg.data
    assert len(load_manifest(d.manifest_path("recordings", "train"))) == 2
    assert len(load_manifest(d.manifest_path("supervisions", "train"))) == 4
    compute_whisper_fbank(
        d.manifest_path("recordings", "train"),
        d.manifest_path("supervisions", "train"),
        d.cuts_path("train"),
        tmp_path / "fbank/feats",
        80,
        nj=2,
    )
    cuts = {c.id: c for c in load_manifest(d.cuts_path("train"))}
    assert sorted(cuts) == sorted(u for u, *_ in utts)
    for u, _, start, end, text in utts:
        assert cuts[u].duration == pytest.approx(end - start, abs=1e-3)
        assert cuts[u].supervisions[0].start == 0 and cuts[u].supervisions[0].text == text
        assert cuts[u].load_features().shape == (round(100 * (end - start)), 80)
    # A rerun skips; with the Kaldi directory gone the manifests still count as done.
    with caplog.at_level(logging.INFO):
        prepare_manifests(cfg.data, tmp_path / "kaldi", nj=1)
    assert "already exists - skipping" in caplog.text
    (tmp_path / "kaldi/train/wav.scp").rename(tmp_path / "wav.scp")
    (tmp_path / "kaldi/train").rename(tmp_path / "gone")
    prepare_manifests(cfg.data, tmp_path / "kaldi", nj=1)


def test_manifests_stage_errors_name_the_problem(tmp_path):
    from whisper_llada.data.corpus import prepare_manifests

    _kaldi_dir(tmp_path / "kaldi/train", segments=False)
    cfg = _cfg(tmp_path, corpus="kaldi", prefix="k", train_parts="[train]", dev_parts="[dev]", test_parts="[]")
    with pytest.raises(FileNotFoundError, match=r"kaldi/dev: part 'dev' of the config"):
        prepare_manifests(cfg.data, tmp_path / "kaldi")
    (tmp_path / "kaldi/dev").mkdir()
    (tmp_path / "kaldi/dev/wav.scp").write_text("")
    with pytest.raises(FileNotFoundError, match=r"kaldi/dev: not a Kaldi data directory.*text, utt2spk missing"):
        prepare_manifests(cfg.data, tmp_path / "kaldi")
    lhotse_cfg = _cfg(tmp_path, corpus="lhotse", prefix="k", train_parts="[train]", dev_parts="[]", test_parts="[]")
    lhotse_cfg.data.raw_manifest_dir = str(tmp_path / "copy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"k_recordings_train.jsonl.gz: lhotse recordings manifest"):
        prepare_manifests(lhotse_cfg.data, tmp_path / "empty")
    # Ready lhotse manifests (here: the Kaldi import's, train was done before dev failed) are
    # checked and copied into place.
    prepare_manifests(lhotse_cfg.data, tmp_path / "manifests")
    assert (tmp_path / "copy/k_supervisions_train.jsonl.gz").read_bytes() == (
        tmp_path / "manifests/k_supervisions_train.jsonl.gz"
    ).read_bytes()


def _cuts_file(path, n: int, mel: int = 80):
    from lhotse import CutSet, Features, MonoCut, SupervisionSegment

    cuts = []
    for i in range(n):
        dur = 1.0 + i % 7
        f = Features(
            type="whisper-fbank",
            num_frames=int(dur * 100),
            num_features=mel,
            frame_shift=0.01,
            sampling_rate=16000,
            start=0,
            duration=dur,
            storage_type="lilcom_chunky",
            storage_path="/x",
            storage_key="0",
            recording_id=f"c{i}",
            channels=0,
        )
        text = "" if i % 10 == 3 else f"HELLO {i}"
        cuts.append(
            MonoCut(
                id=f"c{i:03d}",
                start=0,
                duration=dur,
                channel=0,
                features=f,
                supervisions=[
                    SupervisionSegment(id=f"c{i:03d}", recording_id=f"c{i}", start=0, duration=dur, text=text)
                ],
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    CutSet.from_cuts(cuts).to_file(path)


def test_one_cut_loader_lazy_equals_eager_and_checks_parts(tmp_path, caplog):
    from whisper_llada.data.cuts import load_part_cuts

    cfg = _cfg(tmp_path)
    _cuts_file(cfg.data.cuts_path("train-clean-100"), 40)
    with caplog.at_level(logging.INFO):
        eager = load_part_cuts(cfg.data, ["train-clean-100"], "train", min_duration=1.5)
        lazy = load_part_cuts(cfg.data, ["train-clean-100"], "train", lazy=True, min_duration=1.5, dropped=(d := []))
    assert not eager.is_lazy and lazy.is_lazy
    assert caplog.text.count("kept 30 of 40 cuts") == 1  # the lazy set has not been read yet
    assert [c.id for c in lazy] == [c.id for c in eager] and len(d) == 10
    assert caplog.text.count("kept 30 of 40 cuts") == 2
    assert [c.id for c in lazy] == [c.id for c in eager] and len(d) == 10  # a second pass says nothing more
    assert caplog.text.count("kept 30 of 40 cuts") == 2
    with pytest.raises(
        FileNotFoundError, match=r"librispeech_cuts_dev-clean.jsonl.gz: cut manifest of part 'dev-clean'"
    ):
        load_part_cuts(cfg.data, ["dev-clean"], "dev")
    _cuts_file(cfg.data.cuts_path("test-clean"), 2, mel=128)
    with pytest.raises(ValueError, match=r"features of 128 mel bins, but data.num_mel_bins is 80"):
        load_part_cuts(cfg.data, ["test-clean"], "test")


def test_normaliser_folds_accents_and_reports_what_it_removes(caplog):
    cfg = load_recipe_config(SMOKE)
    norm = cfg.data.text_normalizer()
    assert norm("Café naïve, SHE’S ‘quoted’ 'here'") == "CAFE NAIVE SHE'S QUOTED HERE"
    spelled = load_recipe_config(SMOKE, ["data.accents=keep", "data.digits=spell"])
    keep = spelled.data.text_normalizer()
    assert keep("Café 21st, 1990") == "CAFÉ TWENTY FIRST ONE THOUSAND NINE HUNDRED AND NINETY"
    # Scoring treats references as the training targets were treated.
    assert spelled.score.normalizer == "librispeech:accents=keep,digits=spell"
    assert get_normalizer(spelled.score.normalizer)("Café 1990") == keep("Café 1990")
    assert load_recipe_config(SMOKE).score.normalizer == "librispeech"
    with caplog.at_level(logging.WARNING):
        for t in ("50% & more", "plain, text.", "ø"):
            norm(t)
        norm.report("train-clean-100")
        norm.report("train-clean-100")
    assert caplog.text.count("normaliser removed") == 1
    assert "removed 3 characters" in caplog.text and "'%' x1" in caplog.text and "50% & more" in caplog.text
    with pytest.raises(ValueError, match="data.accents"):
        load_recipe_config(SMOKE, ["data.accents=strip"])


def test_config_bases_merge_and_ctc_config_follows_its_file(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/data.yaml").write_text("data: {prefix: mine, train_parts: [t]}\n")
    (tmp_path / "a/x.yaml").write_text(f"base: [{SMOKE}, data.yaml]\ntrain: {{num_epochs: 7}}\n")
    monkeypatch.chdir(ROOT / "egs/librispeech")
    cfg = load_recipe_config(tmp_path / "a/x.yaml")
    assert (cfg.data.prefix, cfg.data.train_parts, cfg.data.num_mel_bins, cfg.data.vocab_size) == (
        "mine",
        ["t"],
        80,
        60,
    )
    assert cfg.train.num_epochs == 7 and cfg.train.max_duration == 20  # merged key by key
    assert cfg.firstpass.ctc_config == "conf/smoke_ctc.yaml"  # named in smoke.yaml, relative to it
    (tmp_path / "a/loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="include itself"):
        load_recipe_config(tmp_path / "a/loop.yaml")
    # A decoding's default averaging (train.avg) must fit the epochs, inherited or not.
    assert load_recipe_config(tmp_path / "a/x.yaml", ["train.avg=7"]).train.avg == 7
    (tmp_path / "a/short.yaml").write_text("base: x.yaml\ntrain: {num_epochs: 1}\n")
    with pytest.raises(ValueError, match=r"short.yaml: train.avg 2 must lie in 1..train.num_epochs \(1"):
        load_recipe_config(tmp_path / "a/short.yaml", ["train.avg=2"])


def _sh(*args, cwd=ROOT):
    p = subprocess.run(["bash", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "abc"], "--stage 'abc': not a stage number"),
        (["--stop-stage", "-1"], "--stop-stage '-1': not a stage number"),
        (["--stage", "99"], "--stage 99: this recipe's stages are 0..10"),
        (["--stage", "5", "--stop-stage", "4"], "--stop-stage 4 is before --stage 5"),
        (["--no-such", "1"], "unknown option --no-such"),
    ],
)
def test_run_sh_refuses_bad_stage_arguments(args, message):
    rc, out = _sh("egs/librispeech/run.sh", *args)
    assert rc == 1 and message in out


def test_run_sh_does_not_download_into_a_mistyped_dir(tmp_path):
    rc, out = _sh("egs/librispeech/run.sh", "--dl-dir", tmp_path / "typo", "--stop-stage", "0", "--device", "cpu")
    assert rc == 1 and "LibriSpeech not found" in out and "--stage 0" in out and "61 GB" in out
    assert not (tmp_path / "typo").exists()


def test_run_sh_help_prints_its_defaults():
    rc, out = _sh("egs/librispeech/run.sh", "--help")
    assert rc == 0 and "(default conf/whisper_llada.yaml)" in out and "(default 4)" in out and "$PWD/download" in out
    rc, out = _sh("egs/kaldi_datadir/run.sh")
    assert rc == 1 and "--data-dir is required" in out


def test_kaldi_recipe_is_short():
    lines = sum(
        len(p.read_text().splitlines())
        for p in (ROOT / "egs/kaldi_datadir").rglob("*")
        if p.is_file() and p.suffix in (".sh", ".yaml")
    )
    assert lines <= 40


def test_stage_scripts_answer_help_without_heavy_imports():
    """``local/*.py --help`` answers at once: torch, lhotse and transformers load inside main()."""
    import sys

    for script in sorted((ROOT / "local").glob("*.py")):
        if script.name == "__init__.py":
            continue
        p = subprocess.run(
            [sys.executable, "-X", "importtime", str(script), "--help"], capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0 and "usage:" in p.stdout, script
        loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if "|" in line}
        assert not loaded & {"torch", "lhotse", "transformers"}, (
            script.name,
            loaded & {"torch", "lhotse", "transformers"},
        )


def test_reading_a_recipe_config_imports_no_torch():
    """The shell recipes read configs through local/config_value.py about 25 times a run: loading
    a config (every arch's model section and decode settings) must not import torch (2 s a call)."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from whisper_llada.recipe import load_recipe_config\n"
        "for c in sorted(Path('egs/espeak_fortunes/conf').glob('*.yaml')):\n"
        "    cfg = load_recipe_config(c)\n"
        "    cfg.decode_settings(), cfg.deliberate_settings()\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('whisper_llada'))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
