"""Decoding-speed benchmark: every strategy of the paper beside the autoregressive twin, one run.

Models have random weights; a transcript length is imposed on both model families (the
diffusion LM's EOS logit is raised from position T on, the AR twin emits exactly T tokens
and EOS), so each strategy does the work a trained model would for a T-token transcript.
Whisper's decoder as block diffusion and as its AR twin (the embedded default's pair) is
benchmarked the same way, each never ending before T.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import nn

from whisper_llada.config.model import ModelConfig
from whisper_llada.config.registry import get_arch
from whisper_llada.data.audio import Audio
from whisper_llada.diffusion import deliberate, generate, make_denoiser
from whisper_llada.models.build import build_model
from whisper_llada.utils.config import from_dict

SIZES = {
    # name: (LLM d_model, layers, heads, mlp, vocab), (Whisper d_model, layers, heads), Q-Former (hidden, layers, heads)
    "tiny": ((256, 4, 4, 688, 2000), (384, 4, 6), (256, 1, 4)),
    "small": ((768, 12, 12, 2048, 32000), (512, 6, 8), (768, 2, 12)),
    "llada-1b": ((2048, 16, 16, 5632, 126464), (768, 12, 12), (768, 2, 12)),
    # LLaDA-8B and whisper-large-v3 (a GPU's job); the AR twin gets the same shapes
    "llada-8b": ((4096, 32, 32, 12288, 126464), (1280, 32, 20), (768, 2, 12)),
}


class _VocabTokenizer:
    """Ids only: the benchmark never turns tokens into text."""

    def __init__(self, vocab: int):
        self.vocab_size = vocab
        self.mask_id, self.eos_id, self.pad_id = vocab - 1, vocab - 2, vocab - 2

    def prompt_ids(self, task: str) -> list[int]:
        return list(range(10, 10 + 12))  # the length of LLaDA's chat prompt around a short task

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError


class _WhisperTokenizer(_VocabTokenizer):
    """Ids only, Whisper's way: a 3-token prompt (start of transcript, language, no timestamps)."""

    def prompt_ids(self, task: str) -> list[int]:
        return [10, 11, 12]

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


class EndsAt(nn.Module):
    """Wraps a masked-diffusion LM so its response ends with EOS from position ``length`` on.

    Passes the prefix-cache arguments through, so cached and recomputing denoisers see one model.
    """

    def __init__(self, lm: nn.Module, length: int, eos_id: int):
        super().__init__()
        self.lm, self.length, self.eos_id = lm, length, eos_id
        self.supports_prefix_cache = getattr(lm, "supports_prefix_cache", False)

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def forward(
        self,
        inputs_embeds,
        attention_mask=None,
        logits_to_keep: int = 0,
        position_ids=None,
        past_key_values=None,
        past_mask=None,
        keep_kv: int = 0,
        prefix_length: int = 0,
    ):
        out = self.lm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            logits_to_keep=logits_to_keep,
            position_ids=position_ids,
            past_key_values=past_key_values,
            past_mask=past_mask,
            keep_kv=keep_kv,
            prefix_length=prefix_length,
        )
        logits = out.logits
        L = logits_to_keep or logits.shape[1]
        resp = logits[:, -L:]
        # Response positions: the last L; EOS is forbidden before ``length`` and certain after.
        pos = torch.arange(L, device=logits.device)
        resp[..., self.eos_id] = torch.where(pos < self.length, -1e4, 1e4).to(logits.dtype)
        return out


def _whisper_shape(size: str, decoder_layers: int, **extra) -> dict:
    """The Whisper config of a size: its encoder, and a decoder of ``decoder_layers`` layers."""
    wd, wl, wh = SIZES[size][1]
    return dict(
        d_model=wd,
        encoder_layers=wl,
        encoder_attention_heads=wh,
        encoder_ffn_dim=4 * wd,
        decoder_layers=decoder_layers,
        decoder_attention_heads=wh,
        decoder_ffn_dim=4 * wd,
        num_mel_bins=128 if wd >= 1280 else 80,
        **extra,
    )


def _configs(size: str, arch: str, tok: _VocabTokenizer, trim: bool) -> ModelConfig:
    (d, layers, heads, mlp, vocab), _, (qh, ql, qheads) = SIZES[size]
    llm = get_arch(arch).shape_config(d, layers, heads, mlp, vocab, 4096)
    whisper = _whisper_shape(size, 1)
    return from_dict(
        ModelConfig,
        {
            # trimmed: the encoder reads the audio's frames only, as the embedded recipe (whisper.window audio)
            "arch": arch,
            "whisper": {"config": whisper, "window": "audio" if trim else "full"},
            "qformer": {
                "hidden_size": qh,
                "num_layers": ql,
                "num_heads": qheads,
                "intermediate_size": 4 * qh,
                "trim_to_audio": trim,
            },
            "llm": {"config": llm, "train": "frozen"},
            "tokenizer": {"path": "-"},
        },
        f"bench:{size}",
    )


def _on_device(cfg: ModelConfig, tok, device, dtype) -> nn.Module:
    """The model with its random weights made on ``device`` (a CPU's generator takes minutes at 8B),
    native LLaDA directly at ``dtype``."""
    cfg = replace(cfg, llm=replace(cfg.llm, dtype={torch.bfloat16: "bfloat16"}.get(dtype, cfg.llm.dtype)))
    with torch.device(device):
        return build_model(cfg, tokenizer=tok).to(device, dtype).eval()


def _decoder_pair(size: str, device, dtype) -> tuple:
    """Whisper's decoder as block diffusion (blocks of 4) and as its AR twin, random weights at the
    size's Whisper shapes with Whisper's 51,865-id vocabulary; the EOS row of the tied output layer
    is zeroed so that neither ever ends early: each runs its whole forced length."""
    vocab = 51865
    ends = vocab - 2  # the bench tokenizer's EOS (and pad)
    whisper = _whisper_shape(
        size,
        SIZES[size][1][1],
        vocab_size=vocab,
        pad_token_id=ends,
        bos_token_id=ends,
        eos_token_id=ends,
        decoder_start_token_id=10,
    )
    tok = _WhisperTokenizer(vocab)
    models = []
    for arch, llm in (
        ("whisper_decoder_mdm", {"train": "frozen", "block_size": 4}),
        ("whisper_decoder_ar", {"train": "frozen"}),
    ):
        cfg = from_dict(
            ModelConfig,
            {
                "arch": arch,
                "whisper": {"config": whisper, "window": "audio"},
                "qformer": {"trim_to_audio": True},  # the encoder's frames end with the audio
                "llm": llm,
                "tokenizer": {"path": "-"},
            },
            f"bench:{size}",
        )
        model = _on_device(cfg, tok, device, dtype)
        with torch.no_grad():
            model.llm.get_input_embeddings().weight[tok.eos_id] = 0
        models.append(model)
    return tok, *models


@dataclass
class Row:
    name: str
    batch: int
    passes_per_utt: float
    positions_per_pass: float
    rtf: float
    tokens: Optional[list] = None  # output ids per utterance (checks that caches change nothing)
    llm_rtf: float = 0.0  # the LLM's part alone: the front end (encoder, Q-Former) left out

    @property
    def positions_per_utt(self) -> float:
        return self.passes_per_utt * self.positions_per_pass


def _time(fn, reps: int, sync) -> float:
    fn()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


def strategies(L: int, T: int, margin: int) -> list[tuple[str, dict]]:
    """(name, how) of every benchmarked setting: the paper's, then the fast ones."""
    auto = T + margin  # gen_len auto: the canvas a transcript of T tokens gets from its audio
    return [
        (f"diffusion steps {L}", dict(kind="gen", steps=L, block=L)),
        (f"diffusion steps {L // 2}", dict(kind="gen", steps=L // 2, block=L)),
        (f"diffusion steps {L // 4}", dict(kind="gen", steps=L // 4, block=L)),
        (f"semi-AR block {L // 4} steps {L}", dict(kind="gen", steps=L, block=L // 4)),
        (f"semi-AR block {L // 16} steps {L}", dict(kind="gen", steps=L, block=L // 16)),
        ("delib low-conf 0.3", dict(kind="delib", mode="diffusion", masking="low_confidence", ratio=0.3)),
        ("delib random 0.3", dict(kind="delib", mode="diffusion", masking="random", ratio=0.3)),
        ("delib low-conf 0.5", dict(kind="delib", mode="diffusion", masking="low_confidence", ratio=0.5)),
        ("delib semi-AR 4 chunks", dict(kind="delib", mode="semi_ar", masking="random", ratio=0.3)),
        # fast settings: the canvas sized per row, the prefix cached, parallel commits
        (f"diffusion len auto steps {L // 4}", dict(kind="gen", steps=L // 4, len=auto)),
        (
            f"diffusion len auto steps {L // 4} approx cache 4",
            dict(kind="gen", steps=L // 4, len=auto, cache="approximate"),
        ),
        (
            f"diffusion len auto steps {L // 4} exact cache (prefix-blind)",
            dict(kind="gen", steps=L // 4, len=auto, cache="exact"),
        ),
        (
            f"diffusion len auto steps {L // 16} exact cache (prefix-blind)",
            dict(kind="gen", steps=L // 16, len=auto, cache="exact"),
        ),
        (
            "diffusion len auto threshold 0.9 exact cache (prefix-blind)",
            dict(kind="gen", steps=L, len=auto, cache="exact", commit="threshold"),
        ),
        (
            f"diffusion len auto steps {L // 4} no cache (prefix-blind)",
            dict(kind="gen", steps=L // 4, len=auto, cache="blind"),
        ),
        (
            f"diffusion steps {L // 4} exact cache (prefix-blind)",
            dict(kind="gen", steps=L // 4, block=L, cache="exact"),
        ),
        (f"diffusion steps {L // 4} no cache (prefix-blind)", dict(kind="gen", steps=L // 4, block=L, cache="blind")),
        (
            "delib low-conf 0.3 len auto exact cache (prefix-blind)",
            dict(kind="delib", mode="diffusion", masking="low_confidence", ratio=0.3, len=auto, cache="exact"),
        ),
        (
            "delib random 0.3 len auto exact cache (prefix-blind)",
            dict(kind="delib", mode="diffusion", masking="random", ratio=0.3, len=auto, cache="exact"),
        ),
        (
            "delib low-conf 0.3 len auto no cache (prefix-blind)",
            dict(kind="delib", mode="diffusion", masking="low_confidence", ratio=0.3, len=auto, cache="blind"),
        ),
        ("AR twin greedy (KV cache)", dict(kind="ar")),
        # Whisper's decoder as block diffusion beside its own AR twin (the embedded default's pair)
        ("Whisper decoder: block diffusion 4, 1 token a step, block cache", dict(kind="wd", cache="auto")),
        ("Whisper decoder: block diffusion 4, 1 token a step, no cache", dict(kind="wd", cache="none")),
        ("Whisper decoder: block diffusion 4, 2 tokens a step, block cache", dict(kind="wd", cache="auto", per_step=2)),
        ("Whisper decoder: AR twin greedy (KV cache)", dict(kind="wd_ar")),
    ]


def run(args) -> list[Row]:
    torch.manual_seed(0)
    vocab = SIZES[args.size][0][4]
    tok = _VocabTokenizer(vocab)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    llada = _on_device(_configs(args.size, "whisper_llada", tok, not args.full_windows), tok, args.device, dtype)
    llama = _on_device(_configs(args.size, "whisper_llama", tok, not args.full_windows), tok, args.device, dtype)
    g = torch.Generator().manual_seed(0)
    frames = int(args.seconds * 100)
    mels = llada.encoder.config.num_mel_bins
    feats = torch.randn(args.num_utts, frames, mels, generator=g).to(args.device)
    lens = torch.full((args.num_utts,), frames, device=args.device)
    T, L, margin = args.tokens, args.gen_len, args.len_margin
    hyps = torch.randint(0, vocab - 2, (args.num_utts, T), generator=g).tolist()
    oracle = EndsAt(llada.llm, T, tok.eos_id)
    audio_s = args.num_utts * args.seconds
    chosen = strategies(L, T, margin)
    names = [n for n, _ in chosen]
    if args.only:
        picked = [(n, s) for n, s in chosen if any(o in n for o in args.only)]
        if not picked:
            raise SystemExit(f"--only {args.only}: matches none of {names}")
        # Each family's AR twin comes along: the ratios are to it.
        wd = any(s["kind"] == "wd" for _, s in picked)
        chosen = [(n, s) for n, s in chosen if (n, s) in picked or s["kind"] == "ar" or (wd and s["kind"] == "wd_ar")]
    if any(s["kind"].startswith("wd") for _, s in chosen):
        from whisper_llada.diffusion.settings import DecodeConfig

        wtok, mdm, twin = _decoder_pair(args.size, args.device, dtype)

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    rows: list[Row] = []
    for bs in args.batch_sizes:
        for name, s in chosen:
            stats: dict = {}
            outputs: list = []
            front = [0.0]

            def prefix_of(model, batch):
                # timed apart, so the LLM's share of the time can be shown without the front end
                sync()
                t0 = time.perf_counter()
                out = model.batch_prefix(batch)
                sync()
                front[0] += time.perf_counter() - t0
                return out

            def once():
                stats.clear()
                outputs.clear()
                front[0] = 0.0
                for i in range(0, args.num_utts, bs):
                    sl = slice(i, i + bs)
                    batch = {"audio": Audio.features(feats[sl], lens[sl])}
                    with torch.no_grad():
                        if s["kind"].startswith("wd"):
                            # The encoder (the front end both share) timed apart, its frames handed on.
                            sync()
                            t0 = time.perf_counter()
                            audio = Audio.frames(*mdm.run_encoder(feats[sl], lens[sl]))
                            sync()
                            front[0] += time.perf_counter() - t0
                        if s["kind"] == "wd_ar":
                            n = int(lens[sl].numel())
                            st: dict = {}
                            cfg = DecodeConfig(mode="autoregressive", gen_len=T, num_beams=1)
                            twin.nbest({"audio": audio}, cfg, st)
                            # Counted as the samplers count a cross-attention model: one pass over the
                            # frames (their keys and values), then the prompt, then one position a token.
                            stats["passes"] = stats.get("passes", 0) + int(st["forward_passes"].sum()) + n
                            P = len(wtok.prompt_ids(""))
                            stats["positions"] = stats.get("positions", 0) + (audio.data.shape[1] + P + T - 1) * n
                            continue
                        if s["kind"] == "wd":
                            frames, fmask, _ = mdm.prefix(audio)
                            canvas = -(-T // 4) * 4
                            st = {}
                            out = generate(
                                mdm.denoiser(DecodeConfig(mode="decoding", cache=s["cache"])),
                                frames,
                                prefix_mask=fmask,
                                gen_length=canvas,
                                steps=canvas // s.get("per_step", 1),
                                block_length=4,
                                mask_id=wtok.mask_id,
                                eos_id=-1,  # never ends early: the whole forced canvas is decoded
                                stats=st,
                            )
                            outputs.extend(out[:, :T].tolist())
                            stats["passes"] = stats.get("passes", 0) + int(st["forward_passes"].sum())
                            stats["positions"] = stats.get("positions", 0) + int(st["positions"].sum())
                            continue
                        if s["kind"] == "ar":
                            from transformers import GenerationConfig

                            prefix, mask, pos = prefix_of(llama, batch)
                            gen = GenerationConfig(
                                min_new_tokens=T + 1,
                                max_new_tokens=T + 1,
                                do_sample=False,
                                eos_token_id=tok.eos_id,
                                pad_token_id=tok.pad_id,
                            )
                            llama.llm.generate(
                                inputs_embeds=prefix,
                                attention_mask=mask.long(),
                                generation_config=gen,
                                **({} if pos is None else {"position_ids": pos}),
                            )
                            n = prefix.shape[0]
                            stats["passes"] = stats.get("passes", 0) + (T + 1) * n
                            # the first pass reads the prefix, each later one a single position
                            stats["positions"] = stats.get("positions", 0) + (prefix.shape[1] + T) * n
                            continue
                        prefix, mask, pos = prefix_of(llada, batch)
                        cache = s.get("cache", "none")
                        # "blind": the prefix-blind model recomputed every step (the exact cache's reference)
                        den = make_denoiser(
                            oracle,
                            prefix_attends_response=cache not in ("exact", "blind"),
                            cache="none" if cache == "blind" else cache,
                            refresh=args.cache_refresh,
                        )
                        length = s.get("len")
                        st: dict = {}
                        if s["kind"] == "gen":
                            gen_len = L if length is None else torch.full((prefix.shape[0],), length)
                            out = generate(
                                den,
                                prefix,
                                prefix_mask=mask,
                                gen_length=gen_len,
                                steps=s["steps"],
                                block_length=None if length else s["block"],
                                mask_id=tok.mask_id,
                                eos_id=tok.eos_id,
                                stats=st,
                                prefix_positions=pos,
                                commit=s.get("commit", "fixed"),
                                threshold=args.threshold,
                            )
                            outputs.extend(out[:, :T].tolist())
                        else:
                            pad_to = L if length is None else [len(h) + margin for h in hyps[sl]]
                            out = deliberate(
                                den,
                                prefix,
                                hyps[sl],
                                prefix_mask=mask,
                                mode=s["mode"],
                                mask_ratio=s["ratio"],
                                masking_type=s["masking"],
                                num_chunks=4,
                                steps=L,
                                mask_id=tok.mask_id,
                                eos_id=tok.eos_id,
                                pad_id=tok.pad_id,
                                pad_to=pad_to,
                                generator=torch.Generator().manual_seed(0),
                                stats=st,
                                prefix_positions=pos,
                            )
                            outputs.extend(out)
                        stats["passes"] = stats.get("passes", 0) + int(st["forward_passes"].sum())
                        stats["positions"] = stats.get("positions", 0) + int(st["positions"].sum())

            wall = _time(once, args.reps, sync)
            llm = wall - front[0]  # front[0]: the front end's seconds of the last timed repetition
            rows.append(
                Row(
                    name,
                    bs,
                    stats["passes"] / args.num_utts,
                    stats["positions"] / stats["passes"],
                    wall / audio_s,
                    list(outputs),
                    llm / audio_s,
                )
            )
    return rows


def format_table(rows: list[Row], gen_len: Optional[int] = None) -> str:
    """The table, RTF as a ratio to the AR twin's at the same batch size and positions per utterance
    as a ratio to the paper's diffusion at ``gen_len / 4`` steps; then whether every exact cache gave
    the tokens of the same model without it."""
    ar = {r.batch: r for r in rows if r.name.startswith("AR twin")}
    wd_ar = {r.batch: r for r in rows if r.name.startswith("Whisper decoder: AR twin")}
    ref_name = f"diffusion steps {gen_len // 4}" if gen_len else None
    ref = {r.batch: r.positions_per_utt for r in rows if r.name == ref_name}
    lines = [
        "| strategy | batch | passes/utt | positions/pass | positions/utt | paper / this | RTF | RTF / AR "
        "| LLM RTF | LLM RTF / AR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cut = f"{ref[r.batch] / r.positions_per_utt:.1f}x" if r.batch in ref else "-"
        a = (wd_ar if r.name.startswith("Whisper decoder") else ar)[r.batch]  # each family's own twin
        lines.append(
            f"| {r.name} | {r.batch} | {r.passes_per_utt:.1f} | {r.positions_per_pass:.1f} | "
            f"{r.positions_per_utt:.0f} | {cut} | {r.rtf:.4f} | {r.rtf / a.rtf:.2f} | {r.llm_rtf:.4f} | "
            f"{r.llm_rtf / a.llm_rtf:.2f} |"
        )
    by = {(r.name, r.batch): r for r in rows}
    for r in rows:
        cached = "exact cache" if "exact cache" in r.name else "block cache"
        twin = by.get((r.name.replace(cached, "no cache"), r.batch))
        if cached in r.name and twin is not None:
            same = r.tokens == twin.tokens
            lines.append(
                f"exact cache, batch {r.batch}: {r.name!r} tokens {'identical to' if same else 'DIFFER from'} no cache"
            )
    return "\n".join(lines)


def header(args) -> str:
    dev = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    return (
        f"machine: {dev}, {os.cpu_count()} cores | torch {torch.__version__} "
        f"| threads {torch.get_num_threads()} | device {args.device}\n"
        f"size {args.size} | {args.num_utts} utterances x {args.seconds:g} s | transcript {args.tokens} tokens "
        f"| gen_len {args.gen_len} | audio windows: {'all (paper)' if args.full_windows else 'trimmed to the audio'}"
    )


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny", help="model shape (random weights)")
    p.add_argument("--num-utts", type=int, default=16)
    p.add_argument("--seconds", type=float, default=6.0, help="duration of each utterance")
    p.add_argument("--tokens", type=int, default=24, help="transcript length imposed on every strategy")
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--reps", type=int, default=1, help="timed repetitions after one warm-up")
    p.add_argument(
        "--full-windows", action="store_true", help="Whisper's 30 s window and all 88 Q-Former windows, as the paper"
    )
    p.add_argument("--len-margin", type=int, default=4, help="gen_len auto: canvas = transcript + this")
    p.add_argument("--cache-refresh", type=int, default=4, help="approximate cache: steps between refreshes")
    p.add_argument("--threshold", type=float, default=0.9, help="threshold commit rule: tau")
    p.add_argument("--only", nargs="+", help="run only strategies whose name contains one of these (and the AR twin)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    print(header(args), flush=True)
    print(format_table(run(args), args.gen_len))
