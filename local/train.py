#!/usr/bin/env python3
"""Fine-tune Whisper-LLaDA (or the autoregressive twin) on the recipe's training parts.

One process:   ./local/train.py --config conf/x.yaml --exp-dir exp/x
Several GPUs:  torchrun --nproc-per-node 8 ./local/train.py --config conf/x.yaml --exp-dir exp/x

Reads  the config's data.manifest_dir cuts (train and dev parts), lang and model directories
Writes {exp_dir}/epoch-N.pt, checkpoint-{batch}.pt, tensorboard/, log/log-train-*
A rerun resumes by itself from the checkpoint that got furthest (a damaged one is skipped with a
warning); --start-epoch N (from epoch-(N-1).pt) or --start-batch B (from checkpoint-B.pt) choose one,
--start-epoch 1 starts afresh. Checkpoints beyond the start are renamed *.superseded.
"""

import argparse
import logging
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--start-epoch", type=int, help="resume from epoch-(N-1).pt (default: the furthest checkpoint)")
    p.add_argument("--start-batch", type=int, help="resume from checkpoint-B.pt (default: the furthest checkpoint)")
    p.add_argument("--num-epochs", type=int, help="override train.num_epochs")
    p.add_argument("--max-duration", type=float, help="override train.max_duration (seconds per batch and rank)")
    p.add_argument("--device", help="cpu or cuda:N (default: cuda:LOCAL_RANK when available)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set train.lr=1e-4 (repeatable)",
    )
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.training.trainer import run_training
    from whisper_llada.utils.dist import dist_env
    from whisper_llada.utils.logging import setup_logger

    rank, _, world = dist_env()
    setup_logger(args.exp_dir / "log" / "log-train", rank, world)
    overrides = list(args.overrides)
    if args.num_epochs is not None:
        overrides.append(f"train.num_epochs={args.num_epochs}")
    if args.max_duration is not None:
        overrides.append(f"train.max_duration={args.max_duration}")
    cfg = load_recipe_config(args.config, overrides)
    logging.info("training %s with %s on %d process(es)", args.exp_dir, args.config, world)
    run_training(cfg, args.exp_dir, args.start_epoch, args.start_batch, args.device)


if __name__ == "__main__":
    main()
