"""lhotse manifests of a LibriSpeech-layout tree, as ``lhotse prepare librispeech`` writes them,
except that an unreadable audio file is reported by name and left out instead of stopping the run.

Writes ``{output_dir}/librispeech_{recordings,supervisions}_{part}.jsonl.gz`` per part found.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from whisper_llada.utils.checkpoint_io import atomic_to_file

log = logging.getLogger(__name__)

PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500")


def _read_part(part_dir: Path, nj: int):
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    items = []
    for trans in sorted(part_dir.rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt_id, _, text = line.strip().partition(" ")
            if utt_id:
                items.append((utt_id, text, trans.parent / f"{utt_id}.flac"))

    def load(item):
        utt_id, text, audio = item
        try:
            return Recording.from_file(audio, recording_id=utt_id), text
        except Exception as e:
            log.warning("%s: unreadable audio (%s); utterance %s left out", audio, type(e).__name__, utt_id)
            return None, text

    with ThreadPoolExecutor(max(1, nj)) as ex:
        loaded = list(ex.map(load, items))
    recs, sups = [], []
    for rec, text in loaded:
        if rec is None:
            continue
        recs.append(rec)
        sups.append(SupervisionSegment(id=rec.id, recording_id=rec.id, start=0.0, duration=rec.duration, channel=0,
                                       text=text, language="English", speaker="-".join(rec.id.split("-")[:2])))
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups), len(items) - len(recs)


def prepare_librispeech(corpus_dir: str | Path, output_dir: str | Path, parts: Optional[Sequence[str]] = None,
                        nj: int = 1) -> list[str]:
    """Returns the parts written (all standard parts present, or ``parts``); existing ones are skipped."""
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"{corpus_dir}: LibriSpeech directory not found")
    parts = list(parts) if parts else [p for p in PARTS if (corpus_dir / p).is_dir()]
    if not parts:
        raise FileNotFoundError(f"{corpus_dir}: none of the LibriSpeech parts {PARTS} is there")
    output_dir.mkdir(parents=True, exist_ok=True)
    for part in parts:
        rec_path = output_dir / f"librispeech_recordings_{part}.jsonl.gz"
        sup_path = output_dir / f"librispeech_supervisions_{part}.jsonl.gz"
        if rec_path.is_file() and sup_path.is_file():
            log.info("%s already exists - skipping", rec_path)
            continue
        if not (corpus_dir / part).is_dir():
            raise FileNotFoundError(f"{corpus_dir / part}: part not found")
        recs, sups, bad = _read_part(corpus_dir / part, nj)
        for obj, path in ((sups, sup_path), (recs, rec_path)):  # recordings last: they mark the part done
            atomic_to_file(obj, path)
        msg = f"{part}: {len(recs)} recordings"
        (log.warning if bad else log.info)(msg + (f", {bad} unreadable files left out" if bad else ""))
    return parts
