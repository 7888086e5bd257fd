#!/usr/bin/env python3
"""The lang directory from the training transcripts: sentencepiece BPE, tokens and words.

Reads  {data.raw_manifest_dir}/{data.prefix}_supervisions_{part}.jsonl.gz of data.train_parts,
       normalised with the config's normaliser (data.normalizer, data.accents, data.digits)
Writes data/lang_bpe_{data.vocab_size}/{bpe.model,tokens.txt,words.txt,transcript_words.txt,token_rate.json}
"""

import argparse
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the recipe config (its data: section)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main() -> None:
    args = get_parser().parse_args()
    from lhotse import load_manifest_lazy

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.data.lang import prepare_lang
    from whisper_llada.utils.logging import setup_logger

    setup_logger()
    data = load_recipe_config(args.config, args.overrides).data
    lang_dir = data.lang_dir

    from whisper_llada.data.manifests_io import check_manifest
    from whisper_llada.utils.stage_record import StageRecord

    paths = [data.manifest_path("supervisions", part) for part in data.train_parts]
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path}: supervisions manifest not found (run the manifests stage)")
    # Redone when a transcript changed (new supervisions) or the vocabulary size or normaliser did.
    outputs = [
        lang_dir / name for name in ("bpe.model", "words.txt", "tokens.txt", "transcript_words.txt", "token_rate.json")
    ]
    norm = data.text_normalizer()
    record = StageRecord(
        lang_dir / "made-from.json",
        paths,
        {"vocab_size": data.vocab_size, "normalizer": [norm.name, norm.accents, norm.digits]},
        outputs,
    )
    if record.check(str(lang_dir)):
        return
    (lang_dir / "bpe.model").unlink(missing_ok=True)  # prepare_lang keeps an existing one
    texts, durations = [], []
    for path, part in zip(paths, data.train_parts):
        check_manifest(path, "manifests")
        for s in load_manifest_lazy(path):
            texts.append(norm(s.text))
            durations.append(s.duration)
        norm.report(part)
    # durations: token_rate.json, the canvas of gen_len: auto decoding
    prepare_lang(texts, lang_dir, data.vocab_size, durations)
    record.done()


if __name__ == "__main__":
    main()
