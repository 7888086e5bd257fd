#!/usr/bin/env python3
"""Full-width check: whisper-large-v3 and LLaDA-8B widths, a layer or two, the recipe's own stages (see --help).

Logic: whisper_llada/full_width.py. Run from the repository root after `. path.sh`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from whisper_llada.full_width import main  # noqa: E402

if __name__ == "__main__":
    main()
