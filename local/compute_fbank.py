#!/usr/bin/env python3
"""Whisper log-mel features (lhotse WhisperFbank, lilcom) for each corpus part.

Reads  {data.raw_manifest_dir}/{data.prefix}_{recordings,supervisions}_{part}.jsonl.gz of every part
       of the config (or --parts)
Writes {data.manifest_dir}/{prefix}_cuts_{part}.jsonl.gz and {data.manifest_dir}/{prefix}_feats_{part}/
(data.num_mel_bins bins; a recording with several segments gives one cut per segment). With
data.features: on_the_fly, the cuts alone (16 kHz, one channel), whose features the data loader computes.
"""

import argparse
import logging
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the recipe config (its data: section)")
    p.add_argument("--parts", nargs="+", help="default: every part of the config")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--channel", type=int, default=0, help="the channel read from multi-channel recordings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.data.features import compute_whisper_fbank
    from whisper_llada.utils.logging import setup_logger

    setup_logger()
    data = load_recipe_config(args.config, args.overrides).data
    out = Path(data.manifest_dir)
    for part in args.parts or data.all_parts:
        compute_whisper_fbank(
            data.manifest_path("recordings", part),
            data.manifest_path("supervisions", part),
            data.cuts_path(part),
            out / f"{data.prefix}_feats_{part}",
            data.num_mel_bins,
            args.nj,
            args.channel,
            on_the_fly=data.features == "on_the_fly",
        )
    logging.info("done")


if __name__ == "__main__":
    main()
