"""A Kaldi data directory as lhotse recordings and supervisions, each recording's rate, channels and
length read from its audio: a file, or the output of a ``wav.scp`` pipe command (run here once, and
again by lhotse whenever the audio is loaded).

Reads wav.scp, utt2spk, text and, where present, segments, reco2file_and_channel, reco2dur,
spk2gender and utt2lang. A recording that cannot be read is left out with its utterances and reasons.
"""

from __future__ import annotations

import logging
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

from whisper_llada.data.dropped import entry

log = logging.getLogger(__name__)

MAX_OVERSHOOT = 0.5  # seconds a segment may end after its recording and be cut (Kaldi's extract-segments)
DURATION_SLACK = 0.1  # seconds reco2dur may differ from the audio without a warning


def read_table(path: Path, must_exist: bool = True, allow_empty: bool = False) -> dict[str, str]:
    """``key value...`` lines of a Kaldi table as {key: value}; a key listed twice is an error."""
    if not path.is_file():
        if must_exist:
            raise FileNotFoundError(f"{path}: not found")
        return {}
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        value = value.strip()
        if not value and not allow_empty:
            raise ValueError(f"{path}:{n}: {key!r} has no value")
        if key in out:
            raise ValueError(f"{path}:{n}: {key!r} is listed twice")
        out[key] = value
    return out


def _fields(path: Path, n_fields: int) -> dict[str, list[str]]:
    """A table whose values are ``n_fields`` words (segments, reco2file_and_channel)."""
    out = {}
    for key, value in read_table(path, must_exist=False).items():
        words = value.split()
        if len(words) != n_fields:
            raise ValueError(f"{path}: {key!r}: expected {n_fields} fields after the id, got {value!r}")
        out[key] = words
    return out


def channel_index(path: Path, reco: str, name: str) -> int:
    """Kaldi's channel names (A, B, ... or 1, 2, ...) as lhotse's channel numbers from 0."""
    if len(name) == 1 and name.upper() in "ABCDEFGH":
        return "ABCDEFGH".index(name.upper())
    if name.isdigit() and int(name) >= 1:
        return int(name) - 1
    raise ValueError(f"{path}: {reco!r}: channel {name!r} is neither a letter (A, B) nor a number from 1")


def probe(rid: str, src: str):
    """The Recording of one ``wav.scp`` entry: a path, or a command ending in ``|`` whose output is read."""
    from lhotse import AudioSource, Recording
    from lhotse.audio.backend import info

    if not src.endswith("|"):
        if not Path(src).is_file():
            raise FileNotFoundError("file not found")
        return Recording.from_file(src, recording_id=rid)
    cmd = src[:-1].strip()
    # stdin closed: a command that waits for input ends instead of hanging the import.
    p = subprocess.run(cmd, shell=True, stdin=subprocess.DEVNULL, capture_output=True)
    said = p.stderr.decode(errors="replace").strip().splitlines()
    if p.returncode:
        raise RuntimeError(f"command failed (exit status {p.returncode}{': ' + said[-1] if said else ''})")
    try:
        i = info(BytesIO(p.stdout))
    except Exception as e:  # lhotse's message names the in-memory buffer; its details name the problem
        raise ValueError(
            f"the command's {len(p.stdout)} bytes of output are not audio ({str(e).split('Details: ')[-1]})"
        ) from None
    return Recording(
        id=rid,
        sources=[AudioSource(type="command", channels=list(range(i.channels)), source=cmd)],
        sampling_rate=i.samplerate,
        num_samples=i.frames,
        duration=i.frames / i.samplerate,
    )


def _probe_all(sources: dict[str, str], nj: int, desc: str) -> dict[str, object]:
    """{wav.scp key: Recording, or the reason it cannot be read}, read by ``nj`` threads (commands
    and file headers wait on other processes and the disk, not on Python)."""
    from tqdm import tqdm

    def one(item):
        rid, src = item
        try:
            rec = probe(rid, src)
            return rec if rec.num_samples > 0 else "no samples"
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max(1, nj)) as ex:
        got = list(tqdm(ex.map(one, sources.items()), total=len(sources), desc=desc, leave=False))
    return dict(zip(sources, got))


def read_kaldi_dir(part_dir: Path, nj: int = 1):
    """(RecordingSet, SupervisionSet, left-out entries) of the data directory ``part_dir``.

    Recordings are those the utterances use: ``segments`` names them (a segment ending at -1 runs to
    the recording's end), else each utterance of ``utt2spk`` is a whole recording. A recording id
    missing from ``wav.scp`` is read from the file ``reco2file_and_channel`` gives it, and its
    utterances lie on that file's channel; utterances of a multi-channel recording without one are
    on all channels (the features stage reads one of them). ``reco2dur`` is only compared with the
    audio: the audio's length is used.
    """
    from lhotse import RecordingSet, SupervisionSet

    wav = read_table(part_dir / "wav.scp")
    speakers = read_table(part_dir / "utt2spk")
    r2fc_path = part_dir / "reco2file_and_channel"
    r2fc = {r: (f, channel_index(r2fc_path, r, c)) for r, (f, c) in _fields(r2fc_path, 2).items()}
    seg_path = part_dir / "segments"
    utts = _fields(seg_path, 3) if seg_path.is_file() else {u: [u, "0", "-1"] for u in speakers}
    if not utts:
        raise ValueError(f"{seg_path if seg_path.is_file() else part_dir / 'utt2spk'}: no utterances")
    # The wav.scp entry of each recording: its own, or its file's (reco2file_and_channel).
    keys = {r: r if r in wav else r2fc.get(r, (None,))[0] for r, *_ in utts.values()}
    keys = {r: k if k in wav else None for r, k in keys.items()}
    probed = _probe_all({k: wav[k] for k in dict.fromkeys(keys.values()) if k}, nj, f"{part_dir.name}: reading audio")
    recordings, why_not = {}, {}
    for reco, key in keys.items():
        got = probed[key] if key else "in neither wav.scp nor reco2file_and_channel"
        if not isinstance(got, str):
            got = _on_channel(got, reco, r2fc.get(reco, (None, None))[1])
        if isinstance(got, str):
            why_not[reco] = got
            log.warning("%s: recording %s (%s): %s; its utterances are left out", part_dir, reco, wav.get(key), got)
        else:
            recordings[reco] = got
    if not recordings:
        reco, why = next(iter(why_not.items()))
        raise RuntimeError(f"{part_dir}: none of its {len(why_not)} recordings can be read (e.g. {reco}: {why})")
    sups, dropped = _supervisions(
        part_dir, utts, speakers, recordings, why_not, {r: wav.get(k) for r, k in keys.items()}
    )
    _summary(part_dir, [rec for rec, _ in recordings.values()])
    used = {s.recording_id for s in sups}
    recs = RecordingSet.from_recordings(rec for r, (rec, _) in recordings.items() if r in used)
    return recs, SupervisionSet.from_segments(sups), dropped


def _on_channel(rec, reco: str, channel):
    """(the Recording named ``reco``, the channel(s) of its utterances), or why it cannot be used."""
    from lhotse.utils import fastcopy

    rec = fastcopy(rec, id=reco)
    if rec.num_channels == 1:  # the usual case of a command that picks the channel (sph2pipe -c 2)
        return rec, 0
    if channel is None:
        return rec, list(range(rec.num_channels))
    if channel >= rec.num_channels:
        return f"reco2file_and_channel names channel {channel + 1} of a file with {rec.num_channels}"
    return rec, channel


def _supervisions(part_dir: Path, utts: dict, speakers: dict, recordings: dict, why_not: dict, sources: dict):
    """(supervisions, left-out entries) of the utterances ``utts`` ({utt: [reco, start, end]})."""
    from lhotse import SupervisionSegment
    from lhotse.utils import add_durations

    texts = read_table(part_dir / "text", allow_empty=True)
    genders = read_table(part_dir / "spk2gender", must_exist=False)
    languages = read_table(part_dir / "utt2lang", must_exist=False)
    sups, dropped, bad, cut_at_end = [], [], [], []
    for u, (reco, s, e) in utts.items():
        text, src = texts.get(u, ""), sources[reco]
        if reco in why_not:
            dropped.append(entry(u, f"unreadable audio ({why_not[reco]})", text, src))
            continue
        rec, channel = recordings[reco]
        try:
            start, end = float(s), rec.duration if e == "-1" else float(e)
        except ValueError:
            raise ValueError(f"{part_dir / 'segments'}: {u!r}: start {s!r} or end {e!r} is not a number") from None
        if rec.duration < end <= rec.duration + MAX_OVERSHOOT:
            cut_at_end.append(u)
            end = rec.duration
        if end > rec.duration or end <= start:
            bad.append(entry(u, f"segment {start} to {end} s of a {rec.duration:.3f} s recording", text, src))
            continue
        spk = speakers.get(u)
        sups.append(
            SupervisionSegment(
                id=u,
                recording_id=reco,
                start=start,
                duration=add_durations(end, -start, sampling_rate=rec.sampling_rate),
                channel=channel,
                text=text,
                speaker=spk,
                gender=genders.get(spk) if spk else None,
                language=languages.get(u),
            )
        )
    if cut_at_end:
        log.warning(
            "%s: %d segments end up to %.1f s after their recording: cut at its end (e.g. %s)",
            part_dir / "segments",
            len(cut_at_end),
            MAX_OVERSHOOT,
            cut_at_end[0],
        )
    if bad:
        log.warning(
            "%s: %d segments left out (e.g. %s: %s)", part_dir / "segments", len(bad), bad[0]["id"], bad[0]["reason"]
        )
    return sups, dropped + bad


def _summary(part_dir: Path, recs: list) -> None:
    """Once per part: the rates, channels and commands found; recordings whose reco2dur is off."""
    rates = Counter(r.sampling_rate for r in recs)
    multi = sum(r.num_channels > 1 for r in recs)
    commands = sum(r.sources[0].type == "command" for r in recs)
    log.info(
        "%s: %d recordings (%s%s%s)",
        part_dir,
        len(recs),
        ", ".join(f"{n} at {rate} Hz" for rate, n in sorted(rates.items())),
        f"; {multi} with several channels" if multi else "",
        f"; {commands} read by a wav.scp command" if commands else "",
    )
    durations = {r: float(v) for r, v in read_table(part_dir / "reco2dur", must_exist=False).items()}
    off = [r for r in recs if r.id in durations and abs(durations[r.id] - r.duration) > DURATION_SLACK]
    if off:
        log.warning(
            "%s: %d recordings are not as long as reco2dur says (e.g. %s: %.3f s, its audio %.3f s); "
            "the audio's length is used (is reco2dur out of date?)",
            part_dir,
            len(off),
            off[0].id,
            durations[off[0].id],
            off[0].duration,
        )
