#!/usr/bin/env python3
"""Decoding-speed table for every strategy beside the autoregressive twin (see --help).

Logic: whisper_llada/tools/bench.py. Run from the repository root after `. path.sh`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from whisper_llada.tools.bench import main  # noqa: E402

if __name__ == "__main__":
    main()
