"""Faults a demanding Kaldi/icefall user meets, each tried on purpose: the message must name the file,
nothing may be lost without a record, and a rerun after the fix must give what a clean run gives.

The first tests are quick (one piece of code each); those marked slow run the stages on a tiny
spoken corpus.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch

from whisper_llada.utils.checkpoint_io import atomic_write_text


def _cut(cut_id: str, duration: float, text: str):
    from lhotse import MonoCut, Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    rec = Recording(
        id=cut_id,
        sources=[AudioSource(type="file", channels=[0], source=f"/audio/{cut_id}.flac")],
        sampling_rate=16000,
        num_samples=int(duration * 16000),
        duration=duration,
    )
    sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0, duration=duration, text=text)
    return MonoCut(id=cut_id, start=0, duration=duration, channel=0, recording=rec, supervisions=[sup])


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------- writes (item 7)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = atomic_write_text(tmp_path / "sub" / "result.txt", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert not list((tmp_path / "sub").glob(".tmp-*"))  # no temporary file left


def test_plot_is_written_atomically_with_labelled_points(tmp_path, monkeypatch):
    import matplotlib.axes

    from whisper_llada.scoring import compare

    labels = []
    real = matplotlib.axes.Axes.annotate
    monkeypatch.setattr(
        matplotlib.axes.Axes, "annotate", lambda self, text, *a, **k: labels.append(text) or real(self, text, *a, **k)
    )
    rows = [
        {
            "name": "decoding/steps-16-a-very-long-setting-name-that-must-not-be-cut-short",
            "kind": "decoding",
            "test": "test-clean",
            "wer": 10.0,
            "rtf": 0.1,
        },
        {"name": "whisper/beam-5", "kind": "first_pass", "test": "test-clean", "wer": 12.0, "rtf": 0.05},
    ]
    compare.plot(rows, tmp_path / "wer-vs-rtf.png")
    assert (tmp_path / "wer-vs-rtf.png").stat().st_size > 1000
    assert stat.S_IMODE((tmp_path / "wer-vs-rtf.png").stat().st_mode) == 0o666 & ~_umask()
    assert sorted(labels) == sorted(f"{r['name']} ({r['test']})" for r in rows)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ---------------------------------------------------------------- config types (item 5)


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("data.train_parts=train-clean-100", "data.train_parts: 'train-clean-100'", "is not a list"),
        ("train.num_epochs=2.5", "train.num_epochs: 2.5", "is not an int"),
        ("train.max_duration=[20]", "train.max_duration: [20]", "is not a float"),
        ("data.strict=yes please", "data.strict: 'yes please'", "is not a bool"),
    ],
)
def test_config_types_are_checked_when_read(override, key, expected):
    from whisper_llada.config.recipe import load_recipe_config

    conf = Path(__file__).resolve().parent.parent / "egs/librispeech/conf/smoke.yaml"
    with pytest.raises(ValueError) as e:
        load_recipe_config(conf, [override])
    assert str(e.value).startswith(f"{conf}: {key} {expected}"), e.value


def test_config_numbers_and_unions_still_read():
    from whisper_llada.config.recipe import DecodeConfig, TrainConfig
    from whisper_llada.utils.config import from_dict

    t = from_dict(TrainConfig, {"lr": "3e-4", "num_epochs": 2.0, "max_cuts": None, "max_duration": 20}, "x")
    assert (t.lr, t.num_epochs, t.max_duration) == (3e-4, 2, 20.0) and isinstance(t.num_epochs, int)
    assert from_dict(DecodeConfig, {"mode": "decoding", "gen_len": "auto"}, "x").gen_len == "auto"


# ---------------------------------------------------------------- reads that fail (item 6)


def test_truncated_manifest_is_named_with_what_to_do(tmp_path):
    from lhotse import CutSet

    from whisper_llada.data.manifests_io import ManifestError, check_manifest, read_cuts, read_manifest

    path = tmp_path / "librispeech_cuts_test-clean.jsonl.gz"
    CutSet.from_cuts([_cut(f"u{i}", 2.0, "THE CAT " * 20) for i in range(200)]).to_file(path)
    assert check_manifest(path) == 200
    _truncate(path)
    for read in (check_manifest, read_manifest, lambda p: read_cuts(p, lazy=True)):
        with pytest.raises(
            ManifestError,
            match=re.escape(str(path)) + r".*truncated or damaged: delete it and rerun "
            r"the features stage",
        ):
            read(path)
    with pytest.raises(FileNotFoundError, match="run the manifests stage"):
        read_manifest(tmp_path / "librispeech_recordings_x.jsonl.gz")


def test_truncated_first_pass_records_are_named(tmp_path):
    from whisper_llada.firstpass.records import read_records, write_records

    path = tmp_path / "whisper" / "test-clean.jsonl.gz"
    write_records(path, [{"id": f"u{i}", "text": "THE CAT " * 30, "nbest": []} for i in range(300)])
    _truncate(path)
    with pytest.raises(
        ValueError,
        match=re.escape(str(path)) + r".*truncated or damaged: delete it and rerun the "
        r"first-pass stage",
    ):
        read_records(path)


def _fake_checkpoint(path: Path, batch: int, model_cfg: dict | None = None) -> None:
    torch.save(
        {
            "model": {"w": torch.ones(2)},
            "params": {"batch_idx_train": batch, "epoch": 1, "config": {"model": model_cfg or {"d": 1}}},
        },
        path,
    )


def test_truncated_checkpoint_is_named_and_skipped_when_resuming(tmp_path, caplog):
    from whisper_llada.checkpoint.files import CheckpointError, read_checkpoint
    from whisper_llada.training.checkpoint import find_resume_point

    for b in (2, 4, 6):
        _fake_checkpoint(tmp_path / f"checkpoint-{b}.pt", b)
    _fake_checkpoint(tmp_path / "epoch-1.pt", 6)  # end of epoch 1 = batch 6: later than checkpoint-6
    assert find_resume_point(tmp_path).name == "epoch-1.pt"
    (tmp_path / "epoch-1.pt").unlink()
    _fake_checkpoint(tmp_path / "checkpoint-8.pt", 8)
    _truncate(tmp_path / "checkpoint-8.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint-8.pt: cannot read this checkpoint .* truncated or damaged"):
        read_checkpoint(tmp_path / "checkpoint-8.pt")
    with caplog.at_level(logging.WARNING):
        assert find_resume_point(tmp_path).name == "checkpoint-6.pt"
    assert "checkpoint-8.pt: cannot read this checkpoint" in caplog.text


def test_checkpoints_after_the_start_are_set_aside_and_keep_last_k_keeps_this_runs(tmp_path):
    from whisper_llada.training.checkpoint import remove_old_checkpoints, supersede_later_checkpoints

    for b in (3, 6, 9, 12):  # a killed run got to batch 12; this one resumes after batch 3
        _fake_checkpoint(tmp_path / f"checkpoint-{b}.pt", b)
    _fake_checkpoint(tmp_path / "epoch-1.pt", 10)
    supersede_later_checkpoints(tmp_path, 3, 0)
    _fake_checkpoint(tmp_path / "checkpoint-5.pt", 5)
    remove_old_checkpoints(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint-5.pt"]
    assert len(list(tmp_path.glob("*.superseded"))) == 4


def test_resuming_with_another_model_config_is_refused_naming_the_difference():
    from whisper_llada.training.checkpoint import check_same_model_config

    saved = {"model": {"llm": {"config": {"d_model": 64}}, "arch": "whisper_llada"}, "train": {"num_epochs": 2}}
    check_same_model_config("x.pt", saved, {**saved, "train": {"num_epochs": 3}})  # training settings may change
    now = {"model": {"llm": {"config": {"d_model": 32}}, "arch": "whisper_llada"}, "train": {"num_epochs": 2}}
    with pytest.raises(
        ValueError, match=r"x.pt: was trained with another model config.*model.llm.config.d_model: 64 -> 32"
    ):
        check_same_model_config("x.pt", saved, now)


# ---------------------------------------------------------------- stage records (item 2)


def test_stage_record_redoes_exactly_what_is_stale(tmp_path, caplog):
    from whisper_llada.utils.stage_record import StageRecord

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("one")
    out = tmp_path / "out.txt"

    def rec(**opt):
        return StageRecord(
            tmp_path / "out.made-from.json", [src], opt, [out], verify=lambda p: json.loads(p.read_text())
        )

    assert rec(n=1).stale() == f"output {out} does not exist"
    out.write_text('{"ok": 1}')
    rec(n=1).done()
    assert rec(n=1).stale() is None
    assert rec(n=2).stale() == "option n changed: 1 -> 2"
    (src / "a.txt").write_text("one, corrected")  # a fixed input file somewhere under the input directory
    assert rec(n=1).stale() == f"input {src} changed"
    rec(n=1).done()
    out.write_text('{"ok": ')  # damaged after it was written
    assert rec(n=1).stale().startswith(f"{out} cannot be read (JSONDecodeError")
    with caplog.at_level(logging.WARNING):
        assert not rec(n=1).check()
    assert "is stale" in caplog.text and "redoing it" in caplog.text


def test_stage_record_adopts_readable_outputs_of_older_runs(tmp_path):
    from whisper_llada.utils.stage_record import StageRecord

    (tmp_path / "in.txt").write_text("x")
    out = tmp_path / "out.txt"
    out.write_text("{}")
    r = StageRecord(tmp_path / "r.json", [tmp_path / "in.txt"], {}, [out], verify=lambda p: json.loads(p.read_text()))
    assert r.stale() is None and (tmp_path / "r.json").is_file()
    (tmp_path / "r.json").unlink()
    out.write_text("{")
    assert "cannot be read" in r.stale()


# ---------------------------------------------------------------- every WER says what it is over (item 1)


def test_left_out_utterances_are_in_the_wer_and_listed(tmp_path):
    from whisper_llada.scoring.compare import collect_systems, format_table
    from whisper_llada.scoring.wer import error_counts, read_recogs, write_results, write_wer_summary

    results = [("u1", "THE CAT".split(), "THE CAT".split()), ("u2", "A DOG SAT".split(), [])]
    left = [("u2", "longer than 30 s (Whisper's window); not decoded")]
    out = tmp_path / "decoding"
    wer = write_results(out, "test-clean", "s1", results, "none", header="Test: test-clean", left_out=left)
    assert wer == pytest.approx(60.0)  # the left-out utterance's 3 words are deletions
    text = (out / "errs-test-clean-s1.txt").read_text()
    assert "Utterances: 1 scored of 2 in the part; 1 left out" in text
    assert "LEFT OUT: cut id, reason\nu2\tlonger than 30 s (Whisper's window); not decoded\n" in text
    assert error_counts(read_recogs(out / "recogs-test-clean-s1.txt"))["wer"] == pytest.approx(wer)
    with pytest.raises(ValueError, match="would vanish from the WER"):
        write_results(out, "test-clean", "s2", results[:1], "none", left_out=left)
    write_wer_summary(out / "wer-summary.txt", {"s1": wer}, {"s1": (1, 2)})
    summary = (out / "wer-summary.txt").read_text()
    assert "s1\t60.00\t1/2" in summary and "LEFT OUT" in summary
    long_name = "x" * 90
    (out / "errs-test-clean-s1.txt").rename(out / f"errs-test-clean-{long_name}.txt")
    rows = collect_systems(tmp_path)
    table = format_table(rows)
    assert f"decoding/{long_name}" in table and "1/2" in table  # names are never cut short
    assert "u2: longer than 30 s" in table


def test_training_filter_writes_each_dropped_cut_beside_the_manifests(tmp_path, tokenizer):
    from whisper_llada.data.dataset import filter_cuts
    from whisper_llada.data.dropped import read_dropped

    cuts = [_cut("ok", 3.0, "THE CAT"), _cut("long", 31.0, "THE CAT"), _cut("empty", 2.0, " ")]
    kept = filter_cuts(
        cuts,
        tokenizer=tokenizer,
        max_tokens=24,
        where="train",
        dropped_file=tmp_path / "librispeech_filtered_train.jsonl",
    )
    assert [c.id for c in kept] == ["ok"]
    got = {e["id"]: e["reason"] for e in read_dropped(tmp_path / "librispeech_filtered_train.jsonl")}
    assert got == {"empty": "empty transcript", "long": "longer than 30 s (the encoder's window)"}


# ---------------------------------------------------------------- the stages on a tiny spoken corpus (slow)

SMOKE = ["--config", "conf/smoke.yaml", "--set", "model.tokenizer.path=data/lang_bpe_60/bpe.model"]
DATA = [*SMOKE, "--set", "data.vocab_size=60"]


class Workspace:
    """A recipe directory with a tiny LibriSpeech-layout corpus and the commands of its data stages."""

    def __init__(self, tmp: Path):
        from recipe_utils import make_corpus, make_workspace

        self.rdir = make_workspace(tmp)
        self.dl = tmp / "dl" / "LibriSpeech"
        make_corpus(tmp / "dl", n_train=12, n_dev=2, n_test=3)

    def run(self, script: str, *args: str, ok: bool = True) -> str:
        """``local/{script}`` run in this process (the data stages take seconds; a new interpreter
        each time would take longer than the work), in the recipe directory; returns its log."""
        import contextlib
        import importlib
        import io
        import sys

        mod = importlib.import_module("local." + Path(script).stem)
        buf, argv, cwd = io.StringIO(), sys.argv, os.getcwd()
        sys.argv = [script, *args]
        os.chdir(self.rdir)
        try:
            with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
                try:
                    mod.main()
                    failed = None
                except (Exception, SystemExit) as e:
                    failed = e
        finally:
            sys.argv = argv
            os.chdir(cwd)
            logging.getLogger().handlers.clear()  # setup_logger's handler writes to buf
        out = buf.getvalue()
        if ok and failed is not None:
            raise AssertionError(f"{script} {' '.join(args)} failed:\n{out[-4000:]}") from failed
        if not ok:
            assert failed is not None, f"{script} {' '.join(args)} should have failed:\n{out[-4000:]}"
            out += f"\n{type(failed).__name__}: {failed}"
        return out

    def manifests(self, *parts: str) -> str:
        return self.run(
            "../../local/prepare_manifests.py",
            *DATA,
            "--corpus-dir",
            str(self.dl),
            "--nj",
            "1",
            *(("--parts", *parts) if parts else ()),
        )

    def features(self, *parts: str) -> str:
        return self.run("../../local/compute_fbank.py", *DATA, "--nj", "1", *(("--parts", *parts) if parts else ()))

    def lang(self) -> str:
        return self.run("../../local/prepare_lang.py", *DATA)

    def flacs(self, part: str) -> list[Path]:
        return sorted((self.dl / part).rglob("*.flac"))

    def cuts(self, part: str) -> dict:
        """cut id -> (transcript, features) of a part's cut manifest."""
        from lhotse import load_manifest

        cuts = load_manifest(self.rdir / f"data/fbank/librispeech_cuts_{part}.jsonl.gz")
        return {
            c.id: (c.supervisions[0].text, c.with_features_path_prefix(str(self.rdir)).load_features()) for c in cuts
        }


def _same_cuts(a: dict, b: dict) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]) for k in a)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Data stages run once, cleanly; tests that break something restore it before they end."""
    w = Workspace(tmp_path_factory.mktemp("rel"))
    w.manifests()
    w.features()
    w.lang()
    w.clean = {p: w.cuts(p) for p in ("train-clean-100", "test-clean")}
    return w


@pytest.mark.slow
def test_data_stages_pick_up_fixed_input_and_rebuild_damaged_output(ws):
    test_flac = ws.flacs("test-clean")[0]
    good = test_flac.read_bytes()
    # 1. A corrupt test file: left out at the manifests stage, by name, and listed with its transcript.
    test_flac.write_bytes(b"not a flac")
    out = ws.manifests()
    assert f"{test_flac}: unreadable audio" in out
    assert re.search(r"librispeech_recordings_test-clean.jsonl.gz is stale: input .*test-clean changed", out)
    assert "librispeech_recordings_train-clean-100.jsonl.gz already exists - skipping" in out  # only what is stale
    listed = [
        json.loads(l)
        for l in (ws.rdir / "data/manifests/librispeech_dropped_test-clean.jsonl").read_text().splitlines()
    ]
    assert [e["id"] for e in listed] == [test_flac.stem] and listed[0]["file"] == str(test_flac) and listed[0]["text"]
    out = ws.features("test-clean")
    assert "librispeech_cuts_test-clean.jsonl.gz is stale" in out
    fb_dropped = (ws.rdir / "data/fbank/librispeech_dropped_test-clean.jsonl").read_text()
    assert test_flac.stem in fb_dropped and str(test_flac) in fb_dropped  # carried on for decoding to count
    assert len(ws.cuts("test-clean")) == 2
    # 2. The file is replaced: a plain rerun redoes the part and gives what a clean run gave.
    test_flac.write_bytes(good)
    ws.manifests()
    ws.features("test-clean")
    assert _same_cuts(ws.cuts("test-clean"), ws.clean["test-clean"])
    assert (ws.rdir / "data/fbank/librispeech_dropped_test-clean.jsonl").read_text() == ""
    # 3. A transcript is corrected: manifests, features and the lang directory are redone.
    trans = next((ws.dl / "train-clean-100").rglob("*.trans.txt"))
    original = trans.read_text()
    first_id = original.split()[0]
    trans.write_text(original.replace(original.splitlines()[0], f"{first_id} THE RIVER", 1))
    ws.manifests()
    out = ws.features("train-clean-100") + ws.lang()
    assert "librispeech_cuts_train-clean-100.jsonl.gz is stale" in out and "data/lang_bpe_60 is stale" in out
    assert ws.cuts("train-clean-100")[first_id][0] == "THE RIVER"
    trans.write_text(original)
    ws.manifests()
    ws.features("train-clean-100")
    ws.lang()
    assert _same_cuts(ws.cuts("train-clean-100"), ws.clean["train-clean-100"])
    # 4. A truncated output is named and rebuilt by the rerun.
    cuts = ws.rdir / "data/fbank/librispeech_cuts_test-clean.jsonl.gz"
    _truncate(cuts, 0.6)
    out = ws.features("test-clean")
    assert re.search(re.escape(str(cuts.relative_to(ws.rdir))) + r" is stale: .*cannot be read", out), out
    assert _same_cuts(ws.cuts("test-clean"), ws.clean["test-clean"])
    # 5. Outputs deleted by hand after an input changed: the per-job cuts of the old input are not reused.
    flacs = ws.flacs("test-clean")
    good = flacs[1].read_bytes()
    shutil.copy(flacs[2], flacs[1])  # a different (valid) recording under this name
    ws.manifests()
    cuts.unlink()
    out = ws.features("test-clean")
    assert "(job 0) is stale" in out
    new = ws.cuts("test-clean")
    assert new[flacs[1].stem][1].shape == ws.clean["test-clean"][flacs[2].stem][1].shape
    flacs[1].write_bytes(good)
    ws.manifests()
    ws.features("test-clean")
    assert _same_cuts(ws.cuts("test-clean"), ws.clean["test-clean"])
    # Nothing left to do: every stage says so and touches nothing.
    out = ws.manifests() + ws.features() + ws.lang()
    assert out.count("already exists - skipping") >= 7 and "stale" not in out


@pytest.mark.slow
def test_stereo_and_8khz_audio_are_read_and_said_once(ws, tmp_path):
    import soundfile as sf
    import soxr

    part = ws.dl / "test-other" / "101" / "1000"
    part.mkdir(parents=True)
    lines = []
    sources = ws.flacs("test-clean")
    for i, src in enumerate(sources):
        audio, sr = sf.read(src)
        utt = f"101-1000-{i:04d}"
        if i == 0:
            audio = __import__("numpy").stack([audio, audio * 0.3], axis=1)  # stereo: channel 0 is the original
        elif i == 1:
            audio, sr = soxr.resample(audio, sr, 8000), 8000
        sf.write(part / f"{utt}.flac", audio, sr)
        lines.append(
            f"{utt} "
            + next(
                l.split(" ", 1)[1]
                for l in (src.parent / f"{src.parent.parent.name}-{src.parent.name}.trans.txt").read_text().splitlines()
                if l.startswith(src.stem)
            )
        )
    (part / "101-1000.trans.txt").write_text("\n".join(lines) + "\n")
    try:
        ws.manifests("test-other")
        out = ws.features("test-other")
        assert out.count("multi-channel recordings") == 1 and "1 multi-channel recordings: channel 0 read" in out
        assert str(part / "101-1000-0000.flac") in out
        assert out.count("resampled to 16000 Hz") == 1 and "1 recordings at 8000 Hz resampled" in out
        assert str(part / "101-1000-0001.flac") in out
        cuts = ws.cuts("test-other")
        assert len(cuts) == 3  # none dropped
        import numpy as np

        assert np.array_equal(cuts["101-1000-0000"][1], ws.clean["test-clean"][sources[0].stem][1])
    finally:
        shutil.rmtree(ws.dl / "test-other")


def _losses(log_text: str) -> dict[int, tuple[float, float]]:
    """batch -> (loss, epoch average so far) as the training log prints them."""
    return {
        int(b): (float(l), float(a))
        for b, l, a in re.findall(
            r"batch (\d+), loss ([0-9.]+)(?: \(CTC loss [0-9.]+\))? \(epoch avg ([0-9.]+)\)", log_text
        )
    }


@pytest.mark.slow
def test_killed_training_resumes_by_itself_exactly(ws):
    train = ["train.py", *SMOKE, "--set", "train.save_every_n=2", "--set", "train.keep_last_k=10", "--device", "cpu"]
    full = _losses(ws.run(*train, "--exp-dir", "exp/full"))
    full_dir, killed = ws.rdir / "exp/full", ws.rdir / "exp/killed"
    assert max(full) >= 6, full
    # Killed after checkpoint-4.pt had been damaged (a full disk, a copy cut short): the plain rerun
    # skips it, naming it, and resumes from checkpoint-2.pt.
    killed.mkdir(parents=True)
    for name in ("checkpoint-2.pt", "checkpoint-4.pt"):
        shutil.copy(full_dir / name, killed)
    _truncate(killed / "checkpoint-4.pt")
    out = ws.run(*train, "--exp-dir", "exp/killed")
    assert "checkpoint-4.pt: cannot read this checkpoint" in out and "checkpoint-2.pt: the furthest readable" in out
    resumed = _losses(out)
    assert resumed == {b: v for b, v in full.items() if b > 2}  # losses and running averages both
    assert (killed / "checkpoint-4.pt.superseded").is_file()
    assert sorted(p.name for p in killed.glob("*.pt")) == sorted(p.name for p in full_dir.glob("*.pt"))
    for name in ("epoch-1.pt", "epoch-2.pt"):
        a, b = (
            torch.load(full_dir / name, weights_only=False)["model"],
            torch.load(killed / name, weights_only=False)["model"],
        )
        assert all(torch.equal(a[k], b[k]) for k in a)
    # Killed between epochs: resumes from epoch-1.pt.
    (ws.rdir / "exp/epoch").mkdir()
    shutil.copy(full_dir / "epoch-1.pt", ws.rdir / "exp/epoch")
    after_epoch = _losses(ws.run(*train, "--exp-dir", "exp/epoch"))
    assert after_epoch and after_epoch == {b: v for b, v in full.items() if b >= min(after_epoch)}
    # Another model config in the same directory is refused, naming the difference.
    out = ws.run(*train, "--exp-dir", "exp/killed", "--set", "model.lora.r=4", ok=False)
    assert "epoch-2.pt: was trained with another model config" in out and "model.lora.r: 8 -> 4" in out


def _without_speed(text: str) -> str:
    return "\n".join(l for l in text.splitlines() if not l.startswith("Speed: "))


@pytest.mark.slow
def test_every_test_utterance_is_counted_and_fixes_are_picked_up(ws, monkeypatch):
    from dataclasses import asdict

    import soundfile as sf

    from whisper_llada.checkpoint.files import save_checkpoint
    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.models.build import build_model

    # Which utterances are scored is the question, not how well: an untrained model will do.
    monkeypatch.chdir(ws.rdir)
    cfg = load_recipe_config("conf/smoke.yaml", ["model.tokenizer.path=data/lang_bpe_60/bpe.model"])
    torch.manual_seed(0)
    save_checkpoint(ws.rdir / "exp/dec/epoch-2.pt", build_model(cfg.model), {"config": asdict(cfg)})
    decode = [
        "decode.py",
        *SMOKE,
        "--exp-dir",
        "exp/dec",
        "--set",
        "decode=[{mode: decoding, gen_len: 16, steps: 4, block_length: 16, batch_size: 4}]",
    ]
    out_dir = ws.rdir / "exp/dec/decoding"

    def results():
        errs = next(out_dir.glob("errs-test-clean-*.txt"))
        return errs, errs.read_text(), errs.with_name(errs.name.replace("errs-", "recogs-")).read_text()

    ws.run(*decode)
    errs, clean_errs, clean_recogs = results()
    assert "Utterances: 3 scored of 3 in the part; 0 left out" in clean_errs
    flacs = ws.flacs("test-clean")
    saved = {f: f.read_bytes() for f in flacs}
    try:
        # A test utterance over the window (decoded in pieces, scored whole) and an unreadable one
        # (in the WER as all deleted, and listed).
        audio, sr = sf.read(flacs[0])
        sf.write(flacs[0], __import__("numpy").concatenate([audio, 0 * audio[:1].repeat(31 * sr)]), sr)
        flacs[1].write_bytes(b"")
        ws.manifests("test-clean")
        ws.features("test-clean")
        out = ws.run(*decode)
        assert f"{errs.relative_to(ws.rdir)} is stale: input" in out
        errs_text = errs.read_text()
        assert "Utterances: 2 scored of 3 in the part; 1 left out" in errs_text
        assert f"{flacs[0].stem}\t" not in errs_text.split("LEFT OUT: cut id, reason")[1]
        assert f"{flacs[0].stem}:\tref=" in results()[2] and ".piece" not in results()[2]
        assert re.search(rf"{flacs[1].stem}\tunreadable audio .*\({re.escape(str(flacs[1]))}\)", errs_text)
        assert f"{flacs[1].stem}:\thyp=\n" in results()[2]
        summary = next(out_dir.glob("wer-summary-test-clean-*.txt")).read_text()
        assert "\t2/3\n" in summary and "LEFT OUT" in summary
        report = ws.run("compare_systems.py", "--exp-dir", "exp/dec", "--firstpass-dir", "nowhere")
        assert " 2/3" in report and f"{flacs[1].stem}: unreadable audio" in report
        # Feature storage lost after the features stage: each cut named with the file it could not read.
        storage = ws.rdir / "data/fbank/librispeech_feats_test-clean"
        (storage / "feats-0.lca").unlink()
        ws.run(*decode, "--set", "score.sclite_mode=true")  # another scoring option: redone
        errs_text = errs.read_text()
        assert "Utterances: 0 scored of 3 in the part; 3 left out" in errs_text
        assert re.search(rf"{flacs[2].stem}\tcannot load its features from .*feats-0.lca", errs_text)
        out = ws.features("test-clean")
        assert "librispeech_feats_test-clean changed since it was written" in out or "does not exist" in out
    finally:
        for f, data in saved.items():
            f.write_bytes(data)
    # After the fixes, plain reruns give exactly what the clean run gave.
    ws.manifests("test-clean")
    ws.features("test-clean")
    ws.run(*decode)
    _, errs_text, recogs = results()
    assert recogs == clean_recogs and _without_speed(errs_text) == _without_speed(clean_errs)
    # A damaged result is named and redone; a rerun with nothing changed does nothing.
    _truncate(errs, 0.3)
    out = ws.run(*decode)
    assert f"{errs.relative_to(ws.rdir)} is stale" in out and "cannot be read" in out
    assert _without_speed(results()[1]) == _without_speed(clean_errs)
    assert "already exists - skipping" in ws.run(*decode)


@pytest.mark.slow
def test_damaged_first_pass_records_are_named_and_rebuilt(ws):
    from whisper_llada.firstpass.records import read_records

    first_pass = ["whisper_first_pass.py", *SMOKE, "--device", "cpu"]
    ws.run(*first_pass)
    records = ws.rdir / "data/firstpass/whisper/test-clean.jsonl.gz"
    clean = read_records(records)
    assert len(clean) == 3 and "Utterances: 3 scored of 3" in next(records.parent.glob("errs-test-clean-*")).read_text()
    _truncate(records, 0.5)
    with pytest.raises(ValueError, match=re.escape(str(records)) + ".*rerun the first-pass stage"):
        read_records(records)
    out = ws.run(*first_pass)
    assert "whisper/test-clean.jsonl.gz is stale" in out and "cannot be read" in out
    assert read_records(records) == clean
    assert "already exists - skipping" in ws.run(*first_pass)
