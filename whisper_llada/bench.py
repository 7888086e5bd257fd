"""Decoding-speed benchmark: every strategy of the paper beside the autoregressive twin, one run.

Models have random weights; a transcript length is imposed on both model families (the
diffusion LM's EOS logit is raised from position T on, the AR twin emits exactly T tokens
and EOS), so each strategy does the work a trained model would for a T-token transcript.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass

import torch
from torch import nn

from whisper_llada.data.audio import Audio
from whisper_llada.diffusion.sampling import deliberate, generate
from whisper_llada.models.build import build_model
from whisper_llada.models.config import ModelConfig
from whisper_llada.models.registry import get_arch
from whisper_llada.utils.config import from_dict

SIZES = {
    # name: (LLM d_model, layers, heads, mlp, vocab), (Whisper d_model, layers, heads), Q-Former (hidden, layers, heads)
    "tiny": ((256, 4, 4, 688, 2000), (384, 4, 6), (256, 1, 4)),
    "small": ((768, 12, 12, 2048, 32000), (512, 6, 8), (768, 2, 12)),
    "llada-1b": ((2048, 16, 16, 5632, 126464), (768, 12, 12), (768, 2, 12)),
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


class EndsAt(nn.Module):
    """Wraps a masked-diffusion LM so its response ends with EOS from position ``length`` on."""

    def __init__(self, lm: nn.Module, length: int, eos_id: int):
        super().__init__()
        self.lm, self.length, self.eos_id = lm, length, eos_id

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def forward(self, inputs_embeds, attention_mask=None, logits_to_keep: int = 0):
        out = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, logits_to_keep=logits_to_keep)
        logits = out.logits
        L = logits_to_keep or logits.shape[1]
        resp = logits[:, -L:]
        # Response positions: the last L; EOS is forbidden before ``length`` and certain after.
        pos = torch.arange(L, device=logits.device)
        resp[..., self.eos_id] = torch.where(pos < self.length, -1e4, 1e4).to(logits.dtype)
        return out


def _configs(size: str, arch: str, tok: _VocabTokenizer, trim: bool) -> ModelConfig:
    (d, layers, heads, mlp, vocab), (wd, wl, wh), (qh, ql, qheads) = SIZES[size]
    llm = get_arch(arch).shape_config(d, layers, heads, mlp, vocab, 4096)
    whisper = dict(d_model=wd, encoder_layers=wl, encoder_attention_heads=wh, encoder_ffn_dim=4 * wd,
                   decoder_layers=1, decoder_attention_heads=wh, decoder_ffn_dim=4 * wd, num_mel_bins=80)
    return from_dict(ModelConfig, {
        "arch": arch, "whisper": {"config": whisper},
        "qformer": {"hidden_size": qh, "num_layers": ql, "num_heads": qheads, "intermediate_size": 4 * qh, "trim_to_audio": trim},
        "llm": {"config": llm, "train": "frozen"}, "tokenizer": {"path": "-"},
    }, f"bench:{size}")


@dataclass
class Row:
    name: str
    batch: int
    passes_per_utt: float
    tokens_per_pass: float
    rtf: float


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def run(args) -> list[Row]:
    torch.manual_seed(0)
    vocab = SIZES[args.size][0][4]
    tok = _VocabTokenizer(vocab)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    llada = build_model(_configs(args.size, "whisper_llada", tok, not args.full_windows), tokenizer=tok).to(args.device, dtype).eval()
    llama = build_model(_configs(args.size, "whisper_llama", tok, not args.full_windows), tokenizer=tok).to(args.device, dtype).eval()
    g = torch.Generator().manual_seed(0)
    frames = int(args.seconds * 100)
    feats = torch.randn(args.num_utts, frames, 80, generator=g).to(args.device)
    lens = torch.full((args.num_utts,), frames, device=args.device)
    T, L = args.tokens, args.gen_len
    hyps = torch.randint(0, vocab - 2, (args.num_utts, T), generator=g).tolist()
    oracle = EndsAt(llada.llm, T, tok.eos_id)
    audio_s = args.num_utts * args.seconds

    strategies = [
        (f"diffusion steps {L}", dict(kind="gen", steps=L, block=L)),
        (f"diffusion steps {L // 2}", dict(kind="gen", steps=L // 2, block=L)),
        (f"diffusion steps {L // 4}", dict(kind="gen", steps=L // 4, block=L)),
        (f"semi-AR block {L // 4} steps {L}", dict(kind="gen", steps=L, block=L // 4)),
        (f"semi-AR block {L // 16} steps {L}", dict(kind="gen", steps=L, block=L // 16)),
        ("delib low-conf 0.3", dict(kind="delib", mode="diffusion", masking="low_confidence", ratio=0.3)),
        ("delib random 0.3", dict(kind="delib", mode="diffusion", masking="random", ratio=0.3)),
        ("delib low-conf 0.5", dict(kind="delib", mode="diffusion", masking="low_confidence", ratio=0.5)),
        ("delib semi-AR 4 chunks", dict(kind="delib", mode="semi_ar", masking="random", ratio=0.3)),
        ("AR twin greedy (KV cache)", dict(kind="ar")),
    ]
    rows: list[Row] = []
    for bs in args.batch_sizes:
        for name, s in strategies:
            stats: dict = {}

            def once():
                stats.clear()
                for i in range(0, args.num_utts, bs):
                    sl = slice(i, i + bs)
                    batch = {"audio": Audio.features(feats[sl], lens[sl])}
                    with torch.no_grad():
                        if s["kind"] == "ar":
                            from transformers import GenerationConfig

                            prefix, mask, pos = llama.batch_prefix(batch)
                            gen = GenerationConfig(min_new_tokens=T + 1, max_new_tokens=T + 1, do_sample=False,
                                                   eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
                            llama.llm.generate(inputs_embeds=prefix, attention_mask=mask.long(), generation_config=gen,
                                               **({} if pos is None else {"position_ids": pos}))
                            stats["passes"] = stats.get("passes", 0) + (T + 1) * prefix.shape[0]
                            stats["tokens"] = stats.get("tokens", 0) + (prefix.shape[1] + T) * prefix.shape[0]
                            continue
                        prefix, mask, pos = llada.batch_prefix(batch)
                        st: dict = {}
                        if s["kind"] == "gen":
                            generate(oracle, prefix, prefix_mask=mask, gen_length=L, steps=s["steps"],
                                     block_length=s["block"], mask_id=tok.mask_id, eos_id=tok.eos_id, stats=st,
                                     prefix_positions=pos)
                        else:
                            deliberate(oracle, prefix, hyps[sl], prefix_mask=mask, mode=s["mode"], mask_ratio=s["ratio"],
                                       masking_type=s["masking"], num_chunks=4, steps=L, mask_id=tok.mask_id,
                                       eos_id=tok.eos_id, pad_id=tok.pad_id, pad_to=L, generator=torch.Generator().manual_seed(0), stats=st,
                                       prefix_positions=pos)
                        # Every pass reads the whole prefix and the L-token response.
                        passes = int(st["forward_passes"].sum())
                        stats["passes"] = stats.get("passes", 0) + passes
                        stats["tokens"] = stats.get("tokens", 0) + passes * (prefix.shape[1] + L)

            wall = _time(once, args.reps)
            if args.device == "cuda":
                torch.cuda.synchronize()
            rows.append(Row(name, bs, stats["passes"] / args.num_utts, stats["tokens"] / stats["passes"], wall / audio_s))
    return rows


def format_table(rows: list[Row]) -> str:
    ar = {r.batch: r.rtf for r in rows if r.name.startswith("AR twin")}
    lines = ["| strategy | batch | passes/utt | tokens/pass | RTF | RTF / AR |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.batch} | {r.passes_per_utt:.1f} | {r.tokens_per_pass:.1f} | {r.rtf:.4f} | {r.rtf / ar[r.batch]:.2f} |")
    return "\n".join(lines)


def header(args) -> str:
    dev = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    return (f"machine: {dev}, {os.cpu_count()} cores | torch {torch.__version__} "
            f"| threads {torch.get_num_threads()} | device {args.device}\n"
            f"size {args.size} | {args.num_utts} utterances x {args.seconds:g} s | transcript {args.tokens} tokens "
            f"| gen_len {args.gen_len} | audio windows: {'all (paper)' if args.full_windows else 'trimmed to the audio'}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny", help="model shape (random weights)")
    p.add_argument("--num-utts", type=int, default=16)
    p.add_argument("--seconds", type=float, default=6.0, help="duration of each utterance")
    p.add_argument("--tokens", type=int, default=24, help="transcript length imposed on every strategy")
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--reps", type=int, default=1, help="timed repetitions after one warm-up")
    p.add_argument("--full-windows", action="store_true", help="all 88 windows per 30 s, as the paper")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    print(header(args), flush=True)
    print(format_table(run(args)))
