"""Whisper log-mel features for a corpus part with lhotse's ``WhisperFbank``, stored with lilcom,
or (``on_the_fly``) the part's cuts alone, whose features the data loader computes from the audio.

The part is split into ``nj`` jobs; each writes its cuts atomically, so an interrupted run
redoes only unfinished jobs. An unreadable recording is reported by cut id and skipped.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from whisper_llada.data.dropped import dropped_path, entry, read_dropped, write_dropped
from whisper_llada.data.manifests_io import check_manifest, read_manifest
from whisper_llada.utils.checkpoint_io import atomic_to_file
from whisper_llada.utils.stage_record import StageRecord, record_path_for

log = logging.getLogger(__name__)


def audio_file(cut) -> str:
    """The audio file a cut is read from, for messages (the cut id alone does not find it)."""
    try:
        src = cut.recording.sources[0]
    except (AttributeError, IndexError):
        return f"(no recording) cut {cut.id}"
    return f"{src.source} |" if src.type == "command" else str(src.source)  # as wav.scp writes a command


def _one_channel(cut, channel: int):
    """A multi-channel cut as the mono cut of ``channel``, keeping its id and supervisions."""
    from lhotse.utils import fastcopy

    if cut.num_channels == 1:
        return cut
    if channel not in cut.channel:
        raise ValueError(f"has channels {cut.channel}, not the configured channel {channel}")
    mono = next(c for c in cut.to_mono(mono_downmix=False) if c.channel == channel)
    return fastcopy(mono, id=cut.id, supervisions=[fastcopy(s, channel=channel) for s in cut.supervisions])


def whisper_fbank(num_mel_bins: int):
    """The one feature extractor of the recipes, for the features stage and the data loader alike."""
    from lhotse.features.whisper_fbank import WhisperFbank, WhisperFbankConfig

    return WhisperFbank(WhisperFbankConfig(num_filters=num_mel_bins))


def _as_whisper_reads(cuts, channel: int, work, what: str, desc: str) -> dict:
    """``work(cut)`` of each cut made mono (``channel``) and 16 kHz (resampled as its audio is read),
    as Whisper reads it; a cut that fails is named and skipped. Returns the results, the failures and
    the conversions done ({rate: [n, an example file]}, {channel read: [n multi-channel, example]}), which the caller
    reports once per part."""
    from tqdm import tqdm

    from whisper_llada.data.dataset import cut_text

    done, failed, resampled, multi = [], [], {}, {}
    for cut in tqdm(cuts, desc=desc, leave=False):
        try:
            # A cut of one channel of a multi-channel file (its supervision's channel, made so by
            # one_cut_per_segment) is counted like one this function reads a channel of.
            several = cut.has_recording and cut.recording.num_channels > 1
            if cut.num_channels > 1:
                cut = _one_channel(cut, channel)
            if several:
                m = multi.setdefault(int(cut.channel), [0, audio_file(cut)])
                m[0] += 1
            if cut.sampling_rate != 16000:
                r = resampled.setdefault(cut.sampling_rate, [0, audio_file(cut)])
                r[0] += 1
                cut = cut.resample(16000)
            done.append(work(cut))
        except Exception as e:  # corrupt or missing audio: name it and go on
            why = f"cannot {what} ({type(e).__name__}: {e})"
            failed.append(entry(cut.id, why, cut_text(cut), audio_file(cut)))
            log.warning("%s: cut %s: %s; skipped", audio_file(cut), cut.id, why)
    return {"done": done, "failed": failed, "resampled": resampled, "multi": multi}


def _job(args: tuple) -> dict:
    cuts_in, storage, out_path, num_mel_bins, channel, threads = args
    import torch
    from lhotse import CutSet
    from lhotse.caching import AudioCache
    from lhotse.features.io import LilcomChunkyWriter

    if threads:
        # One thread per parallel job: nj jobs of all-core torch fight over the cores (the
        # embedded corpus's 3000 cuts took 30 s with 2 jobs of 2 threads).
        torch.set_num_threads(threads)
    extractor = whisper_fbank(num_mel_bins)
    # A wav.scp command is rerun for every segment of its recording; lhotse keeps the last outputs
    # (at most 100, 500 MB) when asked, and a job's cuts of one recording come one after another.
    AudioCache.enable()
    try:
        with LilcomChunkyWriter(storage) as writer:
            out = _as_whisper_reads(
                CutSet.from_file(cuts_in),
                channel,
                lambda cut: cut.compute_and_store_features(extractor, writer),
                "compute features",
                Path(out_path).name,
            )
    finally:
        AudioCache.enable(False)  # and emptied
    atomic_to_file(CutSet.from_cuts(out["done"]), out_path)
    Path(cuts_in).unlink(missing_ok=True)
    return {**out, "done": len(out["done"])}


def compute_whisper_fbank(
    recordings: Path,
    supervisions: Path,
    out_cuts: Path,
    storage_dir: Path,
    num_mel_bins: int,
    nj: int = 1,
    channel: int = 0,
    on_the_fly: bool = False,
) -> None:
    """``channel``: the one read from a multi-channel recording. ``on_the_fly``: write the cuts
    without features (nothing under ``storage_dir``); the data loader computes them from the audio.

    Cuts left out here, and those the manifests stage left out, go to ``{prefix}_dropped_{part}.jsonl``
    beside ``out_cuts``. A rerun redoes the part when its manifests or options changed or an output is
    damaged; a job's cuts are reused only when made from the same manifests and options.
    """
    from lhotse import CutSet
    from lhotse.utils import fastcopy

    for p in (recordings, supervisions):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: manifest not found (run the manifests stage)")
    prefix, _, part = out_cuts.name[: -len(".jsonl.gz")].partition("_cuts_")
    earlier_path = dropped_path(recordings.parent, prefix, part)
    drop_path = dropped_path(out_cuts.parent, prefix, part)
    inputs = [recordings, supervisions] + ([earlier_path] if earlier_path.is_file() else [])
    options = {"num_mel_bins": num_mel_bins, "channel": channel}
    if on_the_fly:  # named only when on, so that the records of stored parts stay valid
        options["features"] = "on_the_fly"
    # The storage directory is an output too: features deleted by hand make the part stale.
    outputs = [out_cuts, drop_path] + ([] if on_the_fly else [storage_dir])
    record = StageRecord(record_path_for(out_cuts), inputs, options, outputs, verify=check_manifest)
    if record.check(str(out_cuts)):
        return
    cuts = CutSet.from_manifests(
        recordings=read_manifest(recordings, "manifests"), supervisions=read_manifest(supervisions, "manifests")
    )
    cuts = one_cut_per_segment(cuts)
    # A cut is named by its utterance: lhotse's "{recording}-{index}" renames every later cut when one
    # recording is left out, and the lists of left-out utterances would not match the cut ids.
    cuts = CutSet.from_cuts(fastcopy(c, id=c.supervisions[0].id) if len(c.supervisions) == 1 else c for c in cuts)
    if on_the_fly:
        # Nothing is read: unreadable audio is met (named and skipped) by the data loader instead.
        outs = [_as_whisper_reads(cuts, channel, lambda cut: cut, "use its audio", out_cuts.name)]
        merged, failed = CutSet.from_cuts(outs[0]["done"]), outs[0]["failed"]
        if storage_dir.is_dir():
            log.warning("%s: stored features this part no longer reads; delete it to free the disk", storage_dir)
    else:
        merged, failed, outs = _stored_features(cuts, storage_dir, inputs, options, num_mel_bins, nj, channel)
    _say_audio_conversions(part, outs)
    atomic_to_file(merged, out_cuts)
    write_dropped(drop_path, read_dropped(earlier_path) + failed)
    record.done()
    msg = f"{out_cuts}: {len(merged)} cuts " + ("(features computed on the fly)" if on_the_fly else "with features")
    if failed:
        log.warning("%s; %d cuts skipped (unreadable audio, see above; listed in %s)", msg, len(failed), drop_path)
    else:
        log.info(msg)


def _stored_features(cuts, storage_dir: Path, inputs, options: dict, num_mel_bins: int, nj: int, channel: int):
    """The cuts with features stored under ``storage_dir`` by ``nj`` jobs, the failures, each job's report."""
    from lhotse import CutSet

    storage_dir.mkdir(parents=True, exist_ok=True)
    splits = cuts.split(nj) if nj > 1 and len(cuts) >= nj else [cuts]
    jobs, job_records = [], []
    for j, split in enumerate(splits):
        out = storage_dir / f"cuts.{j}.jsonl.gz"
        # A job's cuts from an earlier, interrupted run are reused only if made from these manifests.
        job_rec = StageRecord(
            record_path_for(out),
            inputs,
            {**options, "job": j, "nj": len(splits)},
            [out, storage_dir / f"feats-{j}.failed.jsonl"],
            verify=check_manifest,
        )
        job_records.append(job_rec)
        if job_rec.check(f"{out} (job {j})"):
            continue
        cuts_in = storage_dir / f"todo.{j}.jsonl.gz"
        split.to_file(cuts_in)
        jobs.append((j, (str(cuts_in), str(storage_dir / f"feats-{j}"), str(out), num_mel_bins, channel)))
    if len(jobs) > 1:
        with ProcessPoolExecutor(len(jobs)) as ex:
            outs = list(ex.map(_job, [(*a, 1) for _, a in jobs]))
    else:  # one job left (or resumed): it keeps all of torch's threads
        outs = [_job((*a, 0)) for _, a in jobs]
    for (j, _), o in zip(jobs, outs):
        write_dropped(storage_dir / f"feats-{j}.failed.jsonl", o["failed"])
        job_records[j].done()
    failed = [e for j in range(len(splits)) for e in read_dropped(storage_dir / f"feats-{j}.failed.jsonl")]
    merged = CutSet.from_cuts(
        c for j in range(len(splits)) for c in read_manifest(storage_dir / f"cuts.{j}.jsonl.gz", "features")
    )
    return merged, failed, outs


def _say_audio_conversions(part: str, outs: list[dict]) -> None:
    """Once per part: how many recordings were resampled or read from one channel of several."""
    for rate, (n, example) in _counted(outs, "resampled"):
        log.warning("%s: %d recordings at %d Hz resampled to 16000 Hz for Whisper (e.g. %s)", part, n, rate, example)
    for ch, (n, example) in _counted(outs, "multi"):
        log.warning("%s: %d multi-channel recordings: channel %d read (e.g. %s)", part, n, ch, example)


def _counted(outs: list[dict], key: str) -> list[tuple[int, list]]:
    """The jobs' ``{value: [n, an example file]}`` counts under ``key``, summed, by value."""
    total: dict[int, list] = {}
    for o in outs:
        for value, (n, example) in o[key].items():
            t = total.setdefault(int(value), [0, example])
            t[0] += n
    return sorted(total.items())


LHOTSE_WHISPER_FBANK = {"sampling_rate": 16000, "n_fft": 400, "hop_length": 160}


def check_feature_settings(path: str | Path, num_mel_bins: int) -> None:
    """Raise a ValueError naming the file if the Whisper directory ``path`` expects other
    features than the recipe's lhotse ``WhisperFbank`` with ``num_mel_bins`` bins."""
    p = Path(path)
    problems = []
    cfg_file = p / "config.json"
    if cfg_file.is_file():
        n = json.loads(cfg_file.read_text()).get("num_mel_bins")
        if n is not None and n != num_mel_bins:
            problems.append(
                f"{cfg_file}: the encoder takes {n} mel bins, the recipe's features have {num_mel_bins} (data.num_mel_bins)"
            )
    pre = p / "preprocessor_config.json"
    if pre.is_file():
        fe = json.loads(pre.read_text())
        want = {**LHOTSE_WHISPER_FBANK, "feature_size": num_mel_bins}
        for key, value in want.items():
            if key in fe and fe[key] != value:
                problems.append(f"{pre}: {key} is {fe[key]}, the recipe's lhotse WhisperFbank features use {value}")
    if problems:
        raise ValueError("Whisper features do not match: " + "; ".join(problems))


def one_cut_per_segment(cuts):
    """Cuts of whole recordings as one cut per supervision (a Kaldi ``segments`` file), each named by
    its segment id, in memory; ``cuts`` unchanged when every recording is one utterance (LibriSpeech)."""
    from lhotse import CutSet
    from lhotse.utils import fastcopy, to_list

    def whole(c) -> bool:
        # A supervision on one channel of several (reco2file_and_channel) is trimmed to that channel.
        s = c.supervisions
        return (
            len(s) == 1
            and s[0].start < 1e-3
            and s[0].end > c.duration - 1e-3
            and sorted(to_list(s[0].channel)) == sorted(to_list(c.channel))
        )

    if all(whole(c) for c in cuts):
        return cuts
    # lhotse's trim_to_supervisions is lazy (it has no len(), which splitting into jobs needs) and
    # gives the new cuts made-up ids: the segment's id is what transcripts and results are keyed by.
    return CutSet.from_cuts(
        fastcopy(c, id=c.supervisions[0].id) for c in cuts.trim_to_supervisions(keep_overlapping=False)
    )
