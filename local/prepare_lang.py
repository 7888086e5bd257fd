#!/usr/bin/env python3
"""The lang directory from the training transcripts: sentencepiece BPE, tokens and words.

Reads  {manifest_dir}/{prefix}_supervisions_{part}.jsonl.gz of the training parts
Writes {lang_dir}/{bpe.model,tokens.txt,words.txt,transcript_words.txt}
"""

import argparse
from pathlib import Path

from whisper_llada.data.lang import prepare_lang
from whisper_llada.data.text_norm import get_normalizer
from whisper_llada.utils.logging import setup_logger


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--prefix", default="librispeech")
    p.add_argument("--parts", nargs="+", required=True, help="training parts")
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--vocab-size", type=int, default=500)
    p.add_argument("--normalizer", default="librispeech")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logger()
    from lhotse import load_manifest_lazy

    if (args.lang_dir / "bpe.model").is_file() and (args.lang_dir / "words.txt").is_file():
        print(f"{args.lang_dir} already exists - skipping")
        return
    norm = get_normalizer(args.normalizer)
    texts = []
    for part in args.parts:
        path = args.manifest_dir / f"{args.prefix}_supervisions_{part}.jsonl.gz"
        if not path.is_file():
            raise SystemExit(f"{path}: supervisions manifest not found (run the manifests stage)")
        texts += [norm(s.text) for s in load_manifest_lazy(path)]
    prepare_lang(texts, args.lang_dir, args.vocab_size)


if __name__ == "__main__":
    main()
