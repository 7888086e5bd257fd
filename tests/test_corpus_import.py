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

from whisper_llada.config.recipe import load_recipe_config
from whisper_llada.data.text_norm import get_normalizer

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

    from whisper_llada.corpora.manifests import prepare_manifests
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


def _mixed_kaldi_dir(d):
    """Recordings as real Kaldi directories hold them: a 16 kHz wav, wav.scp pipe commands (a wav, a
    FLAC), 8 kHz, 44.1 kHz stereo, a stereo file split into two recording ids by reco2file_and_channel,
    recordings that ``segments`` cuts in two, a missing file and a failing command.
    Returns {utterance: (duration in seconds, or None when it cannot be read)}."""
    import soundfile as sf

    a = d / "audio"
    a.mkdir(parents=True)
    rng = np.random.default_rng(1)

    def noise(seconds, rate, channels=1, level=0.1):
        return (level * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)

    sf.write(a / "plain.wav", noise(1.5, 16000), 16000)
    sf.write(a / "piped.wav", noise(1.2, 16000), 16000)
    sf.write(a / "piped.flac", noise(1.1, 22050), 22050)
    sf.write(a / "narrow.wav", noise(1.0, 8000), 8000)
    sf.write(a / "cd.flac", noise(1.3, 44100, 2), 44100)
    # Channel A nearly silent, channel B loud: the features tell which one was read.
    sf.write(a / "call.wav", np.concatenate([noise(1.6, 16000, level=1e-4), noise(1.6, 16000)], axis=1), 16000)
    sf.write(a / "long.wav", noise(2.0, 16000), 16000)
    (d / "wav.scp").write_text(
        f"plain {a}/plain.wav\n"
        f"piped echo run >> {d.parent}/runs; cat {a}/piped.wav |\n"
        f"pipedflac cat {a}/piped.flac |\n"
        f"narrow {a}/narrow.wav\n"
        f"cd {a}/cd.flac\n"
        f"call {a}/call.wav\n"
        f"long {a}/long.wav\n"
        f"gone {a}/gone.wav\n"
        f"broken cat {a}/gone.flac |\n"
    )
    (d / "reco2file_and_channel").write_text("call-A call A\ncall-B call B\n")
    segs = [
        ("u-plain", "plain", 0, -1, 1.5),
        ("u-piped-0", "piped", 0, 0.6, 0.6),
        ("u-piped-1", "piped", 0.6, 1.2, 0.6),
        ("u-pipedflac", "pipedflac", 0, -1, 1.1),
        ("u-narrow", "narrow", 0, 1.3, 1.0),  # ends after the audio: cut at its end
        ("u-cd", "cd", 0, -1, 1.3),
        ("u-call-a", "call-A", 0.1, 1.5, 1.4),
        ("u-call-b", "call-B", 0.2, 1.6, 1.4),
        ("u-long-0", "long", 0.1, 0.9, 0.8),
        ("u-long-1", "long", 1.0, 1.9, 0.9),
        ("u-gone", "gone", 0, -1, None),
        ("u-broken", "broken", 0, -1, None),
    ]
    (d / "segments").write_text("".join(f"{u} {r} {s} {e}\n" for u, r, s, e, _ in segs))
    (d / "text").write_text("".join(f"{u} WORDS OF {u.upper()}\n" for u, *_ in segs))
    (d / "utt2spk").write_text("".join(f"{u} {r}\n" for u, r, *_ in segs))
    (d / "spk2gender").write_text("plain f\n")
    (d / "reco2dur").write_text("plain 1.5\nnarrow 2.5\n")
    return {u: dur for u, *_, dur in segs}


def test_kaldi_dir_reads_each_recordings_rate_channels_and_pipe_commands(tmp_path, caplog):
    """Pipe commands need no kaldi_native_io, 8 kHz and 44.1 kHz stereo recordings are read as they
    are (and resampled, one channel read, by the features stage); only what cannot be read is left
    out, with its reason; a changed wav.scp redoes the part."""
    from lhotse import load_manifest

    from whisper_llada.corpora.manifests import prepare_manifests
    from whisper_llada.data.dropped import read_dropped
    from whisper_llada.data.features import compute_whisper_fbank

    want = _mixed_kaldi_dir(tmp_path / "kaldi/train")
    cfg = _cfg(tmp_path, corpus="kaldi", prefix="k", train_parts="[train]", dev_parts="[]", test_parts="[]")
    d = cfg.data
    with caplog.at_level(logging.INFO):
        prepare_manifests(d, tmp_path / "kaldi", nj=2)
    recs = {r.id: r for r in load_manifest(d.manifest_path("recordings", "train"))}
    got = {r: (x.sampling_rate, x.num_channels, x.sources[0].type) for r, x in recs.items()}
    assert got == {
        "plain": (16000, 1, "file"),
        "piped": (16000, 1, "command"),
        "pipedflac": (22050, 1, "command"),
        "narrow": (8000, 1, "file"),
        "cd": (44100, 2, "file"),
        "call-A": (16000, 2, "file"),
        "call-B": (16000, 2, "file"),
        "long": (16000, 1, "file"),
    }
    assert recs["piped"].duration == pytest.approx(1.2) and recs["cd"].num_samples == round(1.3 * 44100)
    sups = {s.id: s for s in load_manifest(d.manifest_path("supervisions", "train"))}
    assert (sups["u-call-a"].channel, sups["u-call-b"].channel, sups["u-cd"].channel) == (0, 1, [0, 1])
    assert sups["u-plain"].gender == "f" and sups["u-plain"].speaker == "plain"
    dropped = {e["id"]: e for e in read_dropped(tmp_path / "manifests/k_dropped_train.jsonl")}
    assert sorted(dropped) == ["u-broken", "u-gone"]
    assert "file not found" in dropped["u-gone"]["reason"] and dropped["u-gone"]["file"].endswith("gone.wav")
    assert "command failed (exit status 1: cat: " in dropped["u-broken"]["reason"]
    assert dropped["u-broken"]["file"].endswith("gone.flac |") and dropped["u-broken"]["text"] == "WORDS OF U-BROKEN"
    assert "recording broken (cat " in caplog.text and "2 utterances left out" in caplog.text
    assert (tmp_path / "kaldi/runs").read_text() == "run\n"  # the command ran once
    assert "1 recordings are not as long as reco2dur says (e.g. narrow: 2.500 s, its audio 1.000 s)" in caplog.text
    assert "1 segments end up to 0.5 s after their recording: cut at its end (e.g. u-narrow)" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO):
        compute_whisper_fbank(
            d.manifest_path("recordings", "train"),
            d.manifest_path("supervisions", "train"),
            d.cuts_path("train"),
            tmp_path / "fbank/feats",
            80,
            nj=1,
        )
    cuts = {c.id: c for c in load_manifest(d.cuts_path("train"))}
    assert sorted(cuts) == sorted(u for u, dur in want.items() if dur)
    for u, dur in want.items():
        if dur:
            assert cuts[u].duration == pytest.approx(dur, abs=1e-3), u
            assert abs(cuts[u].load_features().shape[0] - 100 * dur) <= 2, u
    assert cuts["u-call-b"].load_features().mean() > cuts["u-call-a"].load_features().mean() + 1
    fbank_dropped = read_dropped(tmp_path / "fbank/k_dropped_train.jsonl")
    assert sorted(e["id"] for e in fbank_dropped) == ["u-broken", "u-gone"]  # carried on, nothing more
    for rate in (8000, 22050, 44100):
        assert f"train: 1 recordings at {rate} Hz resampled to 16000 Hz" in caplog.text
    # The stereo file read from channel 0, and the two recordings reco2file_and_channel makes of one file.
    assert "train: 2 multi-channel recordings: channel 0 read (e.g. " in caplog.text
    assert "train: 1 multi-channel recordings: channel 1 read (e.g. " in caplog.text
    # Once for both of its segments: the features stage keeps a command's output while it is used.
    assert (tmp_path / "kaldi/runs").read_text() == "run\n" * 2

    caplog.clear()
    with caplog.at_level(logging.INFO):
        prepare_manifests(d, tmp_path / "kaldi", nj=2)
    assert "made from the same inputs and options" in caplog.text
    for name in ("wav.scp", "segments", "text", "utt2spk"):  # the unreadable ones taken out
        p = tmp_path / "kaldi/train" / name
        keep = [
            line for line in p.read_text().splitlines() if line.split()[0].removeprefix("u-") not in ("gone", "broken")
        ]
        p.write_text("".join(line + "\n" for line in keep))
    prepare_manifests(d, tmp_path / "kaldi", nj=2)
    assert "is stale: input" in caplog.text
    assert read_dropped(tmp_path / "manifests/k_dropped_train.jsonl") == []
    assert len(load_manifest(d.manifest_path("supervisions", "train"))) == 10


def test_kaldi_dir_refuses_what_it_cannot_import(tmp_path):
    from whisper_llada.corpora.kaldi_dir import read_kaldi_dir

    d = tmp_path / "dir"
    d.mkdir()
    (d / "wav.scp").write_text("r1 /nowhere/r1.wav\nr1 /nowhere/again.wav\n")
    (d / "utt2spk").write_text("r1 s\n")
    (d / "text").write_text("r1 A\n")
    with pytest.raises(ValueError, match=r"wav.scp:2: 'r1' is listed twice"):
        read_kaldi_dir(d)
    (d / "wav.scp").write_text("r1 /nowhere/r1.wav\n")
    with pytest.raises(RuntimeError, match=r"none of its 1 recordings can be read \(e.g. r1: .*file not found"):
        read_kaldi_dir(d)
    (d / "reco2file_and_channel").write_text("r1 r1 C2\n")
    with pytest.raises(ValueError, match=r"reco2file_and_channel: 'r1': channel 'C2' is neither"):
        read_kaldi_dir(d)


def test_one_cut_per_segment_reads_a_whole_recordings_channel():
    """An utterance on one channel of a stereo recording (reco2file_and_channel) is a cut of that
    channel even when it spans the recording; on all channels it stays whole (the features stage
    reads the configured one)."""
    from lhotse import AudioSource, CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from whisper_llada.data.features import one_cut_per_segment

    rec = Recording(
        "call-B", [AudioSource("file", [0, 1], "/x.wav")], sampling_rate=8000, num_samples=8000, duration=1.0
    )

    def cuts(channel):
        sup = SupervisionSegment("u", "call-B", 0, 1.0, channel=channel)
        return CutSet.from_manifests(RecordingSet.from_recordings([rec]), SupervisionSet.from_segments([sup]))

    (cut,) = one_cut_per_segment(cuts(1))
    assert (cut.id, cut.channel, cut.duration) == ("u", 1, 1.0)
    stereo = cuts([0, 1])
    assert one_cut_per_segment(stereo) is stereo


def test_manifests_stage_errors_name_the_problem(tmp_path):
    from whisper_llada.corpora.manifests import prepare_manifests

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
        "from whisper_llada.config.recipe import load_recipe_config\n"
        "for c in sorted(Path('egs/espeak_fortunes/conf').glob('*.yaml')):\n"
        "    cfg = load_recipe_config(c)\n"
        "    cfg.decode_settings(), cfg.deliberate_settings()\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('whisper_llada'))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_kaldi_recording_without_segments_is_decoded_in_pieces(tmp_path):
    """A 23.5-s recording with no segments file (one transcript for the whole recording) imports as
    one cut, which the test-part loader gives as pieces within the smoke window (10 s) and the
    scoring joins back into one row with the whole transcript."""
    import soundfile as sf

    from whisper_llada.corpora.manifests import prepare_manifests
    from whisper_llada.data.features import compute_whisper_fbank
    from whisper_llada.data.pieces import is_piece
    from whisper_llada.data.text_norm import get_normalizer
    from whisper_llada.inference import load_test_part
    from whisper_llada.scoring.wer import read_recogs, write_results

    d = tmp_path / "kaldi/test"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    burst, pause = 0.1 * rng.standard_normal(4 * 16000), np.zeros(8000)
    sf.write(d / "lecture.wav", np.concatenate([burst, pause] * 5 + [burst[:16000]]).astype(np.float32), 16000)
    (d / "wav.scp").write_text(f"lecture {d / 'lecture.wav'}\n")
    (d / "text").write_text("lecture ONE TWO THREE FOUR FIVE SIX\n")
    (d / "utt2spk").write_text("lecture lecture\n")
    cfg = _cfg(tmp_path, corpus="kaldi", prefix="k", train_parts="[]", dev_parts="[]", test_parts="[test]")
    prepare_manifests(cfg.data, tmp_path / "kaldi", nj=1)
    data = cfg.data
    compute_whisper_fbank(
        data.manifest_path("recordings", "test"),
        data.manifest_path("supervisions", "test"),
        data.cuts_path("test"),
        tmp_path / "fbank/feats",
        80,
    )
    norm = get_normalizer("librispeech")
    cuts, rows, left = load_test_part(cfg, "test", norm)
    assert not rows and not left and cfg.data.decode_window == 10
    pieces = sorted(cuts, key=lambda c: c.id)
    assert len(pieces) == 3 and all(is_piece(c.id) and c.duration <= 10 for c in pieces)
    assert sum(c.duration for c in pieces) == pytest.approx(23.5, abs=0.02)
    # Each boundary falls in one of the half-second pauses that follow every 4-s burst.
    ends = np.cumsum([c.duration for c in pieces])[:-1]
    assert all(any(4.5 * k - 0.5 <= e <= 4.5 * k for k in range(1, 6)) for e in ends), ends
    results = [(c.id, norm(" ".join(s.text for s in c.supervisions)).split(), [c.id[-1]]) for c in pieces]
    write_results(tmp_path / "out", "test", "s", results, "none")
    ((cut_id, ref, hyp),) = read_recogs(tmp_path / "out/recogs-test-s.txt")
    assert (cut_id, ref, hyp) == ("lecture", "ONE TWO THREE FOUR FIVE SIX".split(), ["0", "1", "2"])
