#!/usr/bin/env python3
"""Direct decoding of the test parts with every setting listed under `decode:` in the config.

Reads  {exp_dir}/epoch-*.pt (averaged with --avg) or --checkpoint, the test cuts
Writes {exp_dir}/{mode}/recogs-{test}-{suffix}.txt, errs-*, speed-*.json, wer-summary-*

Several processes: torchrun --nproc-per-node N ./local/decode.py ... (each decodes a share of the
batches, rank 0 writes every file; the results are those of one process)
"""

import argparse
import logging
from pathlib import Path


def get_parser(doc: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--epoch", type=int, help="use epoch-N.pt (default: the config's train.num_epochs)")
    p.add_argument(
        "--avg", type=int, help="average the last AVG epochs up to --epoch (default: the config's train.avg)"
    )
    p.add_argument("--checkpoint", type=Path, help="a checkpoint file instead of --epoch/--avg")
    p.add_argument("--parts", nargs="+", help="test parts (default: data.test_parts)")
    p.add_argument("--firstpass-dir", type=Path, default=Path("data/firstpass"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def run(method: str, doc: str) -> None:
    args = get_parser(doc).parse_args()
    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.utils.dist import dist_env, finish, init_decoding
    from whisper_llada.utils.logging import setup_logger

    setup_logger(args.exp_dir / "log" / f"log-{method}", *dist_env()[::2])
    cfg = load_recipe_config(args.config, args.overrides)
    settings = cfg.decode_settings() if method == "decode" else cfg.deliberate_settings()
    if not settings:
        logging.info("no %s settings in %s - nothing to do", method, args.config)
        return
    from whisper_llada.inference import checkpoint_paths, load_trained_model, run_settings

    _, _, device = init_decoding(args.device)
    paths, tag = checkpoint_paths(args.exp_dir, cfg.train, args.epoch, args.avg, args.checkpoint)
    try:
        run_settings(
            cfg,
            lambda: load_trained_model(cfg, paths, device),
            tag,
            args.exp_dir,
            settings,
            args.parts or cfg.data.test_parts,
            args.firstpass_dir,
            device,
            checkpoints=paths,
        )
    finally:
        finish()


def main() -> None:
    run("decode", __doc__)


if __name__ == "__main__":
    main()
