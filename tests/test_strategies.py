"""The decoding-strategy registry: every mode a setting may name is one registered class, which
validates the setting, names its results and refuses a model that cannot run it; the counts
decoding makes and the speed file's figures from them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from whisper_llada.config.registry import get_arch
from whisper_llada.decoding import strategy as registry
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.decoding.stats import PartTotals, part_speed
from whisper_llada.decoding.strategy import BatchJob, Strategy, get_strategy, register, report_kinds
from whisper_llada.diffusion.counts import PassCounts, add_counts
from whisper_llada.scoring.compare import KINDS


def test_every_mode_is_one_registered_strategy():
    modes = registry.modes()
    assert modes == ("decoding", "diffusion_deliberation", "semi_ar_deliberation", "nbest_rescoring", "autoregressive")
    assert KINDS == report_kinds() and set(KINDS) == set(modes)
    for mode in modes:
        s = get_strategy(mode)
        assert s.mode == mode and DecodeConfig(mode=mode).reads_first_pass == s.reads_first_pass
    with pytest.raises(ValueError, match=r"mode 'greedy': expected one of \('decoding'"):
        DecodeConfig(mode="greedy")


@pytest.fixture
def own_registry(monkeypatch):
    """The registry as it is, restored after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_a_new_strategy_is_one_class_and_one_registration(own_registry):
    @register
    class Oracle(Strategy):
        mode = "oracle"
        report_kind = "oracle"
        models = "any model"

        def validate(self, cfg):
            super().validate(cfg)
            if cfg.steps != 1:
                raise ValueError("the oracle takes one step")

        def tag(self, cfg):
            return "oracle"

        def runs_on(self, arch, cfg):
            return True

        def decode_batch(self, model, batch, cfg, job: BatchJob):
            return batch["texts"]

    cfg = DecodeConfig(mode="oracle", steps=1)
    assert cfg.suffix() == "oracle" and report_kinds()["oracle"] == "oracle"
    assert get_strategy("oracle").decode_batch(None, {"texts": ["A B"]}, cfg, BatchJob(str)) == ["A B"]
    with pytest.raises(ValueError, match="one step"):
        DecodeConfig(mode="oracle", steps=2)
    # The shared refusals hold for it too: it takes no beams and writes no first-pass records.
    with pytest.raises(ValueError, match=r"num_beams is for decoding \(mode decoding or autoregressive\), not oracle"):
        DecodeConfig(mode="oracle", steps=1, num_beams=2)
    with pytest.raises(ValueError, match="as_first_pass is for mode autoregressive"):
        DecodeConfig(mode="oracle", steps=1, as_first_pass="x")


def test_registration_refuses_a_taken_mode_or_a_missing_attribute(own_registry):
    class Twice(Strategy):
        mode = "decoding"
        report_kind = "decoding"
        models = "any model"

    with pytest.raises(ValueError, match="mode 'decoding' is DiffusionDecoding's: Twice cannot take it"):
        register(Twice)

    class Nameless(Strategy):
        report_kind = "x"
        models = "any model"

    with pytest.raises(ValueError, match="Nameless sets no mode"):
        register(Nameless)
    assert type(get_strategy("decoding")).__name__ == "DiffusionDecoding"


def _model(arch: str):
    return SimpleNamespace(cfg=SimpleNamespace(arch=arch, arch_spec=get_arch(arch)))


def test_strategies_ask_the_arch_whether_a_model_can_run_them():
    def runs(mode: str, arch: str, **kw) -> bool:
        cfg = DecodeConfig(mode=mode, **kw)
        try:
            get_strategy(mode).check_model(_model(arch), cfg)
        except ValueError as e:
            assert f"cannot run mode {mode}" in str(e)
            return False
        return True

    assert runs("decoding", "whisper_llada") and runs("decoding", "whisper_decoder_mdm")
    assert not runs("decoding", "whisper_llama") and not runs("diffusion_deliberation", "whisper_decoder_ar")
    assert runs("nbest_rescoring", "whisper_hf_mlm") and runs("nbest_rescoring", "whisper_decoder_ar")
    assert not runs("nbest_rescoring", "whisper_llama")
    assert runs("autoregressive", "whisper_llama") and not runs("autoregressive", "whisper_decoder_mdm")
    # Only the Whisper-decoder twin's beam returns its hypotheses for first-pass records.
    assert runs("autoregressive", "whisper_decoder_ar", as_first_pass="twin")
    assert not runs("autoregressive", "whisper_llama", as_first_pass="twin")


def test_pass_counts_add_up():
    counts = PassCounts()
    add_counts(counts, torch.tensor([2, 3]), torch.tensor([10, 12]), 3)
    add_counts(counts, torch.tensor([1, 1]), None, 1)
    assert counts.forward_passes.tolist() == [3, 4]
    assert counts.positions.tolist() == [10, 12]
    assert counts.model_calls == 4
    assert (counts.total_passes(), counts.total_positions()) == (7, 22)
    add_counts(None, torch.tensor([1]))  # nothing to count into: nothing happens
    assert PassCounts().total_passes() == 0


def test_part_speed_keeps_the_speed_file_format():
    one, two = PartTotals(), PartTotals()
    one.add_batch(PassCounts(torch.tensor([4, 6]), torch.tensor([40, 60])), 2, 5.0, 1.25, 0.25, 1)
    two.add_batch(PassCounts(torch.tensor([5]), 0), 1, 3.0, 2.0, 0.5, 0)
    speed = part_speed([one, two], "diffusion-gen-8-steps-8", 8)
    # Utterances, audio, passes, positions and full canvases summed; wall time and front end the slowest's.
    assert json.dumps(speed) == json.dumps(
        {
            "num_utts": 3,
            "audio_seconds": 8.0,
            "wall_seconds": 2.0,
            "rtf": 0.25,
            "processes": 2,
            "canvas_full": 1,
            "front_end_seconds": 0.5,
            "forward_passes_per_utt": 5.0,
            "positions_per_utt": 33.3,
        }
    )
    # A model that counts no positions (the LLaMA twin) shows none.
    assert part_speed([two], "x", 8)["positions_per_utt"] is None
