#!/usr/bin/env python3
"""Memory plan of a recipe config at full size, measured on the meta device (see --help).

Logic: whisper_llada/memory_plan.py. Run from the repository root after `. path.sh`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from whisper_llada.memory_plan import main  # noqa: E402

if __name__ == "__main__":
    main()
