#!/usr/bin/env python3
"""Build the embedded corpus: fortune sentences spoken by espeak-ng voices, LibriSpeech layout.

Writes {dl_dir}/LibriSpeech/{train-clean-100,dev-clean,test-clean}/... (flac + trans.txt);
files that exist are kept, so an interrupted run resumes. Also {dl_dir}/lm/fortunes-lm-norm.txt:
every fortune sentence that dev and test do not speak, the text-only LM data (train.lm_text).
"""

import argparse
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dl-dir", type=Path, required=True)
    p.add_argument("--num-train", type=int, default=2500)
    p.add_argument("--num-dev", type=int, default=100)
    p.add_argument("--num-test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.corpora.espeak_corpus import build_corpus, write_lm_text
    from whisper_llada.utils.logging import setup_logger

    setup_logger()
    from whisper_llada.utils.checkpoint_io import atomic_write_text

    done = args.dl_dir / "LibriSpeech" / ".corpus.done"
    made = f"{args.num_train} {args.num_dev} {args.num_test} {args.seed}\n"
    if done.is_file():
        print(f"{args.dl_dir}/LibriSpeech already exists - skipping")
        if done.read_text() != made:  # said, not silently ignored
            print(
                f"{done}: made with --num-train/--num-dev/--num-test/--seed {done.read_text().strip()}, not "
                f"{made.strip()}; delete {args.dl_dir}/LibriSpeech to build it with these"
            )
    else:
        build_corpus(args.dl_dir, args.num_train, args.num_dev, args.num_test, args.seed)
        atomic_write_text(done, made)
    # From the split the corpus was built with, so no dev or test sentence enters the LM text.
    lm_text = args.dl_dir / "lm" / "fortunes-lm-norm.txt"
    if not lm_text.is_file():
        n = write_lm_text(lm_text, *map(int, done.read_text().split()))
        print(f"{lm_text}: {n} sentences (none that dev or test speaks)")


if __name__ == "__main__":
    main()
