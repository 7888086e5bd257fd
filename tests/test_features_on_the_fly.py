"""data.features: on_the_fly against stored features on a tiny corpus: the same features up to
lilcom's rounding, the same training losses, decoding and the encoder cache from audio, and
the features stage redone when the option changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from recipe_utils import ROOT, make_corpus

MODES = ("stored", "on_the_fly")
# LilcomChunkyWriter's default: values stored as multiples of 2^-5, so each is off by at most 2^-6.
TICK_POWER = -5


def _config(tmp: Path, sp_model: str, mode: str, *extra: str):
    from whisper_llada.config.recipe import load_recipe_config

    return load_recipe_config(
        ROOT / "egs/librispeech/conf/smoke.yaml",
        [
            f"model.tokenizer.path={sp_model}",
            f"data.raw_manifest_dir={tmp}/manifests",
            f"data.manifest_dir={tmp}/fbank-{mode}",
            f"data.features={mode}",
            "train.num_epochs=1",
            "train.save_every_n=0",
            *extra,
        ],
    )


def _features_stage(data, part: str) -> None:
    from whisper_llada.data.features import compute_whisper_fbank

    compute_whisper_fbank(
        data.manifest_path("recordings", part),
        data.manifest_path("supervisions", part),
        data.cuts_path(part),
        Path(data.manifest_dir) / f"{data.prefix}_feats_{part}",
        data.num_mel_bins,
        on_the_fly=data.features == "on_the_fly",
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sp_model):
    """Manifests of a 10-utterance corpus (one training recording stereo, one at 8 kHz) and the
    features stage run once per mode, each into its own directory: tmp -> mode -> config."""
    import soundfile as sf
    import soxr

    from whisper_llada.corpora.manifests import prepare_manifests

    tmp = tmp_path_factory.mktemp("otf")
    make_corpus(tmp / "dl", n_train=6, n_dev=2, n_test=2)
    flacs = sorted((tmp / "dl/LibriSpeech/train-clean-100").rglob("*.flac"))
    audio, sr = sf.read(flacs[0])
    sf.write(flacs[0], np.stack([audio, audio * 0.3], axis=1), sr)  # channel 0 is the original
    audio, sr = sf.read(flacs[1])
    sf.write(flacs[1], soxr.resample(audio, sr, 8000), 8000)
    cfgs = {m: _config(tmp, sp_model, m) for m in MODES}
    prepare_manifests(cfgs["stored"].data, tmp / "dl/LibriSpeech")
    for cfg in cfgs.values():
        for part in cfg.data.all_parts:
            _features_stage(cfg.data, part)
    return tmp, cfgs


def _cuts(cfg, part: str) -> dict:
    from lhotse import load_manifest

    return {c.id: c for c in load_manifest(cfg.data.cuts_path(part))}


class LilcomRounded:
    """An extractor whose features are rounded as the features stage stores them."""

    def __init__(self, extractor):
        self.extractor = extractor

    def extract(self, samples, sampling_rate):
        import lilcom

        return lilcom.decompress(lilcom.compress(self.extractor.extract(samples, sampling_rate), TICK_POWER))


def test_on_the_fly_features_are_the_stored_ones_before_lilcom(corpus):
    tmp, cfgs = corpus
    stored, otf = (_cuts(cfgs[m], "train-clean-100") for m in MODES)
    assert stored.keys() == otf.keys() and len(otf) == 6
    assert not any(c.has_features for c in otf.values()) and not list((tmp / "fbank-on_the_fly").glob("*_feats_*"))
    # Read as Whisper reads them, as the stored path did: one channel, 16 kHz.
    assert all(c.num_channels == 1 and c.sampling_rate == 16000 for c in otf.values())
    extractor = cfgs["on_the_fly"].data.feature_extractor()
    worst = 0.0
    for cut_id, cut in stored.items():
        kept = cut.load_features()
        computed = otf[cut_id].compute_features(extractor)
        assert computed.shape == kept.shape == (cut.num_frames, 80)
        # The only difference is lilcom's: rounding what is computed now gives what was stored, bit for bit.
        assert np.array_equal(LilcomRounded(extractor).extract(otf[cut_id].load_audio(), 16000), kept), cut_id
        worst = max(worst, float(np.abs(computed - kept).max()))
    assert 0 < worst <= 2.0 ** (TICK_POWER - 1) + 1e-6  # measured: 0.0156 (2^-6) on every cut


def _train(cfg, exp_dir: Path):
    from whisper_llada.training.trainer import Trainer

    trainer = Trainer(cfg, exp_dir, device="cpu")
    return trainer.train() + [trainer.validate()]


@pytest.fixture(scope="module")
def model(corpus):
    """The smoke config's model, untrained: decoding and the encoder cache need one that runs."""
    from whisper_llada.models.build import build_model

    return build_model(corpus[1]["on_the_fly"].model).eval()


@pytest.fixture(scope="module")
def trained(corpus):
    """The losses of a training epoch and the dev loss, with the same seed: on stored features, on
    features computed in the loader, and on those rounded as lilcom stores them."""
    from whisper_llada.data import features

    tmp, cfgs = corpus
    out = {m: _train(cfgs[m], tmp / f"exp-{m}") for m in MODES}
    plain = features.whisper_fbank
    features.whisper_fbank = lambda n: LilcomRounded(plain(n))
    try:
        out["rounded"] = _train(cfgs["on_the_fly"], tmp / "exp-rounded")
    finally:
        features.whisper_fbank = plain
    return out


@pytest.mark.slow
def test_training_losses_match_stored_features(trained):
    stored, otf, rounded = (trained[k] for k in ("stored", "on_the_fly", "rounded"))
    assert len(stored) == len(otf) >= 3
    # The loader's path is the features stage's: with lilcom's rounding, the losses are identical.
    assert rounded == stored
    # Without it they differ by what lilcom's error does to a loss. The error is at most 2^-6 a value;
    # all of it in one direction (moving every feature by 2^-6) moved these losses by up to 2.4e-4;
    # measured here: 1.2e-4 (training) and 1.7e-4 (dev) on losses near 4.4.
    assert otf != stored
    for a, b in zip(stored, otf):
        assert b == pytest.approx(a, abs=4e-4), (stored, otf)


def test_decoding_and_first_pass_read_audio(corpus, model):
    from dataclasses import replace

    from whisper_llada.firstpass.whisper_ar import run_first_pass
    from whisper_llada.inference import decode_part, load_test_part, run_settings

    tmp, cfgs = corpus
    cfg = cfgs["on_the_fly"]
    setting = replace(cfg.decode_settings()[0], steps=4)  # the smoke setting in 4 passes: reading the audio is tested
    wers = run_settings(cfg, lambda: model, "otf", tmp / "dec", [setting], ["test-clean"])
    assert list(wers) == [("test-clean", f"{setting.suffix()}-otf")]
    errs = (tmp / f"dec/decoding/errs-test-clean-{setting.suffix()}-otf.txt").read_text()
    assert "Utterances: 2 scored of 2 in the part; 0 left out" in errs
    seen = []
    cuts, _, _ = load_test_part(cfg, "test-clean", str)
    run_first_pass(
        lambda b: seen.append(b["audio"]) or [], cuts, 4, extractor=cfg.data.feature_extractor()
    )  # the first passes read the same batches
    assert seen[0].kind == "features" and seen[0].data.shape[2] == 80 and len(seen[0]) == 2
    # Audio lost after the features stage: the cut is named with its file and scored as all deleted.
    flac = Path(next(iter(cuts)).recording.sources[0].source)
    good = flac.read_bytes()
    flac.write_bytes(b"not a flac")
    try:
        left_out: list = []
        results, _ = decode_part(
            model, cuts, setting, "librispeech", left_out=left_out, extractor=cfg.data.feature_extractor()
        )
    finally:
        flac.write_bytes(good)
    assert len(results) == 2 and [c for c, _ in left_out] == [flac.stem]
    assert f"cannot load its audio from {flac}" in left_out[0][1]


def test_encoder_cache_from_audio(corpus, model, caplog):
    import torch

    from whisper_llada.training.encoder_cache import cached_cuts

    tmp, cfgs = corpus
    extractor = cfgs["on_the_fly"].data.feature_extractor()
    cuts = list(_cuts(cfgs["on_the_fly"], "train-clean-100").values())
    cached = cached_cuts(model, cuts, tmp / "enc", "cpu", extractor=extractor)
    assert [c.id for c in cached] == [c.id for c in cuts]
    with torch.no_grad():
        feats = torch.from_numpy(cuts[2].compute_features(extractor))[None]
        frames, _ = model.run_encoder(feats, torch.tensor([feats.shape[1]]))
    stored = cached[2].load_custom("encoder_out")
    np.testing.assert_allclose(stored, frames[0, : stored.shape[0]].numpy(), atol=1e-5)
    # A fixed recording (a newer audio file) makes its cached output stale.
    flac = cuts[2].recording.sources[0].source
    os.utime(flac, ns=(os.stat(flac).st_atime_ns, os.stat(flac).st_mtime_ns + 10**9))
    with caplog.at_level(logging.WARNING):
        cached_cuts(model, cuts, tmp / "enc", "cpu", extractor=extractor)
    assert f"1 cached encoder outputs were made from older features (e.g. cut {cuts[2].id})" in caplog.text


def test_switching_the_option_redoes_the_features_stage(corpus, sp_model, caplog):
    from dataclasses import replace

    from whisper_llada.data.cuts import check_part

    tmp, cfgs = corpus
    stored = cfgs["stored"].data
    otf = replace(stored, features="on_the_fly")  # the stored config's directory, switched
    with pytest.raises(ValueError, match=r"has stored features, but data.features is on_the_fly.*rerun the features"):
        check_part(otf, "test-clean")
    with caplog.at_level(logging.INFO):
        _features_stage(otf, "test-clean")
    assert "librispeech_cuts_test-clean.jsonl.gz is stale: option" in caplog.text
    assert "stored features this part no longer reads; delete it" in caplog.text
    assert not any(c.has_features for c in _cuts(cfgs["stored"], "test-clean").values())
    check_part(otf, "test-clean")
    with pytest.raises(ValueError, match=r"has no stored features .* but data.features is stored"):
        check_part(stored, "test-clean")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _features_stage(stored, "test-clean")
    assert "librispeech_cuts_test-clean.jsonl.gz is stale" in caplog.text
    assert all(c.has_features for c in _cuts(cfgs["stored"], "test-clean").values())
    check_part(stored, "test-clean")
