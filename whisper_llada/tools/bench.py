"""Decoding-speed benchmark: every strategy of the paper beside the autoregressive twin, one run.

Models have random weights; a transcript length is imposed on both model families (the
diffusion LM's EOS logit is raised from position T on, the AR twin emits exactly T tokens
and EOS), so each strategy does the work a trained model would for a T-token transcript.
Whisper's decoder as block diffusion and as its AR twin (the embedded default's pair) is
benchmarked the same way, each never ending before T.

Each benchmarked strategy is a ``BenchStrategy``; ``strategies`` lists them in table order.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from whisper_llada.data.audio import Audio
from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.tools.random_models import (
    SIZES,
    EndsAt,
    VocabTokenizer,
    decoder_pair,
    model_config,
    on_device,
)

# Model families: each has its own AR twin, to which the table's RTF ratios are.
LLM = "llm"  # Whisper-LLaDA and its LLaMA twin (Q-Former prefix)
WHISPER_DECODER = "whisper_decoder"  # Whisper's decoder as block diffusion and as its AR twin


@dataclass
class Tally:
    """One timed repetition's counts over every batch: passes, the positions they ran, the output
    ids per utterance (to check that caches change nothing) and the front end's seconds."""

    passes: int = 0
    positions: int = 0
    outputs: list = field(default_factory=list)
    front: float = 0.0

    def count(self, counts: PassCounts) -> None:
        self.passes += counts.total_passes()
        self.positions += counts.total_positions()


class Bench:
    """The models and inputs every strategy of a run shares, and the timing of one batch's front end."""

    def __init__(self, args, whisper_decoder: bool):
        self.args = args
        vocab = SIZES[args.size][0][4]
        self.tok = VocabTokenizer(vocab)
        self.dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
        trim = not args.full_windows
        # Built in this order, from one seed, so that every run gets the same random weights and inputs.
        self.llada = on_device(
            model_config(args.size, "whisper_llada", self.tok, trim), self.tok, args.device, self.dtype
        )
        self.llama = on_device(
            model_config(args.size, "whisper_llama", self.tok, trim), self.tok, args.device, self.dtype
        )
        g = torch.Generator().manual_seed(0)
        frames = int(args.seconds * 100)
        mels = self.llada.encoder.config.num_mel_bins
        self.feats = torch.randn(args.num_utts, frames, mels, generator=g).to(args.device)
        self.lens = torch.full((args.num_utts,), frames, device=args.device)
        self.hyps = torch.randint(0, vocab - 2, (args.num_utts, args.tokens), generator=g).tolist()
        self.oracle = EndsAt(self.llada.llm, args.tokens, self.tok.eos_id)
        if whisper_decoder:
            self.wtok, self.mdm, self.twin = decoder_pair(args.size, args.device, self.dtype)

    def sync(self) -> None:
        if self.args.device == "cuda":
            torch.cuda.synchronize()

    def front(self, tally: Tally, fn):
        """``fn()``, its seconds (the front end's) added to ``tally``: the LLM's share of the time
        is shown without them."""
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        tally.front += time.perf_counter() - t0
        return out

    def batch(self, sl: slice) -> dict:
        return {"audio": Audio.features(self.feats[sl], self.lens[sl])}

    def measure(self, strategy: BenchStrategy, bs: int) -> Row:
        """``strategy`` over every utterance in batches of ``bs``, timed over ``reps`` after a warm-up."""
        args, tally = self.args, Tally()

        def once():
            nonlocal tally
            tally = Tally()
            for i in range(0, args.num_utts, bs):
                with torch.no_grad():
                    strategy.run(self, slice(i, i + bs), tally)

        wall = _time(once, args.reps, self.sync)
        llm = wall - tally.front  # the front end's seconds of the last timed repetition
        audio_s = args.num_utts * args.seconds
        passes_per_utt = tally.passes / args.num_utts
        return Row(
            strategy.name,
            bs,
            passes_per_utt,
            tally.positions / tally.passes,
            wall / audio_s,
            list(tally.outputs),
            llm / audio_s,
        )


class BenchStrategy:
    """One benchmarked setting: its table name, its model family, and ``run`` on a batch, which
    adds its passes, positions and outputs to a ``Tally``."""

    family: ClassVar[str] = LLM
    is_twin: ClassVar[bool] = False  # its family's AR twin: the table's RTFs are ratios to it

    def __init__(self, name: str):
        self.name = name

    def run(self, bench: Bench, sl: slice, tally: Tally) -> None:
        raise NotImplementedError


class _OnLLaDA(BenchStrategy):
    """A sampler on Whisper-LLaDA (with the transcript length imposed), its prefix cache by name:
    "blind" is the prefix-blind model recomputed every step (the exact cache's reference)."""

    def __init__(self, name: str, cache: str = "none", length: int | None = None):
        super().__init__(name)
        self.cache, self.length = cache, length

    def denoiser(self, bench: Bench):
        from whisper_llada.diffusion import make_denoiser

        return make_denoiser(
            bench.oracle,
            prefix_attends_response=self.cache not in ("exact", "blind"),
            cache="none" if self.cache == "blind" else self.cache,
            refresh=bench.args.cache_refresh,
        )


class Generate(_OnLLaDA):
    """Diffusion decoding: ``steps`` over blocks of ``block``, or a per-row canvas of ``length``."""

    def __init__(self, name, steps: int, block: int | None = None, commit: str = "fixed", **kw):
        super().__init__(name, **kw)
        self.steps, self.block, self.commit = steps, block, commit

    def run(self, bench: Bench, sl: slice, tally: Tally) -> None:
        from whisper_llada.diffusion import generate

        args, tok = bench.args, bench.tok
        prefix, mask, pos = bench.front(tally, lambda: bench.llada.batch_prefix(bench.batch(sl)))
        counts = PassCounts()
        gen_len = args.gen_len if self.length is None else torch.full((prefix.shape[0],), self.length)
        out = generate(
            self.denoiser(bench),
            prefix,
            prefix_mask=mask,
            gen_length=gen_len,
            steps=self.steps,
            block_length=None if self.length else self.block,
            mask_id=tok.mask_id,
            eos_id=tok.eos_id,
            stats=counts,
            prefix_positions=pos,
            commit=self.commit,
            threshold=args.threshold,
        )
        tally.outputs.extend(out[:, : args.tokens].tolist())
        tally.count(counts)


class Deliberate(_OnLLaDA):
    """Deliberation of random first-pass hypotheses: ``mode`` diffusion or semi_ar, ``masking``
    and ``ratio`` as the settings' masking_type and mask_ratio, 4 chunks, ``gen_len`` steps."""

    def __init__(self, name, mode: str, masking: str, ratio: float, **kw):
        super().__init__(name, **kw)
        self.mode, self.masking, self.ratio = mode, masking, ratio

    def run(self, bench: Bench, sl: slice, tally: Tally) -> None:
        from whisper_llada.diffusion import deliberate

        args, tok = bench.args, bench.tok
        prefix, mask, pos = bench.front(tally, lambda: bench.llada.batch_prefix(bench.batch(sl)))
        counts = PassCounts()
        margin = args.len_margin
        pad_to = args.gen_len if self.length is None else [len(h) + margin for h in bench.hyps[sl]]
        out = deliberate(
            self.denoiser(bench),
            prefix,
            bench.hyps[sl],
            prefix_mask=mask,
            mode=self.mode,
            mask_ratio=self.ratio,
            masking_type=self.masking,
            num_chunks=4,
            steps=args.gen_len,
            mask_id=tok.mask_id,
            eos_id=tok.eos_id,
            pad_id=tok.pad_id,
            pad_to=pad_to,
            generator=torch.Generator().manual_seed(0),
            stats=counts,
            prefix_positions=pos,
        )
        tally.outputs.extend(out)
        tally.count(counts)


class LLaMAGreedy(BenchStrategy):
    """The AR twin's greedy search with its KV cache (transformers' ``generate``), T tokens and EOS."""

    is_twin = True

    def run(self, bench: Bench, sl: slice, tally: Tally) -> None:
        from transformers import GenerationConfig

        T, tok = bench.args.tokens, bench.tok
        prefix, mask, pos = bench.front(tally, lambda: bench.llama.batch_prefix(bench.batch(sl)))
        gen = GenerationConfig(
            min_new_tokens=T + 1,
            max_new_tokens=T + 1,
            do_sample=False,
            eos_token_id=tok.eos_id,
            pad_token_id=tok.pad_id,
        )
        bench.llama.llm.generate(
            inputs_embeds=prefix,
            attention_mask=mask.long(),
            generation_config=gen,
            **({} if pos is None else {"position_ids": pos}),
        )
        n = prefix.shape[0]
        tally.passes += (T + 1) * n
        # the first pass reads the prefix, each later one a single position
        tally.positions += (prefix.shape[1] + T) * n


class _OnWhisperDecoder(BenchStrategy):
    family = WHISPER_DECODER

    def frames(self, bench: Bench, sl: slice, tally: Tally) -> Audio:
        """The encoder's frames of the batch (the front end both models share), timed apart."""
        return bench.front(tally, lambda: Audio.frames(*bench.mdm.run_encoder(bench.feats[sl], bench.lens[sl])))


class WhisperDecoderDiffusion(_OnWhisperDecoder):
    """Whisper's decoder as block diffusion (blocks of 4), ``per_step`` tokens a step, never ending
    early: the whole forced canvas is decoded. ``cache`` as the settings' key."""

    def __init__(self, name: str, cache: str, per_step: int = 1):
        super().__init__(name)
        self.cache, self.per_step = cache, per_step

    def run(self, bench: Bench, sl: slice, tally: Tally) -> None:
        from whisper_llada.decoding.settings import DecodeConfig
        from whisper_llada.diffusion import generate

        T = bench.args.tokens
        frames, fmask, _ = bench.mdm.prefix(self.frames(bench, sl, tally))
        canvas = -(-T // 4) * 4
        counts = PassCounts()
        out = generate(
            bench.mdm.denoiser(DecodeConfig(mode="decoding", cache=self.cache)),
            frames,
            prefix_mask=fmask,
            gen_length=canvas,
            steps=canvas // self.per_step,
            block_length=4,
            mask_id=bench.wtok.mask_id,
            eos_id=-1,
            stats=counts,
        )
        tally.outputs.extend(out[:, :T].tolist())
        tally.count(counts)


class WhisperDecoderGreedy(_OnWhisperDecoder):
    """Whisper's decoder as its AR twin, greedy with its KV cache, T tokens."""

    is_twin = True

    def run(self, bench: Bench, sl: slice, tally: Tally) -> None:
        from whisper_llada.decoding.settings import DecodeConfig

        T = bench.args.tokens
        audio = self.frames(bench, sl, tally)
        n = int(bench.lens[sl].numel())
        counts = PassCounts()
        bench.twin.nbest({"audio": audio}, DecodeConfig(mode="autoregressive", gen_len=T, num_beams=1), counts)
        # Counted as the samplers count a cross-attention model: one pass over the frames (their
        # keys and values), then the prompt, then one position a token.
        tally.passes += counts.total_passes() + n
        P = len(bench.wtok.prompt_ids(""))
        tally.positions += (audio.data.shape[1] + P + T - 1) * n


@dataclass
class Row:
    name: str
    batch: int
    passes_per_utt: float
    positions_per_pass: float
    rtf: float
    tokens: list | None = None  # output ids per utterance (checks that caches change nothing)
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


def strategies(L: int, T: int, margin: int) -> list[BenchStrategy]:
    """Every benchmarked setting, in table order: the paper's, then the fast ones, then Whisper's
    decoder as block diffusion beside its own AR twin (the embedded default's pair)."""
    auto = T + margin  # gen_len auto: the canvas a transcript of T tokens gets from its audio
    blind = "(prefix-blind)"
    return [
        Generate(f"diffusion steps {L}", steps=L, block=L),
        Generate(f"diffusion steps {L // 2}", steps=L // 2, block=L),
        Generate(f"diffusion steps {L // 4}", steps=L // 4, block=L),
        Generate(f"semi-AR block {L // 4} steps {L}", steps=L, block=L // 4),
        Generate(f"semi-AR block {L // 16} steps {L}", steps=L, block=L // 16),
        Deliberate("delib low-conf 0.3", "diffusion", "low_confidence", 0.3),
        Deliberate("delib random 0.3", "diffusion", "random", 0.3),
        Deliberate("delib low-conf 0.5", "diffusion", "low_confidence", 0.5),
        Deliberate("delib semi-AR 4 chunks", "semi_ar", "random", 0.3),
        # fast settings: the canvas sized per row, the prefix cached, parallel commits
        Generate(f"diffusion len auto steps {L // 4}", steps=L // 4, length=auto),
        Generate(f"diffusion len auto steps {L // 4} approx cache 4", steps=L // 4, length=auto, cache="approximate"),
        Generate(f"diffusion len auto steps {L // 4} exact cache {blind}", steps=L // 4, length=auto, cache="exact"),
        Generate(f"diffusion len auto steps {L // 16} exact cache {blind}", steps=L // 16, length=auto, cache="exact"),
        Generate(
            f"diffusion len auto threshold 0.9 exact cache {blind}",
            steps=L,
            length=auto,
            cache="exact",
            commit="threshold",
        ),
        Generate(f"diffusion len auto steps {L // 4} no cache {blind}", steps=L // 4, length=auto, cache="blind"),
        Generate(f"diffusion steps {L // 4} exact cache {blind}", steps=L // 4, block=L, cache="exact"),
        Generate(f"diffusion steps {L // 4} no cache {blind}", steps=L // 4, block=L, cache="blind"),
        Deliberate(
            f"delib low-conf 0.3 len auto exact cache {blind}",
            "diffusion",
            "low_confidence",
            0.3,
            length=auto,
            cache="exact",
        ),
        Deliberate(
            f"delib random 0.3 len auto exact cache {blind}", "diffusion", "random", 0.3, length=auto, cache="exact"
        ),
        Deliberate(
            f"delib low-conf 0.3 len auto no cache {blind}",
            "diffusion",
            "low_confidence",
            0.3,
            length=auto,
            cache="blind",
        ),
        LLaMAGreedy("AR twin greedy (KV cache)"),
        WhisperDecoderDiffusion("Whisper decoder: block diffusion 4, 1 token a step, block cache", cache="auto"),
        WhisperDecoderDiffusion("Whisper decoder: block diffusion 4, 1 token a step, no cache", cache="none"),
        WhisperDecoderDiffusion(
            "Whisper decoder: block diffusion 4, 2 tokens a step, block cache", cache="auto", per_step=2
        ),
        WhisperDecoderGreedy("Whisper decoder: AR twin greedy (KV cache)"),
    ]


def chosen(all_: list[BenchStrategy], only: list[str] | None) -> list[BenchStrategy]:
    """The strategies whose names contain one of ``only`` (None: all), with the AR twins the
    table's ratios are to: the LLM pair's always, the Whisper decoder's when one of its is chosen."""
    if not only:
        return all_
    picked = [s for s in all_ if any(o in s.name for o in only)]
    if not picked:
        raise SystemExit(f"--only {only}: matches none of {[s.name for s in all_]}")
    families = {LLM} | {s.family for s in picked}
    return [s for s in all_ if s in picked or (s.is_twin and s.family in families)]


def run(args) -> list[Row]:
    """One row per batch size and chosen strategy."""
    torch.manual_seed(0)
    todo = chosen(strategies(args.gen_len, args.tokens, args.len_margin), args.only)
    bench = Bench(args, whisper_decoder=any(s.family == WHISPER_DECODER for s in todo))
    return [bench.measure(s, bs) for bs in args.batch_sizes for s in todo]


def format_table(rows: list[Row], gen_len: int | None = None) -> str:
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
