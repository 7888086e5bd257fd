"""The full-width check: its config is the recipe's at the hub models' widths, the memory plan of a
trimming Q-Former, and (slow) the check itself on CPU and the GPU check's CPU mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from whisper_llada.config.recipe import load_recipe_config
from whisper_llada.tools import full_width
from whisper_llada.tools.memory_plan import Plan, measure

ROOT = Path(__file__).resolve().parent.parent


def test_overrides_give_the_true_widths_of_the_recipe_config():
    args = full_width.get_parser().parse_args(["--work-dir", "w", "--llm-layers", "2"])
    cfg = load_recipe_config(ROOT / "egs/librispeech/conf/whisper_llada.yaml", full_width.overrides(args))
    m = cfg.model
    assert m.whisper.path is None and m.llm.path is None
    assert (m.whisper.config["d_model"], m.whisper.config["encoder_attention_heads"]) == (1280, 20)
    assert (m.whisper.config["encoder_ffn_dim"], m.whisper.config["num_mel_bins"]) == (5120, 128)
    assert m.whisper.config["encoder_layers"] == 1 and m.whisper.config["max_source_positions"] == 1500
    llm = m.llm.config
    assert (llm["d_model"], llm["n_heads"], llm["n_kv_heads"], llm["mlp_hidden_size"]) == (4096, 32, 32, 12288)
    assert (llm["vocab_size"], llm["rope_theta"], llm["n_layers"]) == (126464, 500000.0, 2)
    # What the recipe trains with is kept: bf16 LLaDA, LoRA r 8 on q/k/v, checkpointing, its Q-Former.
    assert m.llm.dtype == "bfloat16" and m.llm.train == "lora" and m.llm.gradient_checkpointing
    assert m.lora.r == 8 and list(m.lora.targets) == ["q_proj", "k_proj", "v_proj"]
    assert (m.qformer.hidden_size, m.qformer.num_layers, m.qformer.num_query) == (768, 2, 4)
    assert m.tokenizer.type == "sentencepiece" and cfg.data.num_mel_bins == 128
    assert cfg.train.max_cuts == 1 and cfg.train.save_every_n == 1 and cfg.decode_settings()[0].gen_len == 16


def _trim_cfg():
    from test_memory_plan import tiny_cfg

    cfg = tiny_cfg()
    from dataclasses import replace

    return replace(cfg, qformer=replace(cfg.qformer, trim_to_audio=True))


def test_memory_plan_of_a_trimming_qformer_equals_real_tensors():
    """With qformer.trim_to_audio the plan takes an utterance length; meta figures equal a CPU's."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    meta = measure(_trim_cfg(), gen_len=16, audio_seconds=0.5)
    with sdpa_kernel(SDPBackend.MATH):
        cpu = measure(_trim_cfg(), gen_len=16, device="cpu", audio_seconds=0.5)
    assert meta == cpu
    # 0.5 s: 25 encoder frames, windows of 17 frames (1/3 s at 50 a second): 2 cover it, plus one.
    assert meta.llm_tokens == 15 + 3 * 4 + 32
    longer = measure(_trim_cfg(), gen_len=16, audio_seconds=1.0)
    assert longer.llm_tokens > meta.llm_tokens and longer.train_gib[True][1] > meta.train_gib[True][1]
    with pytest.raises(ValueError, match="audio_seconds"):
        measure(_trim_cfg(), gen_len=16)


def test_compare_memory_reads_the_plan_per_process():
    plan = measure(_trim_cfg(), gen_len=16, audio_seconds=0.5)  # a tiny model: a second
    parts = plan.training_process(2)
    assert parts["step"] >= Plan.at_batch(plan.train_gib[True], 2) > Plan.at_batch(plan.train_gib[True], 1)
    report = dict(world=2, cuda_peak_gib=None, rss_start_gib=0.5, rss_built_gib=0.5 + 0.1, rss_peak_reset=True)
    report["rss_peak_gib"] = report["rss_built_gib"] + 0.2
    row = full_width.compare_memory(plan, report, 2, True)
    assert row["built"] == pytest.approx(0.1) and row["train"] == pytest.approx(0.2)
    assert row["plan_built"] == pytest.approx(plan.weights_gib + plan.trainable_bytes / 2**30)  # DDP's buckets
    assert row["plan_train"] == pytest.approx(parts["AdamW moments"] + parts["step"])


def test_random_llm_directory_is_what_the_recipe_loads(tmp_path, sp_model):
    """The check's random LLaDA: seeded, N(0, init_std) matrices and unit norms, loaded by model.llm.path."""
    from dataclasses import replace

    from conftest import tiny_model_config

    from whisper_llada.models.build import build_model
    from whisper_llada.models.llada import LLaDAModelLM

    cfg = tiny_model_config(sp_model, llm__dtype="float32")
    out = full_width.write_random_llm(cfg, tmp_path / "a")
    a = LLaDAModelLM.from_pretrained(out)
    b = LLaDAModelLM.from_pretrained(full_width.write_random_llm(cfg, tmp_path / "b"))
    assert (a.config.d_model, a.config.n_layers) == (64, 2) and a.config.vocab_size >= 80  # BPE pieces and more
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name  # the same seed, the same weights
        if p.dim() == 1:
            assert torch.all(p == 1), name
    head = a.model.transformer.ff_out.weight
    assert abs(head.std().item() / a.config.init_std - 1) < 0.05 and abs(head.mean().item()) < 1e-3
    model = build_model(replace(cfg, llm=replace(cfg.llm, path=str(out), config=None)))
    assert torch.equal(model.llm.get_input_embeddings().weight, a.get_input_embeddings().weight)


def _check(tmp_path, *extra) -> str:
    cmd = [sys.executable, "tools/full_width_check.py", "--work-dir", str(tmp_path / "w"), "--device", "cpu", *extra]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


@pytest.mark.slow
def test_full_width_check_on_cpu(tmp_path):
    """One Whisper layer and one LLaDA layer at full width on two gloo processes: the resumed run's
    losses are the uninterrupted run's, decoding and deliberation run, memory is the plan's."""
    # Its smallest form: two steps, two denoising steps, one test utterance.
    out = _check(tmp_path, "--steps", "2", "--decode-steps", "2", "--num-test", "1")
    w = tmp_path / "w"
    # Every stage loaded the random LLM written once at LLaDA-8B's width and vocabulary.
    llm = json.loads((w / "llm-random/config.json").read_text())
    assert (llm["d_model"], llm["vocab_size"], llm["n_layers"]) == (4096, 126464, 1)
    ranks = [json.loads((w / f"exp/full/memory-rank{r}.json").read_text()) for r in (0, 1)]
    resumed = [json.loads((w / f"exp/resumed/memory-rank{r}.json").read_text()) for r in (0, 1)]
    for full, res in zip(ranks, resumed):
        # Two steps; the second run starts from checkpoint-1.pt and must repeat step 2 exactly.
        assert len(full["losses"]) == 2 and all(torch.isfinite(torch.tensor(full["losses"])))
        assert res["losses"] == full["losses"][1:]
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank its own utterances and masks
    for mode in ("decoding", "diffusion_deliberation"):
        (speed,) = (w / "exp/full" / mode).glob("speed-test-clean-*.json")
        assert json.loads(speed.read_text())["num_utts"] == 1
    report = (w / "full_width.md").read_text()
    assert report in out
    rows = [
        line.split("|")[1:-1] for line in report.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")
    ]
    assert len(rows) == 2
    for r in rows:
        built, plan_built, train, plan_train, total, plan_total = (float(r[i]) for i in (1, 2, 4, 5, 7, 8))
        assert plan_built > 2.4  # 1.3 B parameters, LLaDA's in bf16
        assert abs(total / plan_total - 1) < 0.15, r
        assert abs(built / plan_built - 1) < 0.15, r


@pytest.mark.slow
def test_gpu_check_cpu_mode(tmp_path):
    """tools/gpu_check.sh --device cpu --size tiny: the benchmark and the full-width check, one table."""
    p = subprocess.run(
        ["bash", "tools/gpu_check.sh", "--device", "cpu", "--size", "tiny", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    text = (tmp_path / "gpu_check.md").read_text()
    assert "| AR twin greedy (KV cache) | 2 |" in text and "| diffusion steps 4 | 2 |" in text
    assert "## Full-width check" in text and "resumed loss" not in text  # one process, no second run
    assert "| decoding: utterances, WER %, utterances per second, RTF | 2," in text
