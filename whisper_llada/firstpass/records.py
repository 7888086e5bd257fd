"""First-pass records: ``data/firstpass/{system}/{part}.jsonl.gz``, one JSON object a cut:
``{"id", "text", "nbest": [{"text", "score"}...], "words": [{"word", "conf", "start", "end"}...]}``.

``text`` is the 1-best, ``nbest`` best first; ``words`` is present when the system gives
confidences.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable
from pathlib import Path

from whisper_llada.utils.checkpoint_io import atomic_write_bytes


def records_path(root: str | Path, system: str, part: str) -> Path:
    return Path(root) / system / f"{part}.jsonl.gz"


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    # mtime 0: the same records make the same bytes (a rerun or another number of processes).
    atomic_write_bytes(path, gzip.compress(lines.encode(), mtime=0))


def read_records(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: first-pass records of {path.parent.name} not found (run the first-pass stage that "
            f"writes them: Whisper's, the CTC recogniser's, or a decoding with as_first_pass: {path.parent.name})"
        )
    out = {}
    n = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    r = json.loads(line)
                    out[r["id"]] = r
                    r["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(
                        f"{path}:{n}: not a first-pass record ({e}); delete the file and rerun the first-pass stage"
                    ) from e
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:  # truncated or not gzip at all
        raise ValueError(
            f"{path}: cannot read these first-pass records after line {n} ({type(e).__name__}: {e}); "
            "the file is truncated or damaged: delete it and rerun the first-pass stage"
        ) from e
    return out
