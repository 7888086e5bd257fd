"""Whisper log-mel features for a corpus part with lhotse's ``WhisperFbank``, stored with lilcom.

The part is split into ``nj`` jobs; each writes its cuts atomically, so an interrupted run
redoes only unfinished jobs. An unreadable recording is reported by cut id and skipped.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from whisper_llada.utils.checkpoint_io import atomic_to_file

log = logging.getLogger(__name__)


def _job(args: tuple) -> tuple[int, int]:
    cuts_in, storage, out_path, num_mel_bins, threads = args
    import torch
    from lhotse import CutSet
    from lhotse.features.io import LilcomChunkyWriter
    from lhotse.features.whisper_fbank import WhisperFbank, WhisperFbankConfig
    from tqdm import tqdm

    if threads:
        # One thread per parallel job: nj jobs of all-core torch fight over the cores (the
        # embedded corpus's 3000 cuts took 30 s with 2 jobs of 2 threads).
        torch.set_num_threads(threads)
    extractor = WhisperFbank(WhisperFbankConfig(num_filters=num_mel_bins))
    cuts = CutSet.from_file(cuts_in)
    done, failed = [], 0
    with LilcomChunkyWriter(storage) as writer:
        for cut in tqdm(cuts, desc=Path(out_path).name, leave=False):
            try:
                if cut.sampling_rate != 16000:
                    cut = cut.resample(16000)
                done.append(cut.compute_and_store_features(extractor, writer))
            except Exception as e:  # corrupt or missing audio: name it and go on
                failed += 1
                log.warning("cut %s: cannot compute features (%s: %s); skipped", cut.id, type(e).__name__, e)
    atomic_to_file(CutSet.from_cuts(done), out_path)
    Path(cuts_in).unlink(missing_ok=True)
    return len(done), failed


def compute_whisper_fbank(recordings: Path, supervisions: Path, out_cuts: Path, storage_dir: Path,
                          num_mel_bins: int, nj: int = 1) -> None:
    from lhotse import CutSet, load_manifest

    if out_cuts.is_file():
        log.info("%s already exists - skipping", out_cuts)
        return
    for p in (recordings, supervisions):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: manifest not found (run the manifests stage)")
    storage_dir.mkdir(parents=True, exist_ok=True)
    cuts = CutSet.from_manifests(recordings=load_manifest(recordings), supervisions=load_manifest(supervisions))
    cuts = cuts.trim_to_supervisions(keep_overlapping=False) if any(len(c.supervisions) > 1 for c in cuts) else cuts
    splits = cuts.split(nj) if nj > 1 and len(cuts) >= nj else [cuts]
    jobs = []
    for j, split in enumerate(splits):
        out = storage_dir / f"cuts.{j}.jsonl.gz"
        if out.is_file():
            log.info("%s already exists - skipping job %d", out, j)
            continue
        cuts_in = storage_dir / f"todo.{j}.jsonl.gz"
        split.to_file(cuts_in)
        jobs.append((str(cuts_in), str(storage_dir / f"feats-{j}"), str(out), num_mel_bins))
    if len(jobs) > 1:
        with ProcessPoolExecutor(len(jobs)) as ex:
            counts = list(ex.map(_job, [(*j, 1) for j in jobs]))
    else:  # one job left (or resumed): it keeps all of torch's threads
        counts = [_job((*j, 0)) for j in jobs]
    failed = sum(f for _, f in counts)
    merged = CutSet.from_cuts(c for j in range(len(splits)) for c in CutSet.from_file(storage_dir / f"cuts.{j}.jsonl.gz"))
    atomic_to_file(merged, out_cuts)
    msg = f"{out_cuts}: {len(merged)} cuts with features"
    if failed:
        log.warning("%s; %d cuts skipped (unreadable audio, see above)", msg, failed)
    else:
        log.info(msg)
