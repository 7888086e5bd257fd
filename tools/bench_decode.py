#!/usr/bin/env python3
"""Decoding-speed table for every strategy beside the autoregressive twin (see --help).

Logic: whisper_llada/tools/bench.py. Run from the repository root after `. path.sh`
(it imports the package: this checkout's, installed editable by tools/install.sh).
"""

from whisper_llada.tools.bench import main

if __name__ == "__main__":
    main()
