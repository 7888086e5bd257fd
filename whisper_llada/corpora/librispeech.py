"""lhotse manifests of a LibriSpeech-layout tree, as ``lhotse prepare librispeech`` writes them,
except that an unreadable audio file is reported by name and left out instead of stopping the run.

Writes ``{output_dir}/{prefix}_{recordings,supervisions}_{part}.jsonl.gz`` per part found (prefix librispeech by default).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from whisper_llada.data.dropped import dropped_path, entry, write_dropped
from whisper_llada.data.manifests_io import check_manifest
from whisper_llada.utils.checkpoint_io import atomic_to_file
from whisper_llada.utils.stage_record import StageRecord, record_path_for

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
            rec = Recording.from_file(audio, recording_id=utt_id)
            if rec.duration <= 0:
                raise ValueError("no samples")
            return rec, text
        except Exception as e:
            log.warning("%s: unreadable audio (%s: %s); utterance %s left out", audio, type(e).__name__, e, utt_id)
            dropped.append(entry(utt_id, f"unreadable audio ({type(e).__name__}: {e})", text, audio))
            return None, text

    dropped: list[dict] = []
    with ThreadPoolExecutor(max(1, nj)) as ex:
        loaded = list(ex.map(load, items))
    recs, sups = [], []
    for rec, text in loaded:
        if rec is None:
            continue
        recs.append(rec)
        sups.append(
            SupervisionSegment(
                id=rec.id,
                recording_id=rec.id,
                start=0.0,
                duration=rec.duration,
                channel=0,
                text=text,
                language="English",
                speaker="-".join(rec.id.split("-")[:2]),
            )
        )
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups), dropped


def prepare_librispeech(
    corpus_dir: str | Path,
    output_dir: str | Path,
    parts: Sequence[str] | None = None,
    nj: int = 1,
    prefix: str = "librispeech",
) -> list[str]:
    """Returns the parts written (all standard parts present, or ``parts``); existing ones are skipped."""
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"{corpus_dir}: LibriSpeech directory not found")
    parts = list(parts) if parts else [p for p in PARTS if (corpus_dir / p).is_dir()]
    if not parts:
        raise FileNotFoundError(f"{corpus_dir}: none of the LibriSpeech parts {PARTS} is there")
    output_dir.mkdir(parents=True, exist_ok=True)
    for part in parts:
        rec_path = output_dir / f"{prefix}_recordings_{part}.jsonl.gz"
        sup_path = output_dir / f"{prefix}_supervisions_{part}.jsonl.gz"
        if not (corpus_dir / part).is_dir():
            raise FileNotFoundError(f"{corpus_dir / part}: part not found")
        # Redone when any file of the part changed (a replaced flac, a corrected transcript) or an output is damaged.
        drop_path = dropped_path(output_dir, prefix, part)
        record = StageRecord(
            record_path_for(rec_path), [corpus_dir / part], {}, [sup_path, rec_path, drop_path], verify=check_manifest
        )
        if record.check(str(rec_path)):
            continue
        recs, sups, dropped = _read_part(corpus_dir / part, nj)
        for obj, path in ((sups, sup_path), (recs, rec_path)):  # recordings last: they mark the part done
            atomic_to_file(obj, path)
        write_dropped(drop_path, dropped)
        record.done()
        msg = f"{part}: {len(recs)} recordings"
        (log.warning if dropped else log.info)(
            msg + (f", {len(dropped)} unreadable files left out (listed in {drop_path})" if dropped else "")
        )
    return parts
