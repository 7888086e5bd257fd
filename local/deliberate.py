#!/usr/bin/env python3
"""Deliberation of a first pass on the test parts, every setting under `deliberate:` in the config.

Reads  {firstpass_dir}/{first_pass_system}/{test}.jsonl.gz, the model as local/decode.py does
Writes {exp_dir}/{mode}/recogs-{test}-{suffix}.txt, errs-*, speed-*.json, wer-summary-*
"""

from local.decode import run


def main() -> None:
    run("deliberate", __doc__)


if __name__ == "__main__":
    main()
