#!/usr/bin/env python3
"""Memory plan of a recipe config at full size, measured on the meta device (see --help).

Logic: whisper_llada/tools/memory_plan.py. Run from the repository root after `. path.sh`
(it imports the package: this checkout's, installed editable by tools/install.sh).
"""

from whisper_llada.tools.memory_plan import main

if __name__ == "__main__":
    main()
