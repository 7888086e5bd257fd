#!/usr/bin/env python3
"""Print values of a recipe config (defaults filled in) for shell recipes.

Usage: config_value.py CONFIG KEY [KEY ...]   e.g. data.train_parts train.num_epochs
Lists print space-separated, one key a line.
"""

import argparse
import dataclasses
from pathlib import Path

from whisper_llada.recipe import load_recipe_config


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path)
    p.add_argument("keys", nargs="+")
    return p


def main() -> None:
    args = get_parser().parse_args()
    cfg = load_recipe_config(args.config)
    for key in args.keys:
        node = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        if dataclasses.is_dataclass(node):
            node = dataclasses.asdict(node)
        print(" ".join(map(str, node)) if isinstance(node, list) else node)


if __name__ == "__main__":
    main()
