"""Long cuts decoded in pieces: boundaries at the quietest points, pieces within the window, the
pieces' rows joined into the cut's."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_llada.data.pieces import (
    check_window,
    is_piece,
    join_pieces,
    parent_of,
    piece_id,
    quiet_boundaries,
    split_long_cuts,
)


def test_boundaries_fall_in_the_pauses():
    # 100 frames a second: speech (loud) 6 s, pause 0.4 s, speech 5 s, pause 0.4 s, speech 7 s
    spans = [(600, 5.0), (40, -3.0), (500, 5.0), (40, -3.0), (700, 5.0)]
    energy = np.concatenate([np.full(n, v) for n, v in spans]) + np.random.default_rng(0).normal(0, 0.3, 1880)
    bounds = quiet_boundaries(energy, max_frames=1000)
    assert bounds[0] == 0 and bounds[-1] == len(energy)
    assert all(b - a <= 1000 for a, b in zip(bounds[:-1], bounds[1:]))
    pauses = [(600, 640), (1140, 1180)]
    assert len(bounds) == 4
    for b in bounds[1:-1]:
        assert any(lo <= b <= hi for lo, hi in pauses), bounds


def test_no_pause_still_gives_pieces_within_the_window():
    bounds = quiet_boundaries(np.zeros(5000), max_frames=998)
    assert all(0 < b - a <= 998 for a, b in zip(bounds[:-1], bounds[1:]))
    assert bounds[-1] == 5000


def test_join_pieces_restores_the_cut_and_its_left_out_pieces():
    a, b = "spk-rec-0001", "spk-rec-0002"
    rows = [
        (piece_id(a, 1), [], ["c", "d"]),
        (b, ["x"], ["x"]),
        (piece_id(a, 0), ["a", "b", "c", "d"], ["a", "b"]),
        (piece_id(a, 2), [], []),
    ]
    joined, left = join_pieces(rows, [(piece_id(a, 2), "cannot load its features")])
    assert dict((c, (r, h)) for c, r, h in joined) == {
        a: (["a", "b", "c", "d"], ["a", "b", "c", "d"]),
        b: (["x"], ["x"]),
    }
    assert left == [(a, f"a piece ({piece_id(a, 2)}): cannot load its features")]
    assert parent_of(piece_id(a, 7)) == a and parent_of(b) == b and is_piece(piece_id(a, 0)) and not is_piece(b)


def test_a_model_with_a_shorter_window_is_refused():
    check_window(30.0, 30.0, "whisper")
    with pytest.raises(ValueError, match="data.decode_window"):
        check_window(10.0, 30.0, "the Whisper first pass")


def test_split_long_cuts_on_real_audio(tmp_path):
    """A 23-s recording of three tones with pauses, window 10 s: pieces cut in the pauses, each at
    most 10 s, together the whole recording; the first carries the reference, a short cut is kept."""
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment

    rate = 16000
    t = np.arange(int(7 * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    gap = np.zeros(int(0.5 * rate), np.float32)
    audio = np.concatenate([tone, gap, tone, gap, tone[: 8 * rate // 2], tone[: 8 * rate // 2 // 2]])
    sf.write(tmp_path / "long.wav", audio, rate)
    sf.write(tmp_path / "short.wav", tone[: 2 * rate], rate)
    cuts = []
    for name in ("long", "short"):
        rec = Recording.from_file(tmp_path / f"{name}.wav", recording_id=name)
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(f"{name}-u", name, 0.0, rec.duration, text=f"{name} words")]
        cuts.append(cut)
    out = split_long_cuts(CutSet.from_cuts(cuts), 10.0, "test")
    ids = [c.id for c in out]
    assert "short" in ids and not any(is_piece(i) and parent_of(i) == "short" for i in ids)
    pieces = [c for c in out if is_piece(c.id)]
    assert len(pieces) >= 3 and all(c.duration <= 10.0 for c in pieces)
    assert sum(c.duration for c in pieces) == pytest.approx(cuts[0].duration, abs=0.02)
    ends = np.cumsum([c.duration for c in pieces])[:-1]
    for end in ends[:2]:  # the first two boundaries are in the two pauses (7.0-7.5 s, 14.5-15.0 s)
        assert any(lo <= end <= hi for lo, hi in [(7.0, 7.5), (14.5, 15.0)]), ends
    assert pieces[0].supervisions[0].text == "long words" and not pieces[1].supervisions
    loaded = pieces[1].load_audio()
    assert loaded.shape[-1] == pytest.approx(pieces[1].duration * rate, abs=2)
