#!/usr/bin/env python3
"""Import the Whisper-LLaDA authors' released checkpoint into this project's format.

  tools/import_released_checkpoint.py --config egs/librispeech/conf/whisper_llada.yaml \
      --checkpoint checkpoint_best_epoch_143.pth --output egs/librispeech/exp/whisper_llada/released.pt
  then, in egs/librispeech: ../../local/decode.py --config conf/whisper_llada.yaml \
      --exp-dir exp/whisper_llada --checkpoint exp/whisper_llada/released.pt

The config's model section must match the release (whisper-large-v3, LLaDA-8B-Instruct, LoRA r 8
on q/k/v, the paper's Q-Former). Every released key not used and every trainable parameter not
filled is listed; a mismatch in shape is an error. Deliberate with `eos_pad: false`, the layout
the release was trained with. Logic: whisper_llada/checkpoint/released.py. Run after `. path.sh`
(it imports the package: this checkout's, installed editable by tools/install.sh).
"""

import argparse
from pathlib import Path

from whisper_llada.checkpoint.released import import_released_checkpoint
from whisper_llada.config.recipe import load_recipe_config
from whisper_llada.models.build import build_model
from whisper_llada.utils.logging import setup_logger


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="recipe config whose model section matches the release")
    p.add_argument("--checkpoint", type=Path, required=True, help="the released .pth (a dict with key 'model')")
    p.add_argument("--output", type=Path, required=True, help="our checkpoint file to write")
    p.add_argument(
        "--allow-unfilled",
        action="store_true",
        help="keep initial values for trainable parameters the release lacks instead of failing",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    setup_logger()
    if args.output.is_file():
        print(f"{args.output} already exists - skipping")
        return
    cfg = load_recipe_config(args.config, args.overrides)
    import_released_checkpoint(build_model(cfg.model), args.checkpoint, args.output, args.allow_unfilled)


if __name__ == "__main__":
    main()
