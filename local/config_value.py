#!/usr/bin/env python3
"""Print values of a recipe config (defaults and base: files filled in) for shell recipes.

Usage: config_value.py CONFIG KEY [KEY ...]   e.g. data.train_parts train.num_epochs
One key a line: lists space-separated, sections as JSON (which --set KEY=VALUE reads back), null as "".
"""

import argparse
import dataclasses
import json
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path)
    p.add_argument("keys", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.config.recipe import load_recipe_config

    cfg = load_recipe_config(args.config, args.overrides)
    for key in args.keys:
        node = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        if dataclasses.is_dataclass(node):
            node = dataclasses.asdict(node)
        if isinstance(node, dict):
            print(json.dumps(node))
        else:
            print(" ".join(map(str, node)) if isinstance(node, list) else "" if node is None else node)


if __name__ == "__main__":
    main()
