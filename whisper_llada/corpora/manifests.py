"""The manifests stage for any corpus: a LibriSpeech-layout tree, a Kaldi data directory per part
(``kaldi_dir``: files or pipe commands, any rate and channels, ``segments``) or ready lhotse
manifests, as ``data.corpus`` says.

Writes ``{data.raw_manifest_dir}/{data.prefix}_{recordings,supervisions}_{part}.jsonl.gz`` for every
part of the config (and the list of utterances left out beside them); a part whose manifests exist
is skipped, also when its source is no longer at hand.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from whisper_llada.data.dropped import dropped_path, write_dropped
from whisper_llada.data.manifests_io import check_manifest
from whisper_llada.utils.checkpoint_io import atomic_to_file, atomic_write
from whisper_llada.utils.stage_record import StageRecord, record_path_for

log = logging.getLogger(__name__)

KALDI_NEEDS = ("wav.scp", "text", "utt2spk")


def prepare_manifests(data, corpus_dir: str | Path, nj: int = 1, parts=None) -> list[str]:
    """Stage 1 for ``data`` (a recipe's DataConfig): every part of ``parts`` (default: all the
    config's) from ``corpus_dir/{part}`` (librispeech, kaldi) or ``corpus_dir`` (lhotse)."""
    corpus_dir, out_dir = Path(corpus_dir), Path(data.raw_manifest_dir)
    parts = list(parts or data.all_parts)
    todo = []
    for part in parts:
        rec, sup = data.manifest_path("recordings", part), data.manifest_path("supervisions", part)
        source = corpus_dir if data.corpus == "lhotse" else corpus_dir / part
        if rec.is_file() and sup.is_file() and not source.exists():
            log.info("%s already exists - skipping (its source %s is not here to check against)", rec, source)
            continue
        if not source.exists():
            raise FileNotFoundError(
                f"{source}: part {part!r} of the config ({data.corpus} corpus) not found, and no "
                f"manifests {rec} yet; check the corpus directory and data.*_parts"
            )
        todo.append(part)
    if not todo:
        return parts
    out_dir.mkdir(parents=True, exist_ok=True)
    if data.corpus == "librispeech":
        from whisper_llada.corpora.librispeech import prepare_librispeech

        prepare_librispeech(corpus_dir, out_dir, todo, nj, prefix=data.prefix)
    elif data.corpus == "kaldi":
        for part in todo:
            import_kaldi_part(corpus_dir / part, data, part, nj)
    else:
        for part in todo:
            copy_lhotse_part(corpus_dir, data, part)
    return parts


def import_kaldi_part(part_dir: Path, data, part: str, nj: int = 1) -> None:
    """One Kaldi data directory (wav.scp, text, utt2spk, optional segments) as lhotse manifests, each
    recording as its audio says (``kaldi_dir``); recordings that cannot be read are left out and listed."""
    from lhotse import fix_manifests

    from whisper_llada.corpora.kaldi_dir import read_kaldi_dir

    missing = [n for n in KALDI_NEEDS if not (part_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{part_dir}: not a Kaldi data directory with transcripts: {', '.join(missing)} missing"
        )
    rec_path, sup_path = data.manifest_path("recordings", part), data.manifest_path("supervisions", part)
    drop_path = dropped_path(data.raw_manifest_dir, data.prefix, part)
    # importer 2 reads each recording's rate, channels and length from its audio; manifests of
    # importer 1 (every recording at data.sampling_rate) are redone.
    record = StageRecord(
        record_path_for(rec_path),
        [part_dir],
        {"importer": 2},
        [sup_path, rec_path, drop_path],
        verify=check_manifest,
    )
    if record.check(str(rec_path)):
        return
    if data.sampling_rate is not None:
        log.info(
            "data.sampling_rate (%s) is not used: each recording's rate is read from its audio", data.sampling_rate
        )
    recs, sups, dropped = read_kaldi_dir(part_dir, nj)
    if dropped:
        log.warning("%s: %d utterances left out (listed in %s)", part_dir, len(dropped), drop_path)
    no_text = [s.id for s in sups if not (s.text or "").strip()]
    if no_text:
        log.warning("%s: %d utterances without a transcript in text (e.g. %s)", part_dir, len(no_text), no_text[:3])
    recs, sups = fix_manifests(recs, sups)
    for obj, path in ((sups, sup_path), (recs, rec_path)):  # recordings last: they mark the part done
        atomic_to_file(obj, path)
    write_dropped(drop_path, dropped)
    record.done()
    log.info("%s: %d recordings, %d utterances from %s", part, len(recs), len(sups), part_dir)


def copy_lhotse_part(src_dir: Path, data, part: str) -> None:
    """Ready manifests named as the config expects, checked (readable) and copied into place."""
    for kind in ("recordings", "supervisions"):
        dst = data.manifest_path(kind, part)
        src = src_dir / dst.name
        if not src.is_file():
            raise FileNotFoundError(
                f"{src}: lhotse {kind} manifest of part {part!r} not found (expected "
                f"{data.prefix}_{kind}_{part}.jsonl.gz in {src_dir})"
            )
        if src.resolve() == dst.resolve():
            continue
        record = StageRecord(record_path_for(dst), [src], {}, [dst], verify=check_manifest)
        if record.check(str(dst)):
            continue
        check_manifest(src)
        atomic_write(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
        record.done()
