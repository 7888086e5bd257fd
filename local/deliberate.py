#!/usr/bin/env python3
"""Deliberation of a first pass on the test parts, every setting under `deliberate:` in the config.

Reads  {firstpass_dir}/{first_pass_system}/{test}.jsonl.gz, the model as local/decode.py does
Writes {exp_dir}/{mode}/recogs-{test}-{suffix}.txt, errs-*, speed-*.json, wer-summary-*
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode import run  # noqa: E402


def main() -> None:
    run("deliberate", __doc__)


if __name__ == "__main__":
    main()
