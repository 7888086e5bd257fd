"""Reading lhotse manifests so that a missing, truncated or corrupt file is named, with what to do,
instead of surfacing as a bare ``EOFError`` or JSON error from deep inside lhotse.

``check_manifest`` reads a file through once (gzip CRC and every JSON line), for lazy readers.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

STAGE_OF = {"recordings": "manifests", "supervisions": "manifests", "cuts": "features"}


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and the stage that rebuilds it."""


def _kind(path: Path) -> str:
    return next((k for k in STAGE_OF if f"_{k}_" in path.name or path.name.startswith(f"{k}.")), "cuts")


def manifest_error(path: str | Path, err: BaseException, stage: str | None = None, where: str = "") -> ManifestError:
    path = Path(path)
    stage = stage or STAGE_OF[_kind(path)]
    return ManifestError(
        f"{path}{where}: cannot read this manifest ({type(err).__name__}: {err}); it is truncated or "
        f"damaged: delete it and rerun the {stage} stage, which rebuilds it"
    )


def check_manifest(path: str | Path, stage: str | None = None) -> int:
    """Number of items in ``path`` after reading it through; ManifestError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run the {stage or STAGE_OF[_kind(path)]} stage)")
    n = 0
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            # n: the lines read, which the error and the count after the loop report.
            for n, line in enumerate(f, 1):  # noqa: B007
                json.loads(line)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise manifest_error(path, e, stage, f" (line {n + 1})") from e
    return n


def read_manifest(path: str | Path, stage: str | None = None):
    """The whole manifest in memory (RecordingSet, SupervisionSet or CutSet)."""
    from lhotse import load_manifest

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run the {stage or STAGE_OF[_kind(path)]} stage)")
    try:
        return load_manifest(path)
    except Exception as e:  # lhotse raises whatever its reader meets: EOFError, JSON, KeyError, ...
        raise manifest_error(path, e, stage) from e


def read_cuts(path: str | Path, lazy: bool = False):
    """A CutSet, checked through first when ``lazy`` (a truncated file fails here, named, not mid-epoch)."""
    from lhotse import load_manifest_lazy

    if lazy:
        check_manifest(path, "features")
        return load_manifest_lazy(path)
    return read_manifest(path, "features")
