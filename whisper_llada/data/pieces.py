"""Test cuts longer than the encoder's window, decoded whole: each is cut into pieces of at most
``data.decode_window`` seconds at its quietest points, every system decodes the pieces as cuts,
and ``join_pieces`` puts their hypotheses back together before a cut is scored.

A piece is named ``{cut id}.piece{k:03d}``; the first piece carries the whole cut's reference and
the others none, so joining a cut's pieces in order gives its reference and its hypothesis.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

FRAME_RATE = 100  # log-mel frames a second (Whisper's 10 ms shift)
PIECE_RE = re.compile(r"^(.*)\.piece(\d{3})$")
# Energy is averaged over this many frames before the quietest point is chosen: a pause between
# words is 0.1-0.5 s, a stop consonant's closure much shorter.
SMOOTH_FRAMES = 15


def piece_id(cut_id: str, k: int) -> str:
    return f"{cut_id}.piece{k:03d}"


def parent_of(cut_id: str) -> str:
    """The cut a piece was cut from (any other id is its own)."""
    m = PIECE_RE.match(cut_id)
    return m.group(1) if m else cut_id


def is_piece(cut_id: str) -> bool:
    return PIECE_RE.match(cut_id) is not None


def frame_energy(cut) -> np.ndarray:
    """Per-frame loudness (100 a second) of a cut: its stored log-mel averaged over the bins, or
    the log energy of its audio in 10 ms frames when it has no features."""
    if cut.has_features:
        return cut.load_features().mean(axis=1)
    audio = cut.load_audio()
    audio = audio.mean(axis=0) if audio.ndim > 1 else audio
    hop = int(round(cut.sampling_rate / FRAME_RATE))
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    return np.log10((frames**2).mean(axis=1) + 1e-10)


def quiet_boundaries(energy: np.ndarray, max_frames: int) -> list[int]:
    """Frame indices [0, b1, ..., len] that cut ``energy`` into pieces of at most ``max_frames``:
    each boundary is the quietest point of the second half of the longest piece it may end."""
    n = len(energy)
    k = min(SMOOTH_FRAMES, max(n, 1))
    smooth = np.convolve(energy, np.ones(k) / k, mode="same") if n else energy
    bounds = [0]
    while n - bounds[-1] > max_frames:
        lo, hi = bounds[-1] + max_frames // 2, bounds[-1] + max_frames
        # argmin of the reversed window: of equally quiet points the latest, the longest piece
        b = hi - int(np.argmin(smooth[lo : hi + 1][::-1]))
        bounds.append(b)
    bounds.append(n)
    return bounds


def split_into_pieces(cut, window_seconds: float) -> list:
    """``cut`` itself when it fits ``window_seconds``, else its pieces, each at most that long."""
    from lhotse.utils import fastcopy

    # Two frames of margin: lhotse may count a truncated cut's frames one over its duration.
    max_frames = int(window_seconds * FRAME_RATE) - 2
    if cut.duration * FRAME_RATE <= max_frames:
        return [cut]
    try:
        energy = frame_energy(cut)
    except Exception as e:  # its input cannot be read: decoding names it and scores it as all deleted
        log.warning("cut %s: cannot read its input to cut it into pieces (%s: %s)", cut.id, type(e).__name__, e)
        return [cut]
    bounds = quiet_boundaries(energy, max_frames)
    text_sups = cut.supervisions[:1]
    pieces = []
    for k, (b0, b1) in enumerate(zip(bounds[:-1], bounds[1:])):
        piece = cut.truncate(offset=b0 / FRAME_RATE, duration=(b1 - b0) / FRAME_RATE, preserve_id=True)
        # The first piece carries the cut's whole reference, the others none: joined in order they
        # give the cut's reference (word times are not known, so a piece's own words are not).
        sups = [fastcopy(s, start=0.0, duration=piece.duration) for s in text_sups] if k == 0 else []
        pieces.append(fastcopy(piece, id=piece_id(cut.id, k), supervisions=sups))
    return pieces


def split_long_cuts(cuts, window_seconds: float, where: str = ""):
    """A CutSet in which every cut longer than ``window_seconds`` is replaced by its pieces."""
    from lhotse import CutSet

    out, long_cuts, num_pieces = [], 0, 0
    for cut in cuts:
        parts = split_into_pieces(cut, window_seconds)
        if len(parts) > 1:
            long_cuts += 1
            num_pieces += len(parts)
        out.extend(parts)
    if long_cuts:
        log.info(
            "%s: %d cuts longer than %g s decoded as %d pieces cut at their quietest points, joined before scoring",
            where,
            long_cuts,
            window_seconds,
            num_pieces,
        )
    return CutSet.from_cuts(out)


def join_pieces(results: Sequence[tuple], left_out: Sequence[tuple] = ()) -> tuple[list, list]:
    """(results, left_out) with each cut's pieces joined in order into one row of the cut's id:
    references and hypotheses concatenated; a piece left out makes its cut listed as left out
    (its other pieces' words still count)."""
    joined: dict[str, list] = {}
    order: list[str] = []
    for cut_id, ref, hyp in results:
        m = PIECE_RE.match(cut_id)
        if m is None:
            joined[cut_id] = [(0, ref, hyp)]
            order.append(cut_id)
            continue
        parent = m.group(1)
        if parent not in joined:
            joined[parent] = []
            order.append(parent)
        joined[parent].append((int(m.group(2)), ref, hyp))
    rows = []
    for cut_id in order:
        parts = sorted(joined[cut_id], key=lambda p: p[0])
        rows.append((cut_id, [w for p in parts for w in p[1]], [w for p in parts for w in p[2]]))
    out_left, seen = [], set()
    for cut_id, why in left_out:
        parent = parent_of(cut_id)
        if parent in seen:
            continue
        seen.add(parent)
        out_left.append((parent, why if parent == cut_id else f"a piece ({cut_id}): {why}"))
    return rows, out_left


def check_window(window_seconds: float, decode_window: float, who: str) -> None:
    """Raise when a model's encoder window is shorter than the pieces it will be given."""
    if window_seconds + 1e-6 < decode_window:
        raise ValueError(
            f"{who} reads at most {window_seconds:g} s, but data.decode_window is {decode_window:g} s: "
            f"set data.decode_window to {window_seconds:g} (or less) in the recipe's config"
        )
