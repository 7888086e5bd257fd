"""Frozen-part speed-ups: Whisper encoder outputs stored beside the cuts, and the audio tokens of
a frozen front end held in memory (and stored, so that a second model on that front end reuses them).

Only the leading frames the Q-Former reads are stored (all of them when it keeps every
window), losslessly in float32, so training on the cache gives the same loss as running
the encoder. Storage is ``NumpyFilesWriter`` under the experiment directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist

from whisper_llada.data.dataset import SpeechTextDataset
from whisper_llada.utils.checkpoint_io import atomic_to_file

log = logging.getLogger(__name__)


def encoder_cache_dir(cfg) -> Path:
    """``{manifest_dir}/../encoder_cache/{key}``: one cache per encoder and window geometry, so
    Whisper-LLaDA and its twin on the same encoder share it."""
    import hashlib
    import json
    from dataclasses import asdict

    q = cfg.model.qformer
    key = {
        "whisper": asdict(cfg.model.whisper),
        "kernel": q.kernel,
        "stride": q.stride,
        "trim": q.trim_to_audio,
        "parts": [cfg.data.train_parts, cfg.data.dev_parts],
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.data.manifest_dir).parent / "encoder_cache" / digest


def features_stamp(cut) -> str:
    """Where a cut's features are and when that file was written: changes when they are recomputed.
    Features computed on the fly (a cut without stored ones) are stamped with their audio file."""
    import os

    from whisper_llada.data.features import audio_file

    if cut.has_features:
        f = cut.features
        path, key = f.storage_path, f.storage_key
    else:
        path, key = audio_file(cut), "audio"
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = None
    return f"{path}|{key}|{mtime}"


@torch.no_grad()
def cached_cuts(model, cuts, out_dir: Path, device, rank: int = 0, world: int = 1, batch_size: int = 8, extractor=None):
    """``cuts`` (in their order) with an ``encoder_out`` array and ``encoder_real_frames``;
    ``extractor``: the features are computed from the audio (``DataConfig.feature_extractor()``).

    Rank 0 computes what the cache lacks. Models that share the cache may keep different cuts
    (their filters differ), so the cache holds the union and each gets exactly its own.
    """
    from lhotse import CutSet
    from lhotse.features.io import NumpyFilesWriter
    from tqdm import tqdm

    from whisper_llada.data.manifests_io import read_manifest

    out_dir = Path(out_dir)
    manifest = out_dir / "cuts.jsonl.gz"
    cut_list = list(cuts)
    if rank == 0:
        done = (
            {c.id: c for c in read_manifest(manifest, "train (delete the cache directory)")}
            if manifest.is_file()
            else {}
        )
        # An entry made from features that have since been recomputed (a fixed recording) is stale.
        stale = [
            c.id for c in cut_list if c.id in done and done[c.id].custom.get("features_stamp") != features_stamp(c)
        ]
        if stale:
            log.warning(
                "%s: %d cached encoder outputs were made from older features (e.g. cut %s); recomputing them",
                manifest,
                len(stale),
                stale[0],
            )
            for cut_id in stale:
                del done[cut_id]
        todo = [c for c in cut_list if c.id not in done]
        if todo:
            ds = SpeechTextDataset(extractor=extractor)
            total = model.encoder.config.max_source_positions
            # Batches of similar durations: the encoder runs on each batch's longest audio
            # (whisper.window: audio), so sorting saves the padding.
            by_length = sorted(todo, key=lambda c: c.duration)
            # A new storage folder per addition: the earlier arrays stay where the manifest says.
            storage = out_dir / f"storage-{len(list(out_dir.glob('storage*')))}" if done else out_dir / "storage"
            with NumpyFilesWriter(str(storage)) as writer:
                for i in tqdm(range(0, len(by_length), batch_size), desc=f"caching encoder outputs ({out_dir.name})"):
                    chunk = CutSet.from_cuts(by_length[i : i + batch_size])
                    batch = ds[chunk]
                    if not batch["cut_ids"]:
                        continue
                    audio = batch["audio"].to(device)
                    frames, real = model.run_encoder(audio.data, audio.lens)  # the frozen part alone
                    need = model.frames_needed(real, total)
                    by_id = {c.id: c for c in chunk}
                    for j, cut_id in enumerate(batch["cut_ids"]):
                        arr = frames[j, : int(need[j])].float().cpu().numpy()
                        stored = writer.store_array(cut_id, arr)
                        cut = by_id[cut_id].with_custom("encoder_out", stored)
                        cut = cut.with_custom("features_stamp", features_stamp(cut))
                        done[cut_id] = cut.with_custom("encoder_real_frames", int(real[j]))
            atomic_to_file(CutSet.from_cuts(done.values()), manifest)
            log.info("cached encoder outputs of %d cuts under %s (%d in all)", len(todo), out_dir, len(done))
    if world > 1:
        dist.barrier()
    cached = {c.id: c for c in read_manifest(manifest, "train (delete the cache directory)")}
    # Unreadable cuts were skipped when caching (and reported): they stay out here too.
    return CutSet.from_cuts(cached[c.id] for c in cut_list if c.id in cached)


def frontend_fingerprint(model) -> str:
    """A digest of the front end's weights (Q-Former, CTC head, adapted encoder layers) and of how its tokens are made:
    two models with the same fingerprint read the same audio tokens."""
    import hashlib

    h = hashlib.sha1(f"ctc_compress={model.cfg.ctc_compress}".encode())
    prefixes = model.frontend_prefixes()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith(prefixes):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


@torch.no_grad()
def audio_token_cache(
    model, cuts, dataset: SpeechTextDataset, device, max_duration: float, store: Path | None = None
) -> dict:
    """Cut id -> the audio tokens (n, D) the LLM reads, float32 on the CPU, for a frozen front end.

    Run once when the front end stops training: afterwards every LLM step would recompute the
    same tokens (the Q-Former is in eval mode, so deterministic). Held in memory, which suits
    small models only: 30 s of LLaDA-8B tokens is 352 x 4096 floats (5.8 MB) a cut. With
    ``store`` (a file named by ``frontend_fingerprint``), tokens found there are not computed
    again, and those computed are added to it.
    """
    from lhotse import CutSet
    from lhotse.dataset import SimpleCutSampler
    from tqdm import tqdm

    from whisper_llada.utils.checkpoint_io import atomic_torch_save

    stored: dict[str, torch.Tensor] = {}
    if store and store.is_file():
        try:
            stored = torch.load(store, weights_only=True)
        except Exception as e:  # a cache: a damaged one is named and recomputed, not fatal
            log.warning("%s: cannot read this audio-token cache (%s: %s); recomputing it", store, type(e).__name__, e)
    cut_list = list(cuts)
    # Stored under the cut id and its features' (or audio's) stamp: recomputed features (a fixed
    # recording) miss.
    key = {c.id: f"{c.id}|{features_stamp(c)}" if c.has_features or c.has_recording else c.id for c in cut_list}
    todo = [c for c in cut_list if key[c.id] not in stored]
    if todo:
        was_training = model.training
        model.eval()
        # Batches of similar durations (little padding), as decoding makes them.
        by_length = CutSet.from_cuts(todo).sort_by_duration()
        for cut_batch in tqdm(
            SimpleCutSampler(by_length, max_duration=max_duration), desc="caching audio tokens", leave=False
        ):
            batch = dataset[cut_batch]
            if not batch["cut_ids"]:
                continue
            tokens, mask = model.compress(*model.audio_tokens(batch["audio"].to(device)))
            # Compression and the Q-Former pack each row's real tokens at its start.
            for row, cut_id in enumerate(batch["cut_ids"]):
                stored[key[cut_id]] = tokens[row, : int(mask[row].sum())].float().cpu()
        model.train(was_training)
        if store:
            atomic_torch_save(stored, store)
    elif store:
        log.info("audio tokens of %d cuts read from %s", len(cut_list), store)
    return {c.id: stored[key[c.id]] for c in cut_list if key[c.id] in stored}
