#!/usr/bin/env python3
"""Full-width check: whisper-large-v3 and LLaDA-8B widths, a layer or two, the recipe's own stages (see --help).

Logic: whisper_llada/tools/full_width.py. Run from the repository root after `. path.sh`
(it imports the package: this checkout's, installed editable by tools/install.sh).
"""

from whisper_llada.tools.full_width import main

if __name__ == "__main__":
    main()
