"""Memory plan: the live-tensor tracker's accounting, meta-device figures equal to real ones, full-size counts."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from whisper_llada.config.model import ModelConfig
from whisper_llada.config.recipe import load_recipe_config
from whisper_llada.tools.memory_plan import (
    LLADA_8B,
    PeakMemory,
    Plan,
    _build,
    _components,
    _LengthTokenizer,
    format_plan,
    full_size_config,
    main,
    measure,
)
from whisper_llada.utils.config import from_dict

MB4 = 1000 * 1000 * 4


def test_peak_memory_counts_storages_not_views():
    with PeakMemory() as mem:
        a = torch.randn(1000, 1000)
        b = a.view(-1)
        assert mem.live == MB4
        del a
        assert mem.live == MB4  # the view keeps the storage alive
        del b
        assert mem.live == 0
        x = torch.randn(1000, 1000, requires_grad=True)
        y = (x * 2).exp().sum()  # x * 2 is freed at once; exp keeps its output for backward
        assert mem.live == 2 * MB4 + 4
        y.backward()
        assert mem.peak == 3 * MB4 + 8 and x.grad is not None


def tiny_cfg(**llm) -> ModelConfig:
    whisper = dict(
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=128,
        num_mel_bins=80,
        max_source_positions=100,
    )
    return from_dict(
        ModelConfig,
        {
            "whisper": {"config": whisper},
            "qformer": {
                "num_layers": 1,
                "hidden_size": 32,
                "num_heads": 2,
                "intermediate_size": 64,
                "trim_to_audio": False,
            },
            "llm": {"config": dict(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128, vocab_size=300), **llm},
            "lora": {"dropout": 0.1},
            "loss": {"response_length": 32},
            "tokenizer": {"path": "-"},
        },
        "tiny",
    )


def test_meta_figures_equal_real_tensors():
    """The meta device runs the same operators as a CPU (with SDPA's math kernel), so the same bytes."""
    meta = measure(tiny_cfg(), gen_len=32)
    with sdpa_kernel(SDPBackend.MATH):
        cpu = measure(tiny_cfg(), gen_len=32, device="cpu")
    assert meta == cpu
    # Sanity of what was measured: checkpointing saves memory; two utterances cost more than one.
    assert meta.train_gib[True][1] < meta.train_gib[False][1]
    for pair in (meta.encoder_gib, meta.decode_gib, *meta.train_gib.values()):
        assert Plan.per_utt(pair)[1] > 0
    assert meta.llm_tokens == 15 + 5 * 4 + 32  # prompt, 5 windows of 17 frames (of 100) x 4 queries, response


def test_full_size_counts_are_llada_8b_and_whisper_large_v3(tmp_path):
    cfg = full_size_config(
        load_recipe_config("egs/librispeech/conf/whisper_llada.yaml").model, base=tmp_path
    )  # no hub directories there
    tok = _LengthTokenizer(LLADA_8B["vocab_size"], 15, 20)
    parts = _components(_build(cfg, tok, False, "meta"))
    d, f, n, V = 4096, 12288, 32, 126464
    lora = n * 3 * (8 * d + d * 8)
    llada = 2 * V * d + n * (4 * d * d + 3 * d * f + 2 * d) + d
    assert parts["LLM (with LoRA)"][0] == llada + lora
    assert 8.0e9 < llada < 8.1e9  # "8B"
    assert 630e6 < parts["Whisper encoder"][0] < 640e6  # large-v3's encoder
    assert parts["LLM (with LoRA)"][1] == 2 * llada + 4 * lora  # LLaDA in bfloat16, adapters in float32 (peft)


def test_format_plan_and_refusals(capsys):
    plan = measure(tiny_cfg(), gen_len=32)
    text = format_plan(plan, gpu_gib=0.01, max_duration=20, min_duration=0.5, max_cuts=8)
    assert "| 0.5 | 8 |" in text and "| 10 | 2 |" in text  # capped by max_cuts, then by max_duration
    with pytest.raises(ValueError, match="trim_to_audio"):
        measure(from_dict(ModelConfig, {**_dict(tiny_cfg()), "qformer": {"trim_to_audio": True}}, "t"))


def _dict(cfg):
    import dataclasses

    d = dataclasses.asdict(cfg)
    return {k: d[k] for k in ("whisper", "llm", "lora", "loss", "tokenizer")}


def test_cli_on_a_recipe_config(capsys):
    main(["--config", "egs/librispeech/conf/smoke.yaml", "--set", "model.qformer.trim_to_audio=false", "--gpu-gb", "1"])
    out = capsys.readouterr().out
    assert "| Whisper encoder |" in out and "training, gradient checkpointing" in out and "| 0.5 |" in out


def test_cli_device_check_prints_the_plan_beside_the_device(capsys):
    main(
        [
            "--config",
            "egs/librispeech/conf/smoke.yaml",
            "--set",
            "model.qformer.trim_to_audio=false",
            "--gpu-gb",
            "1",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    rows = [
        line.split("|")[1:-1] for line in out.split("The same steps on cpu")[1].splitlines() if line.startswith("| ")
    ]
    table = {(r[0].strip(), int(r[1])): (float(r[2]), float(r[3]), r[4].strip()) for r in rows[1:]}
    assert len(table) == 8
    # One decoding step has no attention over long inputs: the CPU's tensors are the plan's.
    for b in (1, 2):
        plan, cpu, alloc = table[("decoding (one step)", b)]
        assert plan == pytest.approx(cpu, rel=0.02) and alloc == "-"  # no caching allocator on a CPU
    assert table[("training, gradient checkpointing", 2)][1] > table[("training, gradient checkpointing", 1)][1]
