"""Decode and deliberate test parts with a trained model, several settings in one call, and
write icefall-format results with speed figures.

Results go to ``{exp_dir}/{mode}/``: ``recogs-``, ``errs-``, ``speed-`` per test part and
setting, and ``wer-summary-{test}-{checkpoint}.txt`` over every setting found there.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from whisper_llada.data.dataset import SpeechTextDataset, filter_cuts, move_batch
from whisper_llada.data.text_norm import get_normalizer
from whisper_llada.diffusion.settings import DecodeConfig
from whisper_llada.firstpass.records import read_records, records_path
from whisper_llada.models.build import build_model
from whisper_llada.recipe import RecipeConfig
from whisper_llada.scoring.wer import write_results, write_wer_summary
from whisper_llada.training.checkpoint import average_checkpoints, load_model_state
from whisper_llada.utils.checkpoint_io import atomic_write_text

log = logging.getLogger(__name__)


def checkpoint_paths(exp_dir: Path, epoch: int, avg: int = 1, checkpoint: Optional[Path] = None) -> tuple[list[Path], str]:
    """The checkpoint files to average and the tag that names them in result files."""
    if checkpoint is not None:
        return [Path(checkpoint)], Path(checkpoint).stem
    if epoch - avg + 1 < 1:
        raise ValueError(f"--epoch {epoch} --avg {avg}: averaging would need epochs before epoch 1")
    return [Path(exp_dir) / f"epoch-{e}.pt" for e in range(epoch - avg + 1, epoch + 1)], f"epoch-{epoch}-avg-{avg}"


def load_trained_model(cfg: RecipeConfig, paths: list[Path], device: str = "cpu"):
    """The model with its trainable weights averaged over ``paths``."""
    model = build_model(cfg.model)
    load_model_state(model, average_checkpoints(paths), ", ".join(map(str, paths)))
    return model.to(device).eval()


class PrefixCache:
    """The LLM prefix (encoder, Q-Former, prompt) of each decoding batch, kept across the settings
    of one call: it depends on the model and the batch only. Each entry keeps the seconds its
    computation took, which every setting that reuses it adds to its own time, so RTFs still
    count the front end. Entries stop being added beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = 2 * 2**30):
        self.max_bytes, self.bytes = max_bytes, 0
        self.entries: dict[tuple, tuple] = {}

    def get(self, model, batch: dict, device) -> tuple[tuple, float]:
        """(prefix, seconds it took to compute) of ``batch``, computed now or earlier."""
        key = tuple(batch["cut_ids"])
        if key in self.entries:
            return self.entries[key]
        t0 = time.perf_counter()
        with torch.no_grad():
            prefix = model.batch_prefix(batch)
        _sync(device)
        entry = (prefix, time.perf_counter() - t0)
        size = sum(t.numel() * t.element_size() for t in prefix if t is not None)
        if self.bytes + size <= self.max_bytes:
            self.entries[key], self.bytes = entry, self.bytes + size
        return entry


def _sync(device) -> None:
    if str(device) != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def decode_part(model, cuts, setting: DecodeConfig, normalizer: str, first_pass: Optional[dict] = None,
                device="cpu", strict: bool = False, prefixes: Optional[PrefixCache] = None) -> tuple[list, dict]:
    """Returns (results [(cut id, ref words, hyp words)], speed). ``prefixes`` shares the front
    end's work between the settings of one call."""
    from lhotse.dataset import SimpleCutSampler
    from tqdm import tqdm

    norm = get_normalizer(normalizer)
    ds = SpeechTextDataset(norm, strict=strict)
    results, wall, front, audio, passes, n = [], 0.0, 0.0, 0.0, 0, 0
    prefixes = prefixes or PrefixCache(max_bytes=0)
    g = torch.Generator(device=device).manual_seed(0)
    # Batches of similar durations: less padding for the encoder, the Q-Former and every LLM pass
    # (results are written sorted by cut id, so the order does not show).
    cuts = cuts.sort_by_duration()
    for cut_batch in tqdm(SimpleCutSampler(cuts, max_cuts=setting.batch_size), desc=setting.suffix(), leave=False):
        batch = move_batch(ds[cut_batch], device)
        if not batch["cut_ids"]:
            continue
        stats: dict = {}
        batch["prefix"], seconds = prefixes.get(model, batch, device)
        front += seconds
        t0 = time.perf_counter()
        if setting.is_deliberation:
            recs = [first_pass[c] for c in batch["cut_ids"]]
            conf = None
            if setting.masking_type == "first_pass":
                conf = [token_confidences(model.tokenizer, r) for r in recs]
            hyps = model.deliberate(batch, [r["text"] for r in recs], setting, confidences=conf, stats=stats, generator=g)
        else:
            hyps = model.transcribe(batch, setting, stats=stats, generator=g)
        _sync(device)
        wall += time.perf_counter() - t0 + seconds
        audio += sum(batch["durations"])
        passes += int(stats["forward_passes"].sum()) if "forward_passes" in stats else 0
        n += len(hyps)
        for cut_id, ref, hyp in zip(batch["cut_ids"], batch["texts"], hyps):
            results.append((cut_id, ref.split(), norm(hyp).split()))
    speed = {"num_utts": n, "audio_seconds": round(audio, 3), "wall_seconds": round(wall, 3),
             "rtf": round(wall / audio, 5) if audio else None, "front_end_seconds": round(front, 3),
             "forward_passes_per_utt": round(passes / max(n, 1), 2)}
    return results, speed


def token_confidences(tokenizer, record: dict) -> list[float]:
    """Per-token confidences from a record's per-word confidences (each token takes its word's)."""
    words = record.get("words")
    if not words:
        raise ValueError(f"first-pass record {record['id']} has no word confidences (masking_type 'first_pass' needs them)")
    out = []
    for i, w in enumerate(words):
        pieces = tokenizer.encode(w["word"] if i == 0 else " " + w["word"])
        out += [float(w["conf"])] * len(pieces)
    if len(out) != len(tokenizer.encode(record["text"])):
        raise ValueError(f"first-pass record {record['id']}: its words do not tokenise like its text")
    return out


def run_settings(cfg: RecipeConfig, get_model: Callable[[], object], tag: str, exp_dir: Path,
                 settings: list[DecodeConfig], parts: list[str], firstpass_dir: Optional[Path] = None,
                 device: str = "cpu") -> dict:
    """Decode (or deliberate) every test part with every setting; skip results that exist.

    ``get_model`` is called only if something is left to decode.
    """
    from lhotse import load_manifest_lazy

    cfg.check_features()
    wers: dict = {}
    model = None
    prefixes = PrefixCache()
    for part in parts:
        path = cfg.data.cuts_path(part)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: cuts of test part {part!r} not found (run the features stage)")
        cuts = filter_cuts(load_manifest_lazy(path), need_text=False, where=part, strict=cfg.data.strict)
        written = set()
        for setting in settings:
            out_dir = Path(exp_dir) / setting.mode
            suffix = f"{setting.suffix()}-{tag}"
            errs = out_dir / f"errs-{part}-{suffix}.txt"
            if errs.is_file():
                log.info("%s already exists - skipping", errs)
                continue
            first_pass = None
            if setting.is_deliberation:
                system = setting.first_pass or cfg.first_pass_system
                fp_path = records_path(firstpass_dir, system, part)
                first_pass = read_records(fp_path)
                missing = [c.id for c in cuts if c.id not in first_pass]
                if missing:
                    raise ValueError(f"{fp_path}: no record for {len(missing)} cuts (e.g. {missing[:3]}); "
                                     "is it from another recipe?")
            model = model or get_model()
            results, speed = decode_part(model, cuts, setting, cfg.score.normalizer, first_pass, device, cfg.data.strict,
                                         prefixes)
            shown = {k: v for k, v in vars(setting).items() if v is not None}
            if setting.is_deliberation:
                shown["first_pass"] = system
            header = f"Test: {part}\nSetting: {json.dumps(shown)}\nSpeed: {json.dumps(speed)}"
            wer = write_results(out_dir, part, suffix, results, cfg.score.normalizer, cfg.score.sclite_mode, header)
            atomic_write_text(out_dir / f"speed-{part}-{suffix}.json", json.dumps({**speed, "test": part, "wer": wer}, indent=1))
            log.info("%s %s: WER %.2f%%, RTF %s, %.1f passes/utt", part, suffix, wer, speed["rtf"],
                     speed["forward_passes_per_utt"])
            wers[(part, suffix)] = wer
            written.add(setting.mode)
        for mode in written:
            summarise(Path(exp_dir) / mode, part, tag)
    return wers


def summarise(out_dir: Path, part: str, tag: str) -> None:
    """``wer-summary-{part}-{tag}.txt`` over every errs file of that part and checkpoint in ``out_dir``."""
    wers = {}
    pat = re.compile(rf"errs-{re.escape(part)}-(.*)-{re.escape(tag)}\.txt$")
    for p in out_dir.glob(f"errs-{part}-*-{tag}.txt"):
        m = pat.match(p.name)
        if m:
            wers[m.group(1)] = float(p.read_text().split("\n", 1)[0].split("=")[1])
    if wers:
        write_wer_summary(out_dir / f"wer-summary-{part}-{tag}.txt", wers)
