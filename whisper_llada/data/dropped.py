"""Utterances left out of a corpus part and why: one JSON line each (id, reason, text, file),
written beside the manifests by the stage that left them out, so that every WER can count them.

A test utterance that cannot be decoded is scored as all deleted and listed in the errs file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from whisper_llada.utils.checkpoint_io import atomic_write_text


def dropped_path(manifest_dir: str | Path, prefix: str, part: str) -> Path:
    """Utterances of ``part`` that the manifests or features stage could not use."""
    return Path(manifest_dir) / f"{prefix}_dropped_{part}.jsonl"


def filtered_path(manifest_dir: str | Path, prefix: str, where: str) -> Path:
    """Cuts that training filtered out of its ``where`` set (train or dev), e.g. for length."""
    return Path(manifest_dir) / f"{prefix}_filtered_{where}.jsonl"


def one_line(reason: str, limit: int = 300) -> str:
    """A reason on one line (library errors span several), cut to ``limit`` characters."""
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def entry(cut_id: str, reason: str, text: str = "", file: str | None = None) -> dict:
    return {"id": cut_id, "reason": one_line(reason), "text": text, **({"file": str(file)} if file else {})}


def write_dropped(path: str | Path, entries: Iterable[dict]) -> Path:
    """Written even when empty: its presence says the stage looked and found nothing to leave out."""
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in sorted(entries, key=lambda e: e["id"]))
    return atomic_write_text(path, lines)


def read_dropped(path: str | Path) -> list[dict]:
    """The entries of ``path`` ([] when it does not exist: nothing was left out, or an older stage)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            e = json.loads(line)
            e["id"], e["reason"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path}:{n}: not a left-out utterance record ({err}); delete the file and rerun "
                "the stage that wrote it (manifests or features)"
            ) from None
        out.append(e)
    return out


def all_deleted(entries: Iterable[dict], normalize: Callable[[str], str]) -> tuple[list, list]:
    """(result rows with empty hypotheses, (id, reason) pairs) for utterances that were not decoded."""
    rows, left = [], []
    for e in entries:
        rows.append((e["id"], normalize(e.get("text") or "").split(), []))
        where = f" ({e['file']})" if e.get("file") else ""
        left.append((e["id"], e["reason"] + where))
    return rows, left
