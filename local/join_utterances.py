#!/usr/bin/env python3
"""Join consecutive utterances of a LibriSpeech-layout part into long ones (a test of long-form
decoding on speech whose short-utterance results are known).

Reads  SRC (e.g. download/LibriSpeech/test-clean: */*/*.trans.txt and their flac files).
Writes DST in the same layout, one flac per joined utterance, and DST/joined.txt (joined id, then
the ids it was made from). Utterances over the encoder window: --min-seconds 31 --max-seconds 70;
long recordings without segments: --min-seconds 300 --max-seconds 330 --across-speakers.
"""

import argparse
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="a LibriSpeech-layout part")
    p.add_argument("dst", type=Path, help="the joined part to write (beside SRC, to be found by the manifests stage)")
    p.add_argument("--min-seconds", type=float, default=31.0, help="a joined utterance is closed at this length")
    p.add_argument("--max-seconds", type=float, default=70.0, help="and never longer than this")
    p.add_argument(
        "--across-speakers", action="store_true", help="join regardless of speaker (recordings of several voices)"
    )
    p.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds of silence between joined utterances (a corpus whose utterances carry no silence of their own)",
    )
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.corpora.joined_part import join_part
    from whisper_llada.utils.logging import setup_logger

    setup_logger()
    if (args.dst / "joined.txt").is_file():
        print(f"{args.dst} already exists - skipping")
        return
    join_part(args.src, args.dst, args.min_seconds, args.max_seconds, args.across_speakers, args.pause)


if __name__ == "__main__":
    main()
