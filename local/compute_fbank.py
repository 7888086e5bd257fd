#!/usr/bin/env python3
"""Whisper log-mel features (lhotse WhisperFbank, lilcom) for each corpus part.

Reads  {manifest_dir}/{prefix}_{recordings,supervisions}_{part}.jsonl.gz
Writes {output_dir}/{prefix}_cuts_{part}.jsonl.gz and {output_dir}/{prefix}_feats_{part}/
"""

import argparse
import logging
from pathlib import Path

from whisper_llada.data.features import compute_whisper_fbank
from whisper_llada.utils.logging import setup_logger


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--output-dir", type=Path, default=Path("data/fbank"))
    p.add_argument("--prefix", default="librispeech")
    p.add_argument("--parts", nargs="+", required=True)
    p.add_argument("--num-mel-bins", type=int, default=128, help="80 for Whisper up to v2, 128 for large-v3")
    p.add_argument("--nj", type=int, default=1)
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logger()
    for part in args.parts:
        m = args.manifest_dir
        compute_whisper_fbank(m / f"{args.prefix}_recordings_{part}.jsonl.gz", m / f"{args.prefix}_supervisions_{part}.jsonl.gz",
                              args.output_dir / f"{args.prefix}_cuts_{part}.jsonl.gz",
                              args.output_dir / f"{args.prefix}_feats_{part}", args.num_mel_bins, args.nj)
    logging.info("done")


if __name__ == "__main__":
    main()
