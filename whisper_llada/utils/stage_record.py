"""What a stage's outputs were made from: a small JSON record beside them (``made-from/``) holding the size and
mtime of each input (a digest of every file under an input directory), the options, and the
outputs as written, so a rerun redoes exactly what is stale and says why.

Use: ``rec = StageRecord(record_path, inputs, options, outputs)``; ``why = rec.stale()`` (None when
up to date, else a sentence); do the work; ``rec.done()``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from whisper_llada.utils.checkpoint_io import atomic_write_text

log = logging.getLogger(__name__)

VERSION = 1


def record_path_for(output: str | Path) -> Path:
    """The record of one output file: ``made-from/{name}.json`` in its directory (out of the way of
    globs such as ``errs-*``); of an output directory: ``made-from.json`` inside it."""
    output = Path(output)
    return output / "made-from.json" if output.is_dir() else output.parent / "made-from" / f"{output.name}.json"


def fingerprint(path: str | Path) -> str | None:
    """``size:mtime_ns`` of a file; a digest over the relative path, size and mtime of every file
    under a directory (a replaced flac or a corrected transcript changes it); None when absent."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    if path.is_dir():
        h = hashlib.sha1()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                p = Path(root) / name
                st = p.stat()
                h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()
    return None


def _jsonable(options: dict) -> dict:
    # A round trip makes tuples lists and paths strings, as they read back from the record.
    return json.loads(json.dumps(options, sort_keys=True, default=str))


class StageRecord:
    """The record of one unit of a stage's work (a part, a job, a result file).

    ``verify``: reads an output and raises if it is damaged (e.g. ``check_manifest``); used to name
    the problem when an output differs from what the record says was written, and to adopt the
    outputs of a run that predates records.
    """

    def __init__(
        self,
        path: str | Path,
        inputs: Iterable[str | Path],
        options: dict,
        outputs: Iterable[str | Path],
        verify: Callable[[Path], object] | None = None,
    ):
        self.path = Path(path)
        self.inputs = [Path(p) for p in inputs]
        self.options = _jsonable(options)
        self.outputs = [Path(p) for p in outputs]
        self.verify = verify

    def _read(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            rec = json.loads(self.path.read_text())
            if not isinstance(rec, dict) or rec.get("version") != VERSION:
                raise ValueError("not a stage record of this version")
            return rec
        except (ValueError, OSError) as e:
            log.warning("%s: unreadable stage record (%s); the outputs it describes are redone", self.path, e)
            return {}

    def _damaged(self, out: Path) -> str | None:
        if self.verify is None or not out.is_file():
            return None
        try:
            self.verify(out)
        except Exception as e:
            return f"{out} cannot be read ({type(e).__name__}: {e})"
        return None

    def stale(self) -> str | None:
        """None when every output exists as written from these inputs and options; else why not."""
        missing = [str(p) for p in self.outputs if not p.exists()]
        if missing:
            return f"output {missing[0]} does not exist" if len(missing) == 1 else f"outputs {missing} do not exist"
        absent = [str(p) for p in self.inputs if not p.exists()]
        if absent:
            raise FileNotFoundError(f"{absent[0]}: input of {self.outputs[0]} not found")
        rec = self._read()
        if rec is None:
            # Outputs of a run before records existed: kept if they read, and recorded from now on.
            bad = next(filter(None, (self._damaged(p) for p in self.outputs)), None)
            if bad:
                return bad
            log.warning(
                "%s: no record of what it was made from (older run); kept as is, recorded now. "
                "Delete it if its inputs changed since.",
                self.outputs[0],
            )
            self.done()
            return None
        if not rec:
            return f"its record {self.path} is unreadable"
        for p in self.outputs:
            if rec.get("outputs", {}).get(str(p)) != fingerprint(p):
                return self._damaged(p) or f"output {p} changed since it was written"
        old_inputs = rec.get("inputs", {})
        for p in self.inputs:
            if str(p) not in old_inputs:
                return f"input {p} is new"
            if old_inputs[str(p)] != fingerprint(p):
                return f"input {p} changed"
        gone = sorted(set(old_inputs) - {str(p) for p in self.inputs})
        if gone:
            return f"input {gone[0]} is no longer used"
        old = rec.get("options", {})
        diff = [k for k in sorted(set(old) | set(self.options)) if old.get(k) != self.options.get(k)]
        if diff:
            k = diff[0]
            return f"option {k} changed: {old.get(k)!r} -> {self.options.get(k)!r}"
        return None

    def done(self) -> None:
        """Record the inputs, options and outputs as they are now (call after the outputs are written)."""
        rec = {
            "version": VERSION,
            "inputs": {str(p): fingerprint(p) for p in self.inputs},
            "options": self.options,
            "outputs": {str(p): fingerprint(p) for p in self.outputs},
        }
        atomic_write_text(self.path, json.dumps(rec, indent=1, sort_keys=True) + "\n")

    @staticmethod
    def amended(record: str | Path, outputs: Iterable[str | Path]) -> None:
        """A later stage rewrote some of ``record``'s outputs on purpose (e.g. added word confidences):
        take their new fingerprints, so that neither stage finds the other stale."""
        record = Path(record)
        if not record.is_file():
            return
        rec = json.loads(record.read_text())
        for p in outputs:
            if str(p) in rec.get("outputs", {}):
                rec["outputs"][str(p)] = fingerprint(p)
        atomic_write_text(record, json.dumps(rec, indent=1, sort_keys=True) + "\n")

    def check(self, what: str = "") -> bool:
        """True (and says so) when the work is up to date; False (and says why) when it must be redone."""
        why = self.stale()
        name = what or str(self.outputs[0])
        if why is None:
            log.info("%s already exists - skipping (made from the same inputs and options)", name)
            return True
        if any(p.exists() for p in self.outputs) or self.path.exists():
            log.warning("%s is stale: %s - redoing it", name, why)
        return False
