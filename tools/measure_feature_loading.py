#!/usr/bin/env python3
"""CPU time the data loader spends on one cut's features: stored (lilcom, data.features: stored)
against computed from the audio (data.features: on_the_fly), and the disk the stored ones take.

Makes a flac of espeak-ng speech (or takes --flac), stores its features as the features stage
does, then times each way of loading them on one thread, as in a loader worker.

    python tools/measure_feature_loading.py --work-dir /tmp/featload [--seconds 15] [--num-mel-bins 128]
"""

import argparse
import time
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--flac", type=Path, help="a 16 kHz mono recording to time (default: espeak-ng speech)")
    p.add_argument("--seconds", type=float, default=15.0, help="length of the made-up recording")
    p.add_argument("--num-mel-bins", type=int, default=128)
    p.add_argument("--repeats", type=int, default=60)
    return p


def speech_flac(path: Path, seconds: float) -> Path:
    """``seconds`` of espeak-ng speech at 16 kHz (one paragraph, repeated as needed)."""
    import librosa
    import numpy as np
    import soundfile as sf

    from whisper_llada.corpora.espeak import ESpeak

    engine = ESpeak.get()
    text = (
        "the river ran past the old stone house in the morning light and a small bird sang on the "
        "green tree while the wind carried rain over the quiet water towards the dark hills"
    )
    wav = librosa.resample(engine.synth(text), orig_sr=engine.sample_rate, target_sr=16000).astype(np.float32)
    n = int(seconds * 16000)
    sf.write(path, np.tile(wav, n // len(wav) + 1)[:n], 16000)
    return path


def main() -> None:
    args = get_parser().parse_args()
    import torch
    from lhotse import Recording
    from lhotse.features.io import LilcomChunkyWriter

    from whisper_llada.data.features import whisper_fbank

    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    flac = args.flac or speech_flac(args.work_dir / "speech.flac", args.seconds)
    cut = Recording.from_file(flac).to_cut()
    extractor = whisper_fbank(args.num_mel_bins)
    with LilcomChunkyWriter(args.work_dir / "feats") as writer:
        stored = cut.compute_and_store_features(extractor, writer)
    size = (args.work_dir / "feats.lca").stat().st_size
    print(f"{flac}: {cut.duration:.1f} s; stored features {size / 1000:.0f} kB ({size / cut.duration / 1000:.1f} kB/s)")
    for name, load in (
        ("stored", stored.load_features),
        ("on the fly", lambda: cut.compute_features(extractor)),
        ("(audio alone)", cut.load_audio),
    ):
        load()
        c0 = time.process_time()
        for _ in range(args.repeats):
            load()
        cpu = (time.process_time() - c0) / args.repeats
        print(f"{name:>13}: {cpu * 1000:.1f} ms CPU a cut, {cut.duration / cpu:.0f} s of audio per CPU second")


if __name__ == "__main__":
    main()
