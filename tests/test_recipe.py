"""The LibriSpeech recipe end to end on a dozen espeak-ng utterances (smoke config), its rerun,
its result files, multi-process training and exact resumption."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from recipe_utils import make_corpus, make_workspace, run

from whisper_llada.scoring.wer import error_counts, read_recogs

pytestmark = pytest.mark.slow

STAGES = [f"Stage {i}:" for i in range(1, 11)]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ws")
    rdir = make_workspace(tmp)
    # Its test part has one utterance longer than the smoke encoders' 10-s window.
    make_corpus(tmp / "dl", long_test=6)
    out = run(
        ["./run.sh", "--dl-dir", str(tmp / "dl"), "--config", "conf/smoke.yaml", "--stage", "1", "--nj", "2"], rdir
    )
    return rdir, out


def test_smoke_run_writes_every_stage(recipe):
    rdir, out = recipe
    for s in STAGES:
        assert s in out
    assert (rdir / "data/manifests/librispeech_recordings_train-clean-100.jsonl.gz").is_file()
    assert (rdir / "data/fbank/librispeech_cuts_test-clean.jsonl.gz").is_file()
    assert (rdir / "data/lang_bpe_60/bpe.model").is_file()
    assert (rdir / "data/firstpass/whisper/test-clean.jsonl.gz").is_file()
    # The CTC first pass: its records and statistics, the graph, and word confidences for Whisper's.
    from whisper_llada.firstpass.records import read_records

    ctc = read_records(rdir / "data/firstpass/ctc/test-clean.jsonl.gz")
    assert ctc and all(r["text"] == " ".join(w["word"] for w in r["words"]) and r["nbest"] for r in ctc.values())
    whisper = read_records(rdir / "data/firstpass/whisper/test-clean.jsonl.gz")
    assert all(len(r["words"]) == len(r["text"].split()) for r in whisper.values())
    assert (rdir / "data/lang_bpe_60/HLG.fst").is_file() and (rdir / "data/lm/G_2_gram.arpa").is_file()
    assert "nbest_oracle_wer" in (rdir / "data/firstpass/ctc/stats-test-clean.json").read_text()
    assert (rdir / "data/firstpass/whisper/reliability-test-clean.png").is_file()
    assert (rdir / "exp/smoke_ctc/epoch-1.pt").is_file()
    exp = rdir / "exp/smoke"
    assert (exp / "epoch-1.pt").is_file() and (exp / "epoch-2.pt").is_file()
    assert len(list(exp.glob("checkpoint-*.pt"))) <= 2  # keep_last_k
    assert list((exp / "tensorboard").iterdir()) and list((exp / "log").glob("log-train-*"))
    assert len(list((exp / "decoding").glob("errs-test-clean-*"))) == 2
    assert len(list((exp / "diffusion_deliberation").glob("errs-test-clean-*"))) == 2
    assert len(list((exp / "semi_ar_deliberation").glob("errs-test-clean-*"))) == 1
    # N-best rescoring: weights chosen on dev-clean (which both first passes decode too), shown in the header.
    assert (rdir / "data/firstpass/whisper/dev-clean.jsonl.gz").is_file()
    assert (rdir / "data/firstpass/ctc/dev-clean.jsonl.gz").is_file()
    (fusion,) = (exp / "nbest_rescoring").glob("fusion-*.json")
    chosen = json.loads(fusion.read_text())
    assert chosen["dev_parts"] == ["dev-clean"] and chosen["wer"] <= chosen["wer_first_pass"]
    (rescored,) = (exp / "nbest_rescoring").glob("errs-test-clean-*")
    assert '"fusion": {' in rescored.read_text()
    assert (exp / "report.json").is_file() and (exp / "wer-vs-rtf.png").stat().st_size > 1000


def test_long_cut_is_decoded_whole_by_every_system(recipe):
    """The test cut over data.decode_window (10 s) is decoded in pieces by both first passes, every
    decoding, deliberation and rescoring setting, and scored whole: one row with its reference."""
    from lhotse import CutSet

    from whisper_llada.data.text_norm import get_normalizer
    from whisper_llada.firstpass.records import read_records

    rdir, out = recipe
    cuts = CutSet.from_file(rdir / "data/fbank/librispeech_cuts_test-clean.jsonl.gz")
    long = max(cuts, key=lambda c: c.duration)
    assert long.duration > 10
    ref = get_normalizer("librispeech")(long.supervisions[0].text).split()
    for system in ("whisper", "ctc"):
        pieces = [k for k in read_records(rdir / f"data/firstpass/{system}/test-clean.jsonl.gz") if long.id in k]
        assert len(pieces) >= 2 and long.id not in pieces
    recogs = sorted((rdir / "exp/smoke").glob("*/recogs-test-clean-*")) + sorted(
        (rdir / "data/firstpass").glob("*/recogs-test-clean-*")
    )
    assert len(recogs) == 8
    for path in recogs:
        rows = {c: (r, h) for c, r, h in read_recogs(path)}
        assert set(rows) == {c.id for c in cuts}, path
        assert rows[long.id][0] == ref, path
        errs = path.with_name(path.name.replace("recogs-", "errs-")).read_text()
        assert f"Utterances: {len(cuts)} scored of {len(cuts)} in the part; 0 left out" in errs, path


def test_rerun_skips_every_stage(recipe):
    rdir, _ = recipe
    before = {
        p: p.stat().st_mtime_ns
        for p in rdir.rglob("*")
        if p.is_file() and "report" not in p.name and "png" not in p.name
    }
    out = run(
        [
            "./run.sh",
            "--dl-dir",
            str(rdir.parent.parent / "dl"),
            "--config",
            "conf/smoke.yaml",
            "--stage",
            "1",
            "--stop-stage",
            "9",
        ],
        rdir,
    )
    assert out.count("already exists - skipping") >= 10, out
    after = {p: p.stat().st_mtime_ns for p in before}
    changed = [str(p) for p in before if after[p] != before[p] and "/log/" not in str(p)]
    assert not changed


def test_errs_wer_equals_recogs_wer(recipe):
    rdir, _ = recipe
    errs = sorted((rdir / "exp/smoke").glob("*/errs-*.txt")) + sorted((rdir / "data/firstpass").glob("*/errs-*.txt"))
    assert len(errs) == 10  # 2 decoding, 3 deliberation, 1 rescoring, 2 first passes of dev and test
    for e in errs:
        printed = float(e.read_text().split("\n", 1)[0].split("=")[1])
        recogs = e.with_name(e.name.replace("errs-", "recogs-"))
        assert printed == pytest.approx(error_counts(read_recogs(recogs))["wer"], abs=0.005)
        hyp_lines = [l for l in recogs.read_text().splitlines() if "\thyp=" in l]
        assert hyp_lines and not any("[" in l or "'" in l for l in hyp_lines)  # plain text, no list repr


def _losses(log_text: str) -> dict[int, float]:
    return {int(b): float(l) for b, l in re.findall(r"batch (\d+), loss ([0-9.]+)", log_text)}


def _valid(log_text: str) -> list[float]:
    return [float(v) for v in re.findall(r"valid loss ([0-9.]+)", log_text)]


def test_resume_from_batch_checkpoint_is_exact(recipe):
    rdir, _ = recipe
    base = [
        "../../local/train.py",
        "--config",
        "conf/smoke.yaml",
        "--set",
        "model.tokenizer.path=data/lang_bpe_60/bpe.model",
        "--set",
        "train.save_every_n=2",
        "--set",
        "train.num_epochs=2",
        "--set",
        "train.keep_last_k=10",
        "--device",
        "cpu",
    ]
    full = _losses(run(["python", *base, "--exp-dir", "exp/resume-full"], rdir))
    part = rdir / "exp/resume-part"
    part.mkdir(parents=True)
    shutil.copy(rdir / "exp/resume-full/checkpoint-2.pt", part)
    resumed = _losses(run(["python", *base, "--exp-dir", str(part), "--start-batch", "2"], rdir))
    assert min(resumed) == 3 and set(resumed) == {b for b in full if b > 2}
    for b, loss in resumed.items():
        assert loss == full[b], (b, loss, full[b])
    # The rerun path: the same command as the killed run's, no --start-*, resumes by itself.
    rerun = rdir / "exp/resume-rerun"
    rerun.mkdir(parents=True)
    shutil.copy(rdir / "exp/resume-full/checkpoint-2.pt", rerun)
    assert _losses(run(["python", *base, "--exp-dir", str(rerun)], rdir)) == resumed


def test_two_process_training_matches_double_batch(recipe):
    rdir, _ = recipe
    base = [
        "../../local/train.py",
        "--config",
        "conf/smoke.yaml",
        "--set",
        "model.tokenizer.path=data/lang_bpe_60/bpe.model",
        "--set",
        "train.num_epochs=4",
        "--set",
        "train.save_every_n=0",
        "--device",
        "cpu",
    ]
    # Batches small enough that both ranks fill some (DDP drops the partial last ones).
    one = run(["python", *base, "--exp-dir", "exp/one", "--max-duration", "8"], rdir)
    run(
        ["torchrun", "--standalone", "--nproc-per-node", "2", *base, "--exp-dir", "exp/two", "--max-duration", "4"],
        rdir,
    )
    # Ranks may open their logs in different seconds: order by the rank suffix, not the name.
    logs = sorted((rdir / "exp/two/log").glob("log-train-*"), key=lambda p: p.name[-2:])
    assert [p.name[-2:] for p in logs] == ["-0", "-1"]  # a log per rank
    v1, v2 = _valid(one), _valid(logs[0].read_text())
    assert _valid(logs[1].read_text()) == v2  # the validation loss is reduced over both ranks
    assert len(v1) == 4 and len(v2) == 4
    assert v1[-1] < v1[0] and v2[-1] < v2[0]
    for a, b in zip(v1, v2):
        assert abs(a - b) / a < 0.15, (v1, v2)


def test_encoder_cache_gives_the_same_losses(recipe):
    rdir, _ = recipe
    base = [
        "../../local/train.py",
        "--config",
        "conf/smoke.yaml",
        "--set",
        "model.tokenizer.path=data/lang_bpe_60/bpe.model",
        "--set",
        "train.num_epochs=1",
        "--set",
        "train.save_every_n=0",
        "--device",
        "cpu",
    ]
    plain = _losses(run(["python", *base, "--exp-dir", "exp/nocache"], rdir))
    cached = _losses(run(["python", *base, "--exp-dir", "exp/cache", "--set", "train.cache_encoder=true"], rdir))
    assert len(list((rdir / "data/encoder_cache").glob("*/train/cuts.jsonl.gz"))) == 1
    assert plain.keys() == cached.keys() and len(plain) >= 2
    for b in plain:
        assert cached[b] == pytest.approx(plain[b], abs=2e-4), (b, plain, cached)


def test_encoder_cache_serves_each_model_its_own_cuts(recipe, tmp_path, monkeypatch):
    """Models sharing a cache keep different cuts: each gets exactly its own, in its order; the
    cache grows by what it lacked."""
    import numpy as np
    import torch
    from lhotse import load_manifest

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.models import build_model
    from whisper_llada.training.encoder_cache import cached_cuts

    rdir, _ = recipe
    monkeypatch.chdir(rdir)
    cfg = load_recipe_config("conf/smoke.yaml", ["model.tokenizer.path=data/lang_bpe_60/bpe.model"])
    model = build_model(cfg.model).eval()
    cuts = list(load_manifest(cfg.data.cuts_path("train-clean-100")))
    first = cached_cuts(model, cuts[:5], tmp_path / "c", "cpu")
    assert [c.id for c in first] == [c.id for c in cuts[:5]]
    second = cached_cuts(model, cuts[3:][::-1], tmp_path / "c", "cpu")
    assert [c.id for c in second] == [c.id for c in cuts[3:][::-1]]
    assert len(load_manifest(tmp_path / "c/cuts.jsonl.gz")) == len(cuts)
    with torch.no_grad():
        for c in (second[-1], second[0]):  # one stored by the first call, one by the second
            feats = torch.from_numpy(c.load_features())[None]
            frames, real = model.run_encoder(feats, torch.tensor([feats.shape[1]]))
            stored = c.load_custom("encoder_out")
            np.testing.assert_allclose(stored, frames[0, : stored.shape[0]].numpy(), atol=1e-5)


def test_audio_token_cache_gives_the_same_losses(recipe):
    """Two-stage training: the LLM epochs on cached audio tokens of the frozen front end equal
    those that run the front end every step."""
    rdir, _ = recipe
    base = [
        "../../local/train.py",
        "--config",
        "conf/smoke.yaml",
        "--set",
        "model.tokenizer.path=data/lang_bpe_60/bpe.model",
        "--set",
        "train.num_epochs=2",
        "--set",
        "train.frontend_epochs=1",
        "--set",
        "train.save_every_n=0",
        "--set",
        "model.loss.ctc_weight=0.5",
        "--set",
        "model.ctc_compress=true",
        "--device",
        "cpu",
    ]
    plain = _losses(run(["python", *base, "--exp-dir", "exp/notokens"], rdir))
    tokens = [
        *base,
        "--exp-dir",
        "exp/tokens",
        "--set",
        "train.cache_audio_tokens=true",
        "--set",
        "train.cache_encoder=true",
    ]
    out = run(["python", *tokens], rdir)
    assert "cached the frozen front end's audio tokens" in out and "read from" not in out
    cached = _losses(out)
    assert plain.keys() == cached.keys() and len(plain) >= 4
    for b in plain:
        # The tokens were computed in other batches: float rounding, which training compounds.
        assert cached[b] == pytest.approx(plain[b], rel=1e-3), (b, plain, cached)
    # They were stored under the front end's fingerprint: resuming the LLM epoch reads them.
    assert len(list((rdir / "data/encoder_cache").glob("*/audio_tokens/*.pt"))) == 1
    resumed = run(["python", *tokens, "--start-epoch", "2"], rdir)
    assert "read from" in resumed
    again = _losses(resumed)
    assert again and all(again[b] == pytest.approx(cached[b], rel=1e-6) for b in again), (again, cached)


def test_embedded_recipe_in_miniature(tmp_path):
    """egs/espeak_fortunes end to end at toy size: corpus, tiny.en conversion, the LLaDA and its twin,
    the Whisper-decoder pair, report."""
    import json

    rdir = make_workspace(tmp_path, "espeak_fortunes")
    command = [
        "./run.sh",
        "--config",
        "conf/mini.yaml",
        "--twin-config",
        "conf/mini_twin.yaml",
        "--decoder-config",
        "conf/mini_decoder_mdm.yaml",
        "--decoder-twin-config",
        "conf/mini_decoder_ar.yaml",
        "--num-train",
        "12",
        "--num-dev",
        "2",
        "--num-test",
        "3",
    ]
    out = run(command, rdir, timeout=900)
    assert "Stage 17: report" in out
    report = json.loads((rdir / "exp/report.json").read_text())
    # Four experiments in one report: each one's rows carry its name.
    assert {s["name"].split("/")[0] for s in report["systems"] if s["kind"] != "first_pass"} == {
        "mini",
        "mini_twin",
        "mini_decoder_mdm",
        "mini_decoder_ar",
    }
    kinds = {s["kind"] for s in report["systems"]}
    assert kinds == {"first_pass", "decoding", "deliberation", "autoregressive"}
    # mini.yaml's train.avg: its decodings average both epochs unless told otherwise.
    assert all(s["name"].endswith("-epoch-2-avg-2") for s in report["systems"] if s["name"].startswith("mini/"))
    # The Whisper-decoder AR twin decodes greedily and with beams, and rescores Whisper's n-best.
    twin = {
        s["name"].split("/", 1)[1].split("-epoch")[0]
        for s in report["systems"]
        if s["name"].startswith("mini_decoder_ar/")
    }
    assert twin == {
        "autoregressive/greedy-len-24",
        "autoregressive/beam-2-len-24",
        "nbest_rescoring/rescore-nbest-all-logprob",
    }
    # The diffusion model is block diffusion: it decodes semi-AR in its blocks of 2, and with beams.
    mdm = {
        s["name"].split("/", 1)[1].split("-epoch")[0]
        for s in report["systems"]
        if s["name"].startswith("mini_decoder_mdm/")
    }
    assert {
        "decoding/semi-ar-block-2-gen-24-steps-12",
        "decoding/semi-ar-block-1-gen-24-steps-24-beam-2",
        "nbest_rescoring/rescore-nbest-all-pll-2",
        "nbest_rescoring/rescore-nbest-all-pll-2-on-whisper_decoder_ar",
    } <= mdm, mdm
    # The twin's beam is a first pass (dev-clean too), with the CTC recogniser's confidences and
    # scores, and the cascade on it counts the twin's time.
    from whisper_llada.firstpass.records import read_records

    for part in ("dev-clean", "test-clean"):
        recs = read_records(rdir / f"data/firstpass/whisper_decoder_ar/{part}.jsonl.gz")
        assert len(recs) == (2 if part == "dev-clean" else 3)
        for r in recs.values():
            assert 1 <= len(r["nbest"]) <= 2 and r["nbest"][0]["text"] == r["text"] and "words" in r
            assert all("ctc_score" in h and h["score"] <= 0 for h in r["nbest"])
    on_twin = next(s for s in report["systems"] if s["name"].split("-epoch")[0].endswith("on-whisper_decoder_ar"))
    twin_beam = next(s for s in report["systems"] if s["settings"].get("as_first_pass") == "whisper_decoder_ar")
    assert on_twin["cascade_rtf"] >= on_twin["rtf"] + twin_beam["rtf"] - 1e-4  # (+ the CTC pass's if fused)
    # A rerun finds the twin's records up to date although the CTC stage added to them.
    again = run([*command, "--stage", "15", "--stop-stage", "16"], rdir)
    assert "stale" not in again and again.count("already exists - skipping") >= 8, again
    # First passes decode dev-clean too (n-best rescoring chooses its weights there); the rest test only.
    assert {s["test"] for s in report["systems"] if s["kind"] != "first_pass"} == {"test-clean"}
    assert {s["test"] for s in report["systems"]} == {"dev-clean", "test-clean"}
    assert all(s["num_words"] > 0 and s["rtf"] > 0 for s in report["systems"])
    assert {s["name"].split("/")[0] for s in report["systems"] if s["kind"] == "first_pass"} == {"whisper", "ctc"}
    head = report["headline"]["test-clean"]
    assert {"best_single", "best_cascade", "ar_vs_diffusion"} <= set(head) and list(report["headline"]) == [
        "test-clean"
    ]
    assert "Headline, test-clean:" in (rdir / "exp/report.txt").read_text()
    assert any(s["settings"].get("masking_type") == "first_pass" for s in report["systems"])
    assert set(report["first_pass_stats"]) == {"whisper", "ctc", "whisper_decoder_ar"}
    assert "n-best oracle" in (rdir / "exp/report.txt").read_text()
    assert (rdir / "exp/wer-vs-rtf.png").is_file()
