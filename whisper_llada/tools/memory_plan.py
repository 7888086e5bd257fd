"""Memory plan of a recipe's model at full size (e.g. whisper-large-v3 + LLaDA-8B), without weights.

The model is built on the ``meta`` device; parameters are counted, and the peak of live
tensors in one training step and one decoding step is measured by a dispatch-mode tracker.
"""

from __future__ import annotations

import argparse
import json
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from whisper_llada.config.model import ModelConfig
from whisper_llada.data.audio import Audio
from whisper_llada.models.build import build_model
from whisper_llada.tools.random_models import VocabTokenizer

GIB = 2**30

# Shapes of the hub checkpoints (their config.json), used when the recipe's paths are absent.
WHISPER_LARGE_V3 = dict(
    d_model=1280,
    encoder_layers=32,
    encoder_attention_heads=20,
    encoder_ffn_dim=5120,
    decoder_layers=32,
    decoder_attention_heads=20,
    decoder_ffn_dim=5120,
    num_mel_bins=128,
    max_source_positions=1500,
    vocab_size=51866,
)
LLADA_8B = dict(
    d_model=4096,
    n_layers=32,
    n_heads=32,
    n_kv_heads=32,
    mlp_hidden_size=12288,
    vocab_size=126464,
    rope_theta=500000.0,
    max_sequence_length=4096,
)
# "Transcribe the audio:" in LLaDA's Llama-3 chat template: BOS, user header, 5 text tokens,
# <|eot_id|>, assistant header (each header: start, role, end, "\n\n").
LLADA_PROMPT_TOKENS = 15


class PeakMemory(TorchDispatchMode):
    """Live and peak bytes of the tensors created while it is active.

    Counted per storage, when an operator returns a tensor that aliases none of its inputs;
    released when the storage dies. Works on any device, ``meta`` included, so it sizes a
    model that was never allocated. Tensors that existed before (weights) are not counted.
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        for i, t in enumerate(tree_flatten(out)[0]):
            # Views and in-place results share a storage that is already counted (or external).
            if not isinstance(t, torch.Tensor) or (i < len(returns) and returns[i].alias_info is not None):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self._seen:
                continue
            n = storage.nbytes()
            self._seen.add(key)
            self.live += n
            weakref.finalize(storage, self._release, key, n)
        self.peak = max(self.peak, self.live)
        return out


class _LengthTokenizer(VocabTokenizer):
    """Ids only, of fixed lengths: memory depends on how many tokens there are, not which."""

    def __init__(self, vocab: int, prompt_tokens: int, text_tokens: int):
        super().__init__(vocab)
        self.prompt_tokens, self.text_tokens = prompt_tokens, text_tokens

    def prompt_ids(self, task: str) -> list[int]:
        return list(range(10, 10 + self.prompt_tokens))

    def encode(self, text: str) -> list[int]:
        return list(range(100, 100 + self.text_tokens))


def full_size_config(cfg: ModelConfig, base: Path = Path(".")) -> ModelConfig:
    """``cfg`` with Whisper and LLM shapes read from their hub directories' config.json (paths
    relative to ``base``), or whisper-large-v3 and LLaDA-8B shapes where they are not here."""

    def shape(path: str | None, config: dict | None, default: dict) -> dict:
        if config is not None:
            return config
        f = base / path / "config.json"
        return json.loads(f.read_text()) if f.is_file() else default

    whisper = shape(cfg.whisper.path, cfg.whisper.config, WHISPER_LARGE_V3)
    whisper = {k: v for k, v in whisper.items() if not k.startswith("_") and k not in ("architectures", "torch_dtype")}
    llm = shape(cfg.llm.path, cfg.llm.config, LLADA_8B)
    return replace(
        cfg, whisper=replace(cfg.whisper, path=None, config=whisper), llm=replace(cfg.llm, path=None, config=llm)
    )


@dataclass
class Plan:
    params: dict  # component -> (parameters, bytes as built)
    trainable: int
    trainable_bytes: int
    lora: int
    llm_tokens: int  # sequence length the LLM reads per utterance
    encoder_gib: tuple  # peak of the frozen encoder at batch 1 and 2
    train_gib: dict  # gradient checkpointing on/off -> peak at batch 1 and 2 (activations + grads)
    decode_gib: tuple  # one decoding step at batch 1 and 2
    # On a CUDA device: (step, batch) -> the caching allocator's peak in GiB beyond the step's start.
    allocator_gib: dict = field(default_factory=dict)

    @property
    def weights_gib(self) -> float:
        return sum(b for _, b in self.params.values()) / GIB

    @property
    def optimizer_gib(self) -> float:
        """AdamW's two float32 moments per trainable parameter."""
        return 2 * 4 * self.trainable / GIB

    @staticmethod
    def per_utt(pair: tuple) -> tuple[float, float]:
        """(fixed, per utterance) from the peaks at batch 1 and 2."""
        one, two = pair
        return 2 * one - two, two - one

    @staticmethod
    def at_batch(pair: tuple, batch: int) -> float:
        fixed, per = Plan.per_utt(pair)
        return fixed + per * batch

    def training_process(self, batch: int, checkpointing: bool = True) -> dict[str, float]:
        """GiB one training process holds at its peak with ``batch`` utterances a step: the weights,
        AdamW's moments (kept between steps) and the larger transient of the frozen encoder and the
        LLM step (the step's own includes the gradients, which are freed after each update)."""
        step = max(self.at_batch(self.encoder_gib, batch), self.at_batch(self.train_gib[checkpointing], batch))
        return {"weights": self.weights_gib, "AdamW moments": self.optimizer_gib, "step": step}


def _components(model) -> dict:
    groups = {"Whisper encoder": model.encoder, "Q-Former + projection": model.qformer, "LLM (with LoRA)": model.llm}
    if model.ctc_head is not None:
        groups["CTC head"] = model.ctc_head
    return {
        name: (sum(p.numel() for p in m.parameters()), sum(p.numel() * p.element_size() for p in m.parameters()))
        for name, m in groups.items()
    }


def _build(cfg: ModelConfig, tokenizer, gradient_checkpointing: bool, device: str):
    cfg = replace(cfg, llm=replace(cfg.llm, gradient_checkpointing=gradient_checkpointing))
    with torch.device(device):
        return build_model(cfg, tokenizer=tokenizer)


class _StepPeak:
    """The tracker's peak of one step and, on a CUDA device, the caching allocator's: the bytes
    allocated at its peak beyond those allocated when the step began (what the plan predicts)."""

    def __init__(self, device: torch.device, allocator: dict | None, key: tuple):
        self.cuda = device.type == "cuda"
        self.allocator, self.key = allocator, key

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        self.mem = PeakMemory().__enter__()
        return self.mem

    def __exit__(self, *exc) -> None:
        self.mem.__exit__(*exc)
        if self.cuda and self.allocator is not None and exc[0] is None:
            torch.cuda.synchronize()
            self.allocator[self.key] = (torch.cuda.max_memory_allocated() - self.base) / GIB


def real_frames(model, audio_seconds: float | None) -> int:
    """Encoder frames of an utterance of ``audio_seconds`` (None: the whole 30 s window)."""
    enc = model.encoder.config
    if audio_seconds is None:
        return enc.max_source_positions
    # 100 feature frames a second; Whisper's convolutions halve them, rounding up.
    return min(enc.max_source_positions, (round(audio_seconds * 100) + 1) // 2)


def _encode(
    model, batch: int, allocator: dict | None = None, audio_seconds: float | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], float]:
    """The frozen encoder on a 30 s window (what every utterance gets): its output and peak bytes.
    The real frames' count is on the CPU: a trimming Q-Former reads it there."""
    enc = model.encoder
    x = torch.zeros(batch, enc.config.num_mel_bins, 2 * enc.config.max_source_positions, device=model.device)
    with _StepPeak(model.device, allocator, ("encoder", batch)) as mem, torch.no_grad():
        frames = enc(x).last_hidden_state
    real = torch.full((batch,), real_frames(model, audio_seconds))
    return (frames, real), mem.peak


def _train_step(
    model, batch: int, allocator: dict | None = None, name: str = "train", audio_seconds: float | None = None
) -> float:
    encoder_out, _ = _encode(model, batch, audio_seconds=audio_seconds)
    model.train()
    with _StepPeak(model.device, allocator, (name, batch)) as mem:
        out = model(["x"] * batch, Audio.frames(*encoder_out))
        out["loss"].backward()
    model.zero_grad(set_to_none=True)
    return mem.peak


def _decode_step(
    model, batch: int, gen_len: int, allocator: dict | None = None, audio_seconds: float | None = None
) -> float:
    """One denoising step of the sampler on a fully masked response (every step costs the same),
    through the denoiser decoding uses: with ``prefix_attends_response`` false, the prefix's cache
    is filled first and the step runs the response alone."""
    from whisper_llada.decoding.settings import DecodeConfig
    from whisper_llada.diffusion.sampling import _propose

    encoder_out, _ = _encode(model, batch, audio_seconds=audio_seconds)
    model.eval()
    with _StepPeak(model.device, allocator, ("decode", batch)) as mem, torch.no_grad():
        prefix, mask, positions = model.prefix(Audio.frames(*encoder_out))
        den = model.denoiser(DecodeConfig(cache="auto"))
        state = den.prefill(prefix, mask, positions)
        x = torch.full((batch, gen_len), model.mask_id, dtype=torch.long, device=model.device)
        logits = den.response_logits(state, x, torch.ones_like(x, dtype=torch.bool))
        _propose(logits, "low_confidence", 0.0, None)
    return mem.peak


def measure(
    cfg: ModelConfig,
    gen_len: int = 128,
    prompt_tokens: int = LLADA_PROMPT_TOKENS,
    text_tokens: int = 40,
    device: str = "meta",
    audio_seconds: float | None = None,
) -> Plan:
    """Sizes of ``cfg``'s model (made full size by ``full_size_config`` first, if wanted).

    ``device`` "meta" allocates nothing; a real device gives the same figures at its own cost
    (how the tests check the meta figures). ``audio_seconds``: the utterance length, which sets
    the audio tokens of a Q-Former that trims to the audio (``qformer.trim_to_audio``)."""
    if cfg.arch_spec.llm_family != "llada":
        raise ValueError(f"the memory plan is for an arch on native LLaDA (whisper_llada), not {cfg.arch!r}")
    if cfg.whisper.window != "full" or cfg.ctc_compress:
        # Token counts would depend on each utterance's audio in ways the plan does not model.
        raise ValueError("the memory plan needs whisper.window full and no ctc_compress")
    if cfg.qformer.trim_to_audio != (audio_seconds is not None):
        raise ValueError(
            "the memory plan takes an utterance length (audio_seconds, --audio-seconds) exactly when "
            f"qformer.trim_to_audio is true (it is {cfg.qformer.trim_to_audio})"
        )
    vocab = (
        (cfg.llm.config or {}).get("embedding_size")
        or (cfg.llm.config or {}).get("vocab_size")
        or LLADA_8B["vocab_size"]
    )
    # The response is EOS-padded to response_length whatever the transcript's length.
    tok = _LengthTokenizer(vocab, prompt_tokens, min(text_tokens, cfg.loss.response_length - 1))
    model = _build(cfg, tok, False, device)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = model.encoder.config.max_source_positions
    windows = int(model.qformer.cfg.windows_for(torch.tensor([real_frames(model, audio_seconds)]), total)[0])
    alloc: dict = {}
    plan = Plan(
        params=_components(model),
        trainable=sum(p.numel() for _, p in trainable),
        trainable_bytes=sum(p.numel() * p.element_size() for _, p in trainable),
        lora=sum(p.numel() for n, p in trainable if "lora_" in n),
        llm_tokens=prompt_tokens + windows * cfg.qformer.num_query + cfg.loss.response_length,
        encoder_gib=tuple(_encode(model, b, alloc)[1] / GIB for b in (1, 2)),
        train_gib={},
        decode_gib=tuple(_decode_step(model, b, gen_len, alloc, audio_seconds) / GIB for b in (1, 2)),
        allocator_gib=alloc,
    )
    plan.train_gib[False] = tuple(_train_step(model, b, alloc, "train", audio_seconds) / GIB for b in (1, 2))
    # Released before the second build: at full size on a GPU two models need not fit at once.
    del model, trainable
    model = _build(cfg, tok, True, device)
    plan.train_gib[True] = tuple(_train_step(model, b, alloc, "train-ckpt", audio_seconds) / GIB for b in (1, 2))
    return plan


def fits(budget_gib: float, fixed: float, per_utt: float) -> int:
    """Utterances per batch whose peak stays within ``budget_gib``."""
    return max(0, int((budget_gib - fixed) // per_utt)) if per_utt > 0 else 0


def format_plan(
    plan: Plan, gpu_gib: float, max_duration: float, min_duration: float, max_cuts: int | None = None
) -> str:
    lines = ["| part | parameters | GiB as built |", "|---|---|---|"]
    for name, (n, b) in plan.params.items():
        lines.append(f"| {name} | {n / 1e6:,.1f} M | {b / GIB:.2f} |")
    lines += [
        f"| trainable (of which LoRA {plan.lora / 1e6:.2f} M) | {plan.trainable / 1e6:,.1f} M | "
        f"{plan.trainable_bytes / GIB:.2f} |",
        "",
    ]
    # Gradients are counted in full although some are still unwritten at the peak: an upper bound.
    train_fixed = plan.weights_gib + plan.trainable_bytes / GIB + plan.optimizer_gib
    lines += [
        f"LLM sequence per utterance: {plan.llm_tokens} tokens (prompt, audio tokens, response).",
        f"Fixed in training: weights {plan.weights_gib:.2f} + gradients {plan.trainable_bytes / GIB:.2f} "
        f"+ AdamW moments {plan.optimizer_gib:.2f} = {train_fixed:.2f} GiB; in decoding: weights {plan.weights_gib:.2f} GiB.",
        "",
        f"| step | GiB per utterance | GiB fixed | utterances that fit in {gpu_gib:.1f} GiB |",
        "|---|---|---|---|",
    ]
    rows = [
        ("training, gradient checkpointing", plan.train_gib[True], train_fixed),
        ("training, no checkpointing", plan.train_gib[False], train_fixed),
        ("decoding (one step)", plan.decode_gib, plan.weights_gib),
        ("frozen encoder (30 s window)", plan.encoder_gib, plan.weights_gib),
    ]
    for name, pair, base in rows:
        fixed, per = Plan.per_utt(pair)
        fixed = base + max(fixed, 0.0)
        lines.append(f"| {name} | {per:.3f} | {fixed:.2f} | {fits(gpu_gib, fixed, per)} |")
    fixed, per = Plan.per_utt(plan.train_gib[True])
    fixed = train_fixed + max(fixed, 0.0)
    cap = f", max_cuts {max_cuts}" if max_cuts else ", no max_cuts"
    lines += [
        "",
        f"Training batches of max_duration {max_duration:g} s{cap}, gradient checkpointing: every "
        "utterance is padded to the 30 s window, so a batch of short ones is the largest.",
        "| utterance length (s) | utterances | GiB at peak | fits |",
        "|---|---|---|---|",
    ]
    for d in sorted({min_duration, 2.0, 5.0, 10.0, 20.0}):
        n = int(max_duration // d)
        n = min(n, max_cuts) if max_cuts else n
        need = fixed + n * per
        lines.append(f"| {d:g} | {n} | {need:.1f} | {'yes' if need <= gpu_gib else 'NO'} |")
    return "\n".join(lines)


def format_check(plan: Plan, device_plan: Plan, device: str) -> str:
    """The meta plan beside the same steps run on ``device`` with random weights: the tracker's
    peak there and, on CUDA, the caching allocator's (the figure a user's GPU would show)."""
    steps = {
        "encoder": ("frozen encoder", lambda p: p.encoder_gib),
        "decode": ("decoding (one step)", lambda p: p.decode_gib),
        "train": ("training, no checkpointing", lambda p: p.train_gib[False]),
        "train-ckpt": ("training, gradient checkpointing", lambda p: p.train_gib[True]),
    }
    lines = [
        f"| step | batch | plan (meta) GiB | tracker on {device} GiB | allocator on {device} GiB |",
        "|---|---|---|---|---|",
    ]
    for key, (name, get) in steps.items():
        for i, b in enumerate((1, 2)):
            alloc = device_plan.allocator_gib.get((key, b))
            lines.append(
                f"| {name} | {b} | {get(plan)[i]:.3f} | {get(device_plan)[i]:.3f} | "
                f"{'-' if alloc is None else f'{alloc:.3f}'} |"
            )
    return "\n".join(lines)


def slice_config(cfg: ModelConfig, whisper_layers: int | None, llm_layers: int | None) -> ModelConfig:
    """``cfg`` (with shapes in its configs, e.g. from ``full_size_config``) with fewer layers: a
    slice of the full model at its true widths."""
    whisper, llm = dict(cfg.whisper.config), dict(cfg.llm.config)
    if whisper_layers is not None:
        whisper["encoder_layers"] = whisper_layers
    if llm_layers is not None:
        llm["n_layers"] = llm_layers
    return replace(cfg, whisper=replace(cfg.whisper, config=whisper), llm=replace(cfg.llm, config=llm))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config",
        default="egs/librispeech/conf/whisper_llada.yaml",
        help="recipe config; its Whisper and LLM directories' config.json give the shapes where present, "
        "whisper-large-v3 and LLaDA-8B otherwise",
    )
    p.add_argument("--gpu-gb", type=float, default=80.0, help="GPU memory in GB (10^9 bytes; an H100 has 80)")
    p.add_argument(
        "--device",
        default=None,
        help="also run the same steps on this device (e.g. cuda) with random weights at full size and "
        "print the measured peaks beside the plan; needs the memory of the model itself",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set model.lora.r=16",
    )
    p.add_argument("--whisper-layers", type=int, help="a slice: this many Whisper encoder layers (widths kept)")
    p.add_argument("--llm-layers", type=int, help="a slice: this many LLM layers (widths kept)")
    p.add_argument(
        "--audio-seconds",
        type=float,
        help="utterance length; needed (and only allowed) when model.qformer.trim_to_audio is true",
    )
    p.add_argument(
        "--batch", type=int, help="also print what one training process holds at its peak with this many utterances"
    )
    return p


def main(argv=None) -> None:
    from whisper_llada.config.recipe import load_recipe_config

    args = get_parser().parse_args(argv)
    cfg = load_recipe_config(args.config, args.overrides)
    # Relative paths in a recipe config are relative to its recipe directory (egs/NAME).
    model_cfg = full_size_config(cfg.model, base=Path(args.config).resolve().parent.parent)
    model_cfg = slice_config(model_cfg, args.whisper_layers, args.llm_layers)
    print(
        f"config {args.config} | torch {torch.__version__} | sizes measured on the meta device "
        f"(attention through SDPA's math path: an upper bound for flash kernels)",
        flush=True,
    )
    plan = measure(model_cfg, audio_seconds=args.audio_seconds)
    print(
        format_plan(plan, args.gpu_gb * 1e9 / GIB, cfg.train.max_duration, cfg.train.min_duration, cfg.train.max_cuts)
    )
    if args.batch:
        parts = plan.training_process(args.batch, cfg.model.llm.gradient_checkpointing)
        print(
            f"\nOne training process, {args.batch} utterance(s) a step: "
            + " + ".join(f"{k} {v:.3f}" for k, v in parts.items())
            + f" = {sum(parts.values()):.3f} GiB"
        )
    if args.device:
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
        print(f"\nThe same steps on {args.device} ({name}), random weights:", flush=True)
        print(format_check(plan, measure(model_cfg, device=args.device, audio_seconds=args.audio_seconds), args.device))
