#!/usr/bin/env python3
"""Memory and time a training process spends on its cuts before the first batch.

Builds (once) a synthetic cut manifest of LibriSpeech 960 h's size (281,241 cuts; features are
never read), then, in a fresh process, loads the training cuts the way the trainer does (the
filter with a sentencepiece tokenizer, lhotse's DynamicBucketingSampler) and prints the peak
resident memory added and the seconds until the sampler yields its first batch.

    python tools/measure_cut_loading.py --work-dir /tmp/cutload [--num-cuts 281241]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--num-cuts", type=int, default=281241)
    p.add_argument("--measure", action="store_true", help="(internal) the measuring child process")
    return p


def make_manifest(work: Path, num_cuts: int) -> None:
    """``{work}/fbank/synth_cuts_train.jsonl.gz``, a small dev part, a BPE model and a config."""
    import random

    from lhotse import Features, MonoCut, Recording, SupervisionSegment
    from lhotse.audio import AudioSource
    from lhotse.serialization import SequentialJsonlWriter

    from whisper_llada.data.tokenizer import train_sentencepiece

    rng = random.Random(0)
    words = [f"w{i:04d}" for i in range(4000)]
    (work / "fbank").mkdir(parents=True, exist_ok=True)
    texts = []
    for part, n in (("train", num_cuts), ("dev", 50)):
        path = work / "fbank" / f"synth_cuts_{part}.jsonl.gz"
        if path.is_file():
            continue
        with SequentialJsonlWriter(path.with_suffix(".tmp.gz")) as w:
            for i in range(n):
                dur = round(rng.uniform(1.0, 24.0), 2)
                cid = f"{part}-{i:07d}"
                text = " ".join(rng.choice(words) for _ in range(max(1, int(dur * 2.5)))).upper()
                if len(texts) < 5000:
                    texts.append(text)
                rec = Recording(
                    id=cid,
                    sources=[AudioSource(type="file", channels=[0], source=f"/nowhere/{cid}.flac")],
                    sampling_rate=16000,
                    num_samples=int(dur * 16000),
                    duration=dur,
                )
                feats = Features(
                    type="whisper-fbank",
                    num_frames=int(dur * 100),
                    num_features=80,
                    frame_shift=0.01,
                    sampling_rate=16000,
                    start=0,
                    duration=dur,
                    storage_type="lilcom_chunky",
                    storage_path="/nowhere/feats.lca",
                    storage_key=str(i * 1000),
                    recording_id=cid,
                    channels=0,
                )
                sup = SupervisionSegment(
                    id=cid, recording_id=cid, start=0, duration=dur, channel=0, text=text, speaker=f"s{i % 2000}"
                )
                w.write(
                    MonoCut(
                        id=cid, start=0, duration=dur, channel=0, recording=rec, features=feats, supervisions=[sup]
                    ).to_dict()
                )
        path.with_suffix(".tmp.gz").rename(path)
    if not (work / "bpe.model").is_file():
        train_sentencepiece(texts, work / "bpe", vocab_size=500)
    (work / "config.yaml").write_text(
        json.dumps(
            {
                "model": {
                    "arch": "whisper_llada",
                    "whisper": {"path": "/nowhere"},
                    "llm": {"path": "/nowhere"},
                    "tokenizer": {"type": "sentencepiece", "path": str(work / "bpe.model")},
                    "loss": {"response_length": 128},
                },
                "data": {
                    "manifest_dir": str(work / "fbank"),
                    "prefix": "synth",
                    "train_parts": ["train"],
                    "dev_parts": ["dev"],
                    "test_parts": ["dev"],
                    "num_mel_bins": 80,
                },
            }
        )
    )


def measure(work: Path) -> dict:
    import resource
    import time

    from lhotse.dataset import DynamicBucketingSampler

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.data.tokenizer import build_tokenizer
    from whisper_llada.training.trainer import load_cuts

    cfg = load_recipe_config(work / "config.yaml")
    tok = build_tokenizer(cfg.model.tokenizer)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    cuts = load_cuts(cfg, cfg.data.train_parts, tok, "train", 0.5)
    sampler = DynamicBucketingSampler(cuts, max_duration=200, num_buckets=30, shuffle=True, seed=42)
    batch = next(iter(sampler))
    seconds = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds_to_first_batch": round(seconds, 2),
        "peak_rss_added_gb": round((peak - base) / 2**20, 3),
        "peak_rss_gb": round(peak / 2**20, 3),
        "first_batch_cuts": len(batch),
    }


def main() -> None:
    args = get_parser().parse_args()
    if args.measure:
        import logging

        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(measure(args.work_dir)))
        return
    make_manifest(args.work_dir, args.num_cuts)
    out = subprocess.run(
        [sys.executable, __file__, "--work-dir", str(args.work_dir), "--measure"], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
