"""Full-width check: whisper-large-v3 and LLaDA-8B at their true widths with a layer or two, random
weights, through the recipe's own stage scripts and trainer; peak memory beside the memory plan's.

On a spoken corpus of a few short utterances it runs the manifests, features (128 mel bins) and
lang stages, writes the random LLM once as a hub directory that every later stage loads, trains a few steps on torchrun (gloo on CPU, NCCL on CUDA), resumes from the middle
checkpoint and compares the losses, decodes and deliberates the test part, and writes a markdown
report. Each training process reports its memory: resident set on a CPU (/proc's VmRSS and VmHWM),
``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (whisper_llada/tools/ is two below it)
GIB = 2**30
TRAIN, DEV, TEST = "train-clean-100", "dev-clean", "test-clean"

# The tiny size (for the CPU mode of tools/gpu_check.sh): the same recipe at toy widths. Mel bins
# and Whisper's 1500 positions stay: the features and the 30 s window are the recipe's.
TINY_WHISPER = dict(
    d_model=64,
    encoder_layers=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=128,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=128,
    num_mel_bins=128,
    max_source_positions=1500,
)
TINY_LLADA = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=512)

log = logging.getLogger(__name__)


def shapes(size: str, whisper_layers: int, llm_layers: int) -> tuple[dict, dict]:
    """Whisper and LLaDA configs: the hub checkpoints' widths (``full``) or toy ones, with these layer counts."""
    from whisper_llada.tools.memory_plan import LLADA_8B, WHISPER_LARGE_V3

    whisper, llm = (WHISPER_LARGE_V3, LLADA_8B) if size == "full" else (TINY_WHISPER, TINY_LLADA)
    return {**whisper, "encoder_layers": whisper_layers}, {**llm, "n_layers": llm_layers}


def overrides(args) -> list[str]:
    """``--set`` values that turn the recipe config into the check's: the slice's shapes with no hub
    directory, the corpus's BPE, its three parts, a few training steps, small decoding canvases."""
    whisper, llm = shapes(args.size, args.whisper_layers, args.llm_layers)
    train = dict(
        num_epochs=1,
        max_duration=1000,  # batches are capped by max_cuts
        max_cuts=args.batch,
        num_buckets=2,
        warmup_steps=1,
        decay_steps=100,
        lr=1.0e-4,
        save_every_n=args.resume_at,  # 0: none
        keep_last_k=100,
        log_interval=1,
        num_workers=0,
        valid_max_batches=1,
    )
    decode = [
        dict(
            mode="decoding",
            gen_len=args.gen_len,
            steps=args.decode_steps,
            block_length=args.gen_len,
            batch_size=args.decode_batch,
        )
    ]
    deliberate = [
        dict(
            mode="diffusion_deliberation",
            mask_ratio=0.3,
            masking_type="low_confidence",
            steps=args.decode_steps,
            batch_size=args.decode_batch,
        )
    ]
    sets = {
        "model.whisper.path": None,
        "model.whisper.config": whisper,
        "model.llm.path": None,
        "model.llm.config": llm,
        **({"model.llm.dtype": args.llm_dtype} if args.llm_dtype else {}),
        "model.tokenizer.type": "sentencepiece",
        "model.tokenizer.path": f"data/lang_bpe_{args.vocab}/bpe.model",
        "model.loss.response_length": args.response_length,
        "model.qformer.trim_to_audio": not args.full_window,
        "data.train_parts": [TRAIN],
        "data.dev_parts": [DEV],
        "data.test_parts": [TEST],
        "data.vocab_size": args.vocab,
        "firstpass.ctc_config": None,
        "first_pass_system": "synthetic",
        "decode": decode,
        "deliberate": deliberate,
        **{f"train.{k}": v for k, v in train.items()},
    }
    return [f"{k}={json.dumps(v)}" for k, v in sets.items()]


def make_corpus(dl_dir: Path, counts: dict[str, int], seed: int = 0) -> None:
    """Short fortune sentences (3 to 5 words, about 1-2 s) spoken by espeak-ng, in LibriSpeech layout."""
    import random

    from whisper_llada.corpora.fortunes import fortune_sentences
    from whisper_llada.corpora.synth_corpus import Speaker, write_part

    sents = fortune_sentences(min_words=3, max_words=5)
    random.Random(seed).shuffle(sents)
    voices = [Speaker(101, "en-us", 175, 50), Speaker(102, "en+f3", 170, 60), Speaker(103, "en-gb-x-rp", 180, 45)]
    k = 0
    for part, n in counts.items():
        write_part(dl_dir, part, [(voices[i % 3], s) for i, s in enumerate(sents[k : k + n])])
        k += n


def write_random_llm(cfg, out: Path) -> Path:
    """A random LLaDA of ``cfg.llm.config`` (the tokenizer's ids, ``cfg.llm.dtype``; ``cfg`` a ModelConfig) written as a hub
    directory (config.json + safetensors), so that every stage after it loads weights as a real run does.

    Built on the meta device and filled once in place, seeded by ``cfg.init_seed``: N(0, init_std)
    for matrices, norms one, biases zero (a build from the config fills each matrix twice, the
    module's default and then LLaDA's; at 8B widths that is most of a process's start-up on a CPU).
    """
    import torch

    from whisper_llada.data.tokenizer import build_tokenizer
    from whisper_llada.models.build import DTYPES, llada_config
    from whisper_llada.models.llada import LLaDAModelLM

    config = llada_config(cfg, build_tokenizer(cfg.tokenizer))
    default = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[cfg.llm.dtype])
    try:
        with torch.device("meta"):
            model = LLaDAModelLM(config)
    finally:
        torch.set_default_dtype(default)
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(cfg.init_seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, config.init_std, generator=gen)
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
    model.save_pretrained(out)
    return out


def _run(cmd: list, cwd: Path, what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    t0 = time.time()
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {' '.join(map(str, cmd))}\n{out[-6000:]}")
    log.info("%s: %.1f s", what, time.time() - t0)
    return out


# ---------------------------------------------------------------- one training process


def _proc_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Sets VmHWM back to the current resident set (Linux clear_refs 5), so the peak that follows is the phase's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def train_rank(args) -> None:
    """One torchrun process: the recipe's Trainer, with its memory read before and during training."""
    import torch
    import torch.distributed as dist

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.training.trainer import Trainer, dist_env
    from whisper_llada.utils.checkpoint_io import atomic_write_text
    from whisper_llada.utils.logging import setup_logger

    rank, _, world = dist_env()
    setup_logger(args.exp_dir / "log" / "log-train", rank, world)
    cfg = load_recipe_config(args.config, args.overrides)
    rss_start = _proc_kib("VmRSS")
    start = (None, args.start_batch) if args.start_batch else (1, 0)
    trainer = Trainer(cfg, args.exp_dir, *start, args.device)
    cuda = trainer.device.type == "cuda"
    if not cuda:
        # Weights loaded from safetensors are mapped from the file and enter the resident set when
        # first read (a frozen embedding's unused rows never would); read each once, as a move to a
        # GPU does, so the figure is the resident model the plan sizes.
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.sum()
    rss_built, rss_init_peak = _proc_kib("VmRSS"), _proc_kib("VmHWM")
    reset = _reset_peak_rss()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    cuda_built = torch.cuda.memory_allocated() if cuda else None
    t0 = time.time()
    try:
        losses = trainer.train()
        seconds = time.time() - t0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    report = {
        "rank": rank,
        "world": world,
        "device": str(trainer.device),
        "losses": losses,
        "seconds": seconds,
        "utts": args.batch * len(losses),
        "rss_start_gib": rss_start / 2**20 if rss_start else None,
        "rss_built_gib": rss_built / 2**20 if rss_built else None,
        # The peak while the Trainer was made (model, DDP's broadcast of every parameter from rank 0).
        "rss_init_peak_gib": rss_init_peak / 2**20 if rss_init_peak else None,
        # VmHWM after a reset: the peak of training alone; otherwise of the whole process.
        "rss_peak_gib": _proc_kib("VmHWM") / 2**20 if _proc_kib("VmHWM") else None,
        "rss_peak_reset": reset,
        "cuda_built_gib": cuda_built / GIB if cuda else None,
        "cuda_peak_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
    }
    atomic_write_text(args.exp_dir / f"memory-rank{rank}.json", json.dumps(report, indent=1))


# ---------------------------------------------------------------- the check


def _train(args, conf: Path, sets: list[str], work: Path, exp: str, start_batch: int = 0) -> list[dict]:
    cmd = ["torchrun", "--standalone", "--nproc-per-node", args.nproc, "-m", "whisper_llada.tools.full_width", "rank"]
    cmd += ["--config", conf, "--exp-dir", exp, "--device", args.device, "--batch", args.batch]
    cmd += ["--start-batch", start_batch] + [a for s in sets for a in ("--set", s)]
    _run(cmd, work, f"training ({exp})")
    return [json.loads((work / exp / f"memory-rank{r}.json").read_text()) for r in range(args.nproc)]


def write_first_pass(cuts_path: Path, out: Path) -> int:
    """A made-up first pass of the test cuts to deliberate: each transcript without its last word."""
    from lhotse import load_manifest_lazy

    from whisper_llada.firstpass.records import write_records

    records = []
    for cut in load_manifest_lazy(cuts_path):
        hyp = " ".join(cut.supervisions[0].text.split()[:-1])
        records.append({"id": cut.id, "text": hyp, "nbest": [{"text": hyp, "score": 0.0}]})
    write_records(out, records)
    return len(records)


def _speed(exp_dir: Path, mode: str) -> dict:
    (path,) = sorted((exp_dir / mode).glob(f"speed-{TEST}-*.json"))
    return json.loads(path.read_text())


def plan_for(cfg, args, audio_seconds: float):
    """The memory plan of the check's model (the recipe config as loaded), its prompt and utterance length."""
    from whisper_llada.data.tokenizer import build_tokenizer
    from whisper_llada.tools.memory_plan import full_size_config, measure

    prompt = len(build_tokenizer(cfg.model.tokenizer).prompt_ids(cfg.model.prompt))
    return measure(
        full_size_config(cfg.model),  # the random LLM's shape from its directory's config.json
        gen_len=args.gen_len,
        prompt_tokens=prompt,
        audio_seconds=None if args.full_window else audio_seconds,
    )


def compare_memory(plan, report: dict, batch: int, checkpointing: bool) -> dict:
    """Measured GiB beside the plan's for one training process: the model as built (weights, and
    DDP's gradient buckets, one copy of the trainable parameters) and what training adds to it."""
    parts = plan.training_process(batch, checkpointing)
    ddp = plan.trainable_bytes / GIB if report["world"] > 1 else 0.0
    plan_built = parts["weights"] + ddp
    plan_train = parts["AdamW moments"] + parts["step"]
    if report["cuda_peak_gib"] is not None:
        built, train = report["cuda_built_gib"], report["cuda_peak_gib"] - report["cuda_built_gib"]
    else:
        built = report["rss_built_gib"] - report["rss_start_gib"]
        train = report["rss_peak_gib"] - report["rss_built_gib"] if report["rss_peak_reset"] else None
    return {"plan_built": plan_built, "built": built, "plan_train": plan_train, "train": train}


def _ratio(measured: float | None, plan: float) -> str:
    return "-" if measured is None or plan <= 0 else f"{measured / plan:.2f}"


def format_report(
    args, cmdline: str, rows: list[dict], resume: dict, speeds: dict, timings: dict, reports: list[dict]
) -> str:
    unit = "GPU memory allocated" if args.device.startswith("cuda") else "resident set (VmRSS, VmHWM)"
    lines = [
        "# Full-width check",
        "",
        f"`{cmdline}`",
        "",
        f"Size {args.size}: Whisper encoder layers {args.whisper_layers}, LLM layers {args.llm_layers}, "
        f"{args.nproc} training process(es) on {args.device}, {args.batch} utterance(s) a step and process, "
        f"{'the 30 s window of audio tokens' if args.full_window else 'audio tokens trimmed to the audio'}, "
        f"response length {args.response_length}, LLM weights {args.llm_dtype or 'as the config has them'}.",
        "",
        f"## Memory of one training process ({unit}, GiB)",
        "",
        "| rank | model built | plan | ratio | training adds | plan | ratio | total | plan | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        total = None if r["train"] is None else r["built"] + r["train"]
        plan_total = r["plan_built"] + r["plan_train"]
        train = "-" if r["train"] is None else f"{r['train']:.3f}"
        lines.append(
            f"| {r['rank']} | {r['built']:.3f} | {r['plan_built']:.3f} | {_ratio(r['built'], r['plan_built'])} | "
            f"{train} | {r['plan_train']:.3f} | {_ratio(r['train'], r['plan_train'])} | "
            f"{'-' if total is None else f'{total:.3f}'} | {plan_total:.3f} | {_ratio(total, plan_total)} |"
        )
    if reports and reports[0].get("rss_init_peak_gib") and reports[0].get("rss_start_gib"):
        init = reports[0]["rss_init_peak_gib"] - reports[0]["rss_start_gib"]
        lines += [
            "",
            f"While the trainer was made (model, data, optimiser, DDP), rank 0's resident set peaked "
            f"{init:.3f} GiB above its start; the plan sizes training, not this.",
        ]
    lines += [
        "",
        "## Training, resume, decoding, deliberation",
        "",
        "| what | figure |",
        "|---|---|",
        f"| training steps per process | {resume['steps']} |",
        f"| seconds per step (whole train(): validation and saves included) | {resume['sec_per_step']:.2f} |",
        f"| training utterances per second, all processes | {resume['utts_per_sec']:.2f} |",
        f"| losses of rank 0 | {', '.join(f'{x:.4f}' for x in resume['full'])} |",
    ]
    if args.resume_at:
        lines += [
            f"| after resuming from checkpoint-{args.resume_at}.pt | "
            f"{', '.join(f'{x:.4f}' for x in resume['resumed'])} |",
            f"| largest difference of a resumed loss (any rank) | {resume['max_diff']:.2e} |",
        ]
    for mode, s in speeds.items():
        lines.append(
            f"| {mode}: utterances, WER %, utterances per second, RTF | {s['num_utts']}, {s['wer']}, "
            f"{s['num_utts'] / s['wall_seconds']:.2f}, {s['rtf']} |"
        )
    for what, sec in timings.items():
        lines.append(f"| {what} (s) | {sec:.1f} |")
    return "\n".join(lines) + "\n"


def run_check(args) -> dict:
    """Runs the check; returns its figures (the report is written to ``args.out_dir``)."""
    from lhotse import load_manifest_lazy

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.utils.checkpoint_io import atomic_write_text

    t_all = time.time()
    work = args.work_dir.resolve()
    conf = args.config.resolve()
    out_dir = (args.out_dir or work).resolve()
    sets = overrides(args) + args.overrides
    dl, timings = work / "dl", {}
    per_rank = args.nproc * args.batch
    t0 = time.time()
    if not (dl / "LibriSpeech").is_dir():
        make_corpus(dl, {TRAIN: per_rank * args.steps, DEV: per_rank, TEST: args.num_test})
    set_args = [a for s in sets for a in ("--set", s)]
    _prepare_data(conf, set_args, work, dl)
    timings["corpus, manifests, features, lang"] = time.time() - t0
    os.chdir(work)  # the config's relative paths (data/..., the BPE model) are the work directory's
    cfg = load_recipe_config(conf, sets)
    if cfg.model.llm.path is None and cfg.model.arch_spec.llm_family == "llada":
        t0 = time.time()
        llm_dir = write_random_llm(cfg.model, work / "llm-random")
        loaded = [f"model.llm.path={json.dumps(str(llm_dir))}", "model.llm.config=null"]
        sets += loaded
        set_args += [a for s in loaded for a in ("--set", s)]
        cfg = load_recipe_config(conf, sets)
        timings["random LLM written once"] = time.time() - t0
    train_cuts = list(load_manifest_lazy(cfg.data.cuts_path(TRAIN)))
    if len(train_cuts) < per_rank * args.steps:
        raise RuntimeError(f"{cfg.data.cuts_path(TRAIN)}: {len(train_cuts)} cuts, {per_rank * args.steps} needed")

    full, resume = _training_runs(args, conf, sets, work, timings)
    speeds = _decoding_runs(args, conf, set_args, cfg, work, timings)

    t0 = time.time()
    plan = plan_for(cfg, args, max(c.duration for c in train_cuts))
    timings["memory plan (meta device)"] = time.time() - t0
    rows = [
        {"rank": r["rank"], **compare_memory(plan, r, args.batch, cfg.model.llm.gradient_checkpointing)} for r in full
    ]
    timings["whole check"] = time.time() - t_all
    cmdline = "tools/full_width_check.py " + " ".join(args.argv)
    text = format_report(args, cmdline, rows, resume, speeds, timings, full)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "full_width.md", text)
    print(text, flush=True)
    return {"memory": rows, "resume": resume, "speeds": speeds, "timings": timings, "reports": full}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "egs/librispeech/conf/whisper_llada.yaml")
    p.add_argument("--work-dir", type=Path, required=True, help="corpus, data and exp directories go here")
    p.add_argument("--out-dir", type=Path, help="where full_width.md goes (default: the work directory)")
    p.add_argument(
        "--size", choices=("full", "tiny"), default="full", help="full: the hub models' widths; tiny: toy widths"
    )
    p.add_argument("--whisper-layers", type=int, default=1)
    p.add_argument("--llm-layers", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument(
        "--llm-dtype",
        choices=("float32", "bfloat16"),
        help="the LLM's weights (default: the config's bfloat16 on a GPU, float32 on a CPU, where torch's "
        "bfloat16 matmuls without bf16 instructions are too slow: 3 GFLOPS forward and 0.04 backward "
        "against float32's 52, one AVX2 core, torch 2.13)",
    )
    p.add_argument("--nproc", type=int, default=2, help="training processes (torchrun)")
    p.add_argument("--batch", type=int, default=1, help="utterances a step and process (train.max_cuts)")
    p.add_argument("--steps", type=int, default=3, help="training steps per process")
    p.add_argument(
        "--resume-at", type=int, default=1, help="the checkpoint step a second run resumes from (0: no second run)"
    )
    p.add_argument("--response-length", type=int, default=32, help="model.loss.response_length")
    p.add_argument(
        "--full-window",
        action="store_true",
        help="audio tokens of the whole 30 s window, as the paper's config (default: trimmed to the audio, "
        "which keeps a CPU run to minutes)",
    )
    p.add_argument("--gen-len", type=int, default=16, help="decoding canvas")
    p.add_argument("--decode-steps", type=int, default=4, help="denoising steps of decoding and deliberation")
    p.add_argument("--num-test", type=int, default=2, help="test utterances decoded and deliberated")
    p.add_argument("--decode-batch", type=int, default=4, help="utterances a decoding batch")
    p.add_argument("--vocab", type=int, default=60, help="BPE pieces of the corpus (the LLM still embeds its own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def _rank_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="one training process of the full-width check (run by torchrun)")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--start-batch", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main(argv=None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rank"]:
        train_rank(_rank_parser().parse_args(argv[1:]))
        return None
    from whisper_llada.utils.logging import setup_logger

    args = get_parser().parse_args(argv)
    args.argv = argv
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.llm_dtype is None and not args.device.startswith("cuda"):
        args.llm_dtype = "float32"
    if not 0 <= args.resume_at < args.steps:
        raise SystemExit(f"--resume-at {args.resume_at}: must lie in 0..--steps {args.steps} - 1")
    setup_logger()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return run_check(args)


if __name__ == "__main__":
    main()


def _prepare_data(conf: Path, set_args: list, work: Path, dl: Path) -> None:
    """The recipe's manifests, features and lang stages on the corpus under ``dl``."""
    local = ROOT / "local"
    _run(
        [
            sys.executable,
            local / "prepare_manifests.py",
            "--config",
            conf,
            "--corpus-dir",
            dl / "LibriSpeech",
            *set_args,
        ],
        work,
        "manifests",
    )
    _run([sys.executable, local / "compute_fbank.py", "--config", conf, *set_args], work, "features")
    _run([sys.executable, local / "prepare_lang.py", "--config", conf, *set_args], work, "lang")


def _training_runs(args, conf: Path, sets: list, work: Path, timings: dict) -> tuple[list, dict]:
    """Training uninterrupted, then (``--resume-at``) resumed from its checkpoint at that step: every
    rank's report of the uninterrupted run, and how the resumed run's losses compare with it."""
    t0 = time.time()
    for exp in ("exp/full", "exp/resumed"):
        shutil.rmtree(work / exp, ignore_errors=True)
    full = _train(args, conf, sets, work, "exp/full")
    timings["training, uninterrupted"] = time.time() - t0
    resumed = [{"losses": []} for _ in full]
    if args.resume_at:
        t0 = time.time()
        (work / "exp/resumed").mkdir(parents=True)
        shutil.copy(work / f"exp/full/checkpoint-{args.resume_at}.pt", work / "exp/resumed")
        resumed = _train(args, conf, sets, work, "exp/resumed", start_batch=args.resume_at)
        timings["training, resumed"] = time.time() - t0
    # zip(strict): a resumed run with more or fewer steps than the uninterrupted one's rest is an error.
    diffs = [
        abs(a - b)
        for f, r in zip(full, resumed)
        for a, b in zip(f["losses"][args.resume_at :] if args.resume_at else [], r["losses"], strict=True)
    ]
    resume = {
        "steps": len(full[0]["losses"]),
        "sec_per_step": full[0]["seconds"] / max(1, len(full[0]["losses"])),
        "utts_per_sec": sum(r["utts"] for r in full) / full[0]["seconds"],
        "full": full[0]["losses"],
        "resumed": resumed[0]["losses"],
        "max_diff": max(diffs) if diffs else None,
        "resumed_steps": len(diffs),
    }
    return full, resume


def _decoding_runs(args, conf: Path, set_args: list, cfg, work: Path, timings: dict) -> dict:
    """Decoding and deliberation of the trained model, each as its stage script runs it: their speeds."""
    local = ROOT / "local"
    t0 = time.time()
    common = ["--config", conf, *set_args, "--exp-dir", "exp/full", "--checkpoint", "exp/full/epoch-1.pt"]
    _run([sys.executable, local / "decode.py", *common, "--device", args.device], work, "decoding")
    timings["decoding (process)"] = time.time() - t0
    t0 = time.time()
    write_first_pass(cfg.data.cuts_path(TEST), work / "data/firstpass/synthetic" / f"{TEST}.jsonl.gz")
    _run([sys.executable, local / "deliberate.py", *common, "--device", args.device], work, "deliberation")
    timings["deliberation (process)"] = time.time() - t0
    return {m: _speed(work / "exp/full", m) for m in ("decoding", "diffusion_deliberation")}
