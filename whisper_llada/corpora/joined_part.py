"""Long utterances and long recordings made from a LibriSpeech-layout part: consecutive utterances
joined end to end, so long-form decoding is measured on speech whose short-utterance results are known.

``join_part`` writes a new part in the same layout (one flac and one transcript line per joined
utterance) and ``joined.txt`` beside it: each joined id and the ids it was made from, in order.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def read_part(part_dir: Path) -> list[tuple[str, str, Path]]:
    """(utterance id, text, flac) of a LibriSpeech-layout part, in id order."""
    items = []
    for trans in sorted(Path(part_dir).rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt_id, _, text = line.strip().partition(" ")
            if utt_id:
                items.append((utt_id, text.strip(), trans.parent / f"{utt_id}.flac"))
    if not items:
        raise FileNotFoundError(f"{part_dir}: no *.trans.txt with utterances (not a LibriSpeech-layout part)")
    return sorted(items)


def group_utterances(
    items: list[tuple[str, float]], min_seconds: float, max_seconds: float, across_speakers: bool
) -> list[list[str]]:
    """Consecutive ids grouped into runs of ``min_seconds``..``max_seconds`` (of one speaker unless
    ``across_speakers``). Every id is in a group: a speaker's short rest joins the group before it
    while that stays within ``max_seconds``, else it is a group of its own."""

    def speaker(utt_id: str) -> str:
        return "" if across_speakers else utt_id.split("-")[0]

    groups: list[list[str]] = []
    sizes: list[float] = []
    cur: list[str] = []
    size = 0.0

    def close() -> None:
        nonlocal cur, size
        if not cur:
            return
        same = groups and speaker(groups[-1][0]) == speaker(cur[0])
        if size < min_seconds and same and sizes[-1] + size <= max_seconds:
            groups[-1] += cur
            sizes[-1] += size
        else:
            groups.append(cur)
            sizes.append(size)
        cur, size = [], 0.0

    for utt_id, seconds in items:
        if cur and (speaker(cur[0]) != speaker(utt_id) or size + seconds > max_seconds):
            close()
        cur.append(utt_id)
        size += seconds
        if size >= min_seconds:
            close()
    close()
    return groups


def join_part(
    src_dir: Path,
    dst_dir: Path,
    min_seconds: float,
    max_seconds: float,
    across_speakers: bool = False,
    pause: float = 0.0,
) -> list[tuple[str, list[str], float]]:
    """Writes ``dst_dir`` (LibriSpeech layout) of joined utterances; returns (joined id, source ids,
    seconds) per joined utterance. The joined ids are ``{speaker}-0-{index:04d}`` (speaker ``0``
    for recordings of several). ``pause`` seconds of silence go between two joined utterances."""
    import numpy as np
    import soundfile as sf

    from whisper_llada.utils.checkpoint_io import atomic_write, atomic_write_text

    if pause < 0:
        raise ValueError(f"pause {pause}: expected seconds of silence, 0 or more")
    if min_seconds > max_seconds:
        raise ValueError(f"min_seconds {min_seconds} is more than max_seconds {max_seconds}")
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    items = read_part(src_dir)
    info = {utt_id: sf.info(str(flac)) for utt_id, _, flac in items}
    rates = {i.samplerate for i in info.values()}
    if len(rates) != 1:
        raise ValueError(f"{src_dir}: files at several sampling rates {sorted(rates)}; cannot join them")
    (rate,) = rates
    texts = {utt_id: text for utt_id, text, _ in items}
    flacs = {utt_id: flac for utt_id, _, flac in items}
    # Each utterance is counted with the pause after it, so a joined one stays within max_seconds.
    sizes = [(u, info[u].duration + pause) for u, _, _ in items]
    groups = group_utterances(sizes, min_seconds, max_seconds, across_speakers)
    out, lines_by_dir, index = [], {}, {}
    for group in groups:
        spk = "0" if across_speakers else group[0].split("-")[0]
        k = index[spk] = index.get(spk, -1) + 1
        new_id = f"{spk}-0-{k:04d}"
        chapter = dst_dir / spk / "0"
        chapter.mkdir(parents=True, exist_ok=True)
        gap = np.zeros(int(round(pause * rate)), dtype="float32")
        chunks = []
        for u in group:
            chunks += [sf.read(str(flacs[u]), dtype="float32")[0], gap]
        audio = np.concatenate(chunks[:-1])
        atomic_write(chapter / f"{new_id}.flac", lambda tmp, a=audio: sf.write(tmp, a, rate, format="FLAC"))
        lines_by_dir.setdefault(chapter, []).append(f"{new_id} {' '.join(texts[u] for u in group)}")
        out.append((new_id, group, len(audio) / rate))
    for chapter, lines in lines_by_dir.items():
        spk = chapter.parent.name
        atomic_write_text(chapter / f"{spk}-0.trans.txt", "\n".join(lines) + "\n")
    atomic_write_text(dst_dir / "joined.txt", "".join(f"{i} {' '.join(g)}\n" for i, g, _ in out))
    secs = [s for _, _, s in out]
    log.info(
        "%s: %d utterances of %s joined into %d (%.1f-%.1f s, %d of at least %g s)",
        dst_dir,
        len(items),
        src_dir,
        len(out),
        min(secs),
        max(secs),
        sum(s >= min_seconds for s in secs),
        min_seconds,
    )
    return out
