#!/usr/bin/env python3
"""lhotse recordings and supervisions of a LibriSpeech-layout tree (unreadable files reported, left out).

Reads  {corpus_dir}/{part}/{speaker}/{chapter}/*.flac and *.trans.txt
Writes {output_dir}/librispeech_{recordings,supervisions}_{part}.jsonl.gz
"""

import argparse
from pathlib import Path

from whisper_llada.data.librispeech import prepare_librispeech
from whisper_llada.utils.logging import setup_logger


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", type=Path, required=True, help="the LibriSpeech directory")
    p.add_argument("--output-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--parts", nargs="*", help="default: every standard part present")
    p.add_argument("--nj", type=int, default=4)
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logger()
    prepare_librispeech(args.corpus_dir, args.output_dir, args.parts, args.nj)


if __name__ == "__main__":
    main()
