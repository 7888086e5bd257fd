#!/usr/bin/env python3
"""lhotse recordings and supervisions of every part of the config, from the corpus data.corpus names.

Reads  librispeech: {corpus_dir}/{part}/{speaker}/{chapter}/*.flac and *.trans.txt
       kaldi:       {corpus_dir}/{part}/{wav.scp,text,utt2spk[,segments,reco2file_and_channel,...]}
                    (a Kaldi data directory; wav.scp files or pipe commands, rates and channels read
                    from the audio, --nj at a time)
       lhotse:      {corpus_dir}/{prefix}_{recordings,supervisions}_{part}.jsonl.gz (ready manifests)
Writes {data.raw_manifest_dir}/{data.prefix}_{recordings,supervisions}_{part}.jsonl.gz and the list of
       utterances left out (unreadable audio); a part whose manifests exist is skipped
"""

import argparse
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the recipe config (its data: section)")
    p.add_argument("--corpus-dir", type=Path, required=True, help="the directory that holds the parts")
    p.add_argument("--parts", nargs="+", help="default: every part of the config")
    p.add_argument("--nj", type=int, default=4)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.corpora.manifests import prepare_manifests
    from whisper_llada.utils.logging import setup_logger

    setup_logger()
    prepare_manifests(load_recipe_config(args.config, args.overrides).data, args.corpus_dir, args.nj, args.parts)


if __name__ == "__main__":
    main()
