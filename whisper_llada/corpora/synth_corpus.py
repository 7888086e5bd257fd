"""Writes spoken sentences as a LibriSpeech-layout tree (flac + trans.txt), so every later
stage runs the same code as on LibriSpeech itself.

``{root}/LibriSpeech/{part}/{speaker}/{chapter}/{speaker}-{chapter}-{utt:04d}.flac``
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whisper_llada.utils.checkpoint_io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice with fixed rate and pitch stands for one speaker."""

    id: int
    voice: str
    rate: int = 170
    pitch: int = 50


def write_part(
    root: str | Path,
    part: str,
    items: Iterable[tuple[Speaker, str]],
    sample_rate: int = 16000,
    utts_per_chapter: int = 50,
) -> int:
    """Synthesise ``(speaker, text)`` pairs into ``root/LibriSpeech/part``; returns the utterance count.

    Files that already exist are kept, so an interrupted run resumes (writing the same audio as
    an uninterrupted run, when the parts are built in the same order in a fresh process).
    """
    import librosa
    import soundfile as sf

    from whisper_llada.corpora.espeak import ESpeak

    engine = ESpeak.get()
    base = Path(root) / "LibriSpeech" / part
    per_speaker: dict[int, int] = {}
    trans: dict[Path, list[str]] = {}
    n = 0

    def save(flac: Path, wav: np.ndarray) -> None:
        wav = librosa.resample(wav, orig_sr=engine.sample_rate, target_sr=sample_rate)
        atomic_write(flac, lambda tmp: sf.write(tmp, np.asarray(wav, dtype=np.float32), sample_rate))

    # espeak-ng speaks in order (its output depends on what it spoke before); the resampling and
    # the durable flac writes run beside it on a second thread, which they release the GIL for.
    # At most 64 utterances wait, so memory stays bounded when the disk is slow.
    pending: deque[Future] = deque()
    writer = ThreadPoolExecutor(max_workers=1)
    try:
        for spk, text in items:
            k = per_speaker.get(spk.id, 0)
            per_speaker[spk.id] = k + 1
            chapter = 1000 + k // utts_per_chapter
            utt_id = f"{spk.id}-{chapter}-{k % utts_per_chapter:04d}"
            d = base / str(spk.id) / str(chapter)
            d.mkdir(parents=True, exist_ok=True)
            flac = d / f"{utt_id}.flac"
            # Spoken even when the file exists: espeak-ng's output depends on what it spoke before,
            # so a resumed build must replay the history to write the files an uninterrupted one would.
            wav = engine.synth(
                text.lower(), voice=spk.voice, rate=spk.rate, pitch=spk.pitch, seed=zlib.crc32(utt_id.encode())
            )
            if not flac.exists():
                pending.append(writer.submit(save, flac, wav))
                while len(pending) > 64 or (pending and pending[0].done()):
                    pending.popleft().result()  # a failed write stops the build here
            trans.setdefault(d / f"{spk.id}-{chapter}.trans.txt", []).append(f"{utt_id} {text}")
            n += 1
        for f in pending:
            f.result()
    except BaseException:
        # A failed write or synthesis: the queued writes are dropped, not waited for (a rerun
        # writes them, each file being atomic).
        writer.shutdown(wait=True, cancel_futures=True)
        raise
    writer.shutdown()
    for path, lines in trans.items():
        atomic_write_text(path, "\n".join(lines) + "\n")
    log.info("wrote %d utterances of %d speakers to %s", n, len(per_speaker), base)
    return n
