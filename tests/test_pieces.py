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


def test_group_utterances_keeps_every_id_within_bounds():
    from whisper_llada.corpora.joined_part import group_utterances

    items = (
        [(f"1-0-{i:04d}", 12.0) for i in range(7)] + [(f"2-0-{i:04d}", 20.0) for i in range(2)] + [("3-0-0000", 5.0)]
    )
    groups = group_utterances(items, 31.0, 70.0, across_speakers=False)
    assert [g for grp in groups for g in grp] == [i for i, _ in items]  # all, in order
    size = dict(items)
    assert all(len({g.split("-")[0] for g in grp}) == 1 for grp in groups)
    # speaker 1: 36 s, then 48 s (its 12-s rest joined the group before); speaker 2: 40 s; speaker 3: 5 s alone
    assert [sum(size[g] for g in grp) for grp in groups] == [36.0, 48.0, 40.0, 5.0]
    across = group_utterances(items, 50.0, 60.0, across_speakers=True)
    assert [sum(size[g] for g in grp) for grp in across] == [60.0, 44.0, 25.0]
    assert sum(group_utterances(items, 100.0, 130.0, across_speakers=True), []) == [i for i, _ in items]


def test_join_part_writes_a_librispeech_part(tmp_path):
    import soundfile as sf

    from whisper_llada.corpora.joined_part import join_part, read_part

    rate = 16000
    for spk, n in (("7", 3), ("8", 2)):
        d = tmp_path / "src" / spk / "1"
        d.mkdir(parents=True)
        lines = []
        for i in range(n):
            uid = f"{spk}-1-{i:04d}"
            sf.write(d / f"{uid}.flac", np.full(int(rate * (1 + i)), 0.1 * (i + 1), np.float32), rate)
            lines.append(f"{uid} WORD{spk}{i} MORE")
        (d / f"{spk}-1.trans.txt").write_text("\n".join(lines) + "\n")
    out = join_part(tmp_path / "src", tmp_path / "dst", 5.5, 10.0)
    assert [(i, g) for i, g, _ in out] == [
        ("7-0-0000", ["7-1-0000", "7-1-0001", "7-1-0002"]),
        ("8-0-0000", ["8-1-0000", "8-1-0001"]),
    ]
    joined = read_part(tmp_path / "dst")
    assert joined[0][1] == "WORD70 MORE WORD71 MORE WORD72 MORE"
    audio, sr = sf.read(joined[0][2], dtype="float32")
    assert sr == rate and len(audio) == 6 * rate and audio[rate] == pytest.approx(0.2, abs=1e-3)
    assert (tmp_path / "dst/joined.txt").read_text().splitlines()[1] == "8-0-0000 8-1-0000 8-1-0001"
    # With pauses: half a second of silence between two utterances, counted toward max_seconds.
    out = join_part(tmp_path / "src", tmp_path / "gaps", 5.5, 7.0, pause=0.5)
    assert [g for _, g, _ in out][:2] == [["7-1-0000", "7-1-0001"], ["7-1-0002"]]
    audio, _ = sf.read(read_part(tmp_path / "gaps")[0][2], dtype="float32")
    assert len(audio) == int(3.5 * rate)
    assert np.all(audio[rate : rate + rate // 2] == 0) and audio[rate + rate // 2] == pytest.approx(0.2, abs=1e-3)
    with pytest.raises(ValueError, match="pause -1"):
        join_part(tmp_path / "src", tmp_path / "bad", 5.5, 7.0, pause=-1)


def test_hypotheses_that_fill_a_fixed_canvas_are_counted(tokenizer):
    from types import SimpleNamespace

    from whisper_llada.decoding.settings import DecodeConfig
    from whisper_llada.inference import canvas_filled

    model = SimpleNamespace(tokenizer=tokenizer)
    short, long = "THE CAT", " ".join(["RIVER STONE"] * 10)
    setting = DecodeConfig(mode="decoding", gen_len=8, steps=8, block_length=8)
    assert len(tokenizer.encode(short)) < 8 <= len(tokenizer.encode(long))
    assert canvas_filled(model, setting, [short, long, ""]) == 1
    delib = DecodeConfig(mode="diffusion_deliberation", gen_len=8, steps=8)
    assert canvas_filled(model, delib, [long]) == 0
