"""Decode and deliberate test parts with a trained model, several settings in one call, and
write icefall-format results with speed figures. Each setting's ``mode`` names the strategy that
decodes its batches (``whisper_llada.decoding.strategies``); this module runs them over the parts.

Results go to ``{exp_dir}/{mode}/``: ``recogs-``, ``errs-``, ``speed-`` per test part and
setting, and ``wer-summary-{test}-{checkpoint}.txt`` over every setting found there.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from whisper_llada.checkpoint.files import average_checkpoints, load_model_state
from whisper_llada.config.recipe import RecipeConfig
from whisper_llada.data.dataset import SpeechTextDataset, cut_text, move_batch
from whisper_llada.data.dropped import all_deleted, dropped_path, read_dropped
from whisper_llada.data.pieces import check_window, is_piece
from whisper_llada.data.text_norm import get_normalizer
from whisper_llada.decoding.fusion import Fusion, tune_fusion
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.decoding.stats import PartTotals, part_speed
from whisper_llada.decoding.strategies import token_confidences  # noqa: F401 (imported from here too)
from whisper_llada.decoding.strategy import BatchJob, Strategy, get_strategy
from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.firstpass.records import read_records, records_path, write_records
from whisper_llada.models.build import build_model
from whisper_llada.scoring.wer import read_errs_accounting, read_recogs, write_results, write_wer_summary
from whisper_llada.utils.checkpoint_io import atomic_write_text
from whisper_llada.utils.dist import barrier, gather, is_main, my_batches, rank0_decides
from whisper_llada.utils.stage_record import StageRecord, record_path_for

log = logging.getLogger(__name__)


def checkpoint_paths(
    exp_dir: Path, train, epoch: int | None = None, avg: int | None = None, checkpoint: Path | None = None
) -> tuple[list[Path], str]:
    """The checkpoint files to average and the tag that names them in result files: ``checkpoint``,
    else the last ``avg`` epochs up to ``epoch`` (unset: ``train.avg`` and ``train.num_epochs``)."""
    if checkpoint is not None:
        return [Path(checkpoint)], Path(checkpoint).stem
    epoch, avg = epoch or train.num_epochs, avg or train.avg
    if epoch - avg + 1 < 1:
        raise ValueError(f"--epoch {epoch} --avg {avg}: averaging would need epochs before epoch 1")
    return [Path(exp_dir) / f"epoch-{e}.pt" for e in range(epoch - avg + 1, epoch + 1)], f"epoch-{epoch}-avg-{avg}"


def load_trained_model(cfg: RecipeConfig, paths: list[Path], device: str = "cpu"):
    """The model with its trainable weights averaged over ``paths``."""
    model = build_model(cfg.model)
    load_model_state(model, average_checkpoints(paths), ", ".join(map(str, paths)))
    return model.to(device).eval()


class FrontEndCache:
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


def decode_part(
    model,
    cuts,
    setting: DecodeConfig,
    normalizer: str,
    first_pass: dict | None = None,
    device="cpu",
    strict: bool = False,
    prefixes: FrontEndCache | None = None,
    left_out: list | None = None,
    fusion: Fusion | None = None,
    candidates: dict | None = None,
    records: list | None = None,
    extractor=None,
) -> tuple[list, dict]:
    """Returns (results [(cut id, ref words, hyp words)], speed). ``prefixes`` shares the front
    end's work between the settings of one call. N-best rescoring picks each cut's candidate with
    ``fusion`` (None: the first pass's 1-best) and puts every cut's ``Candidate`` list in ``candidates``.
    A setting ``as_first_pass`` puts each cut's first-pass record (its beam as the n-best) in ``records``.
    ``extractor``: features are computed from the audio (``DataConfig.feature_extractor()``).

    A cut whose input cannot be loaded is not lost: it gets a row with an empty hypothesis (all
    deleted) and (cut id, reason) goes to ``left_out``.

    Under torchrun each rank decodes its share of the batches (whisper_llada.utils.dist) and every
    rank returns the results of the whole part, in the order one process gives them.
    """
    strategy = get_strategy(setting.mode)
    strategy.check_model(model, setting)
    norm = get_normalizer(normalizer)
    ds = SpeechTextDataset(norm, strict=strict, extractor=extractor)
    job = BatchJob(norm, torch.Generator(device=device).manual_seed(0), first_pass, fusion)
    done, totals = _decode_batches(model, cuts, setting, strategy, ds, job, device, prefixes or FrontEndCache(0))
    gathered = gather((done, totals, ds.failures))
    failures = {cut_id: why for _, _, failed in gathered for cut_id, why in failed.items()}
    results = []
    for _, rows, cands, recs in sorted((b for batches, _, _ in gathered for b in batches), key=lambda b: b[0]):
        results += rows
        if candidates is not None:
            candidates.update(cands)
        if records is not None:
            records += recs
    decoded = {r[0] for r in results}
    for cut in cuts:
        if cut.id not in decoded:
            results.append((cut.id, norm(cut_text(cut)).split(), []))
            if left_out is not None:
                left_out.append((cut.id, failures.get(cut.id, "not decoded (see the log)")))
            if records is not None:  # deliberation then meets it as here: all deleted
                records.append({"id": cut.id, "text": "", "nbest": [{"text": "", "score": 0.0}]})
    return results, part_speed([t for _, t, _ in gathered], setting.suffix(), setting.gen_len)


def _decode_batches(model, cuts, setting, strategy: Strategy, ds, job: BatchJob, device, prefixes) -> tuple:
    """This process's share of a part: [(batch index, result rows, candidates, records)] and its
    ``PartTotals``. ``job`` holds what every batch reads (its counts and outputs start empty)."""
    from tqdm import tqdm

    done, totals = [], PartTotals()
    # Batches of similar durations: less padding for the encoder, the Q-Former and every LLM pass
    # (results are written sorted by cut id, so the order does not show).
    for index, cut_batch in tqdm(
        my_batches(cuts, setting.batch_size, setting.suffix()), desc=setting.suffix(), leave=False
    ):
        batch = move_batch(ds[cut_batch], device)
        if not batch["cut_ids"]:
            continue
        # A stream of its own per batch: a batch's hypotheses do not depend on which process
        # decoded the batches before it.
        job.generator.manual_seed(index)
        this = replace(job, counts=PassCounts(), candidates={}, records=[])
        batch["prefix"], seconds = prefixes.get(model, batch, device)
        t0 = time.perf_counter()
        hyps = strategy.decode_batch(model, batch, setting, this)
        _sync(device)
        wall = time.perf_counter() - t0 + seconds
        full = canvas_filled(model, setting, hyps)
        totals.add_batch(this.counts, len(hyps), sum(batch["durations"]), wall, seconds, full)
        rows = [(c, ref.split(), job.norm(hyp).split()) for c, ref, hyp in zip(batch["cut_ids"], batch["texts"], hyps)]
        done.append((index, rows, this.candidates, this.records))
    return done, totals


def canvas_filled(model, setting: DecodeConfig, hyps: Sequence[str]) -> int:
    """How many of a batch's hypotheses are as long as a fixed canvas (direct decoding): their
    transcript found no end within it, and may have been cut."""
    if not get_strategy(setting.mode).fills_fixed_canvas(setting):
        return 0
    return sum(len(model.tokenizer.encode(h)) >= setting.gen_len for h in hyps if h)


def load_test_part(cfg: RecipeConfig, part: str, norm: Callable[[str], str]) -> tuple:
    """(decodable cuts, result rows of the rest, (id, reason) of the rest) of a test part.

    A cut longer than ``data.decode_window`` is decoded as its pieces (``whisper_llada.data.pieces``),
    which ``write_results`` joins again. No test cut vanishes: one that an earlier stage left out
    (unreadable audio) is scored as all deleted and listed in the errs file with its reason.
    """
    from whisper_llada.data.cuts import load_part_cuts
    from whisper_llada.data.pieces import split_long_cuts

    unusable: list[dict] = []
    cuts = load_part_cuts(cfg.data, [part], part, need_text=False, dropped=unusable, max_duration=float("inf"))
    cuts = split_long_cuts(cuts, cfg.data.decode_window, part)
    earlier = read_dropped(dropped_path(cfg.data.manifest_dir, cfg.data.prefix, part))
    for e in unusable:
        e["reason"] += "; not decoded"
    rows, left = all_deleted(earlier + unusable, norm)
    if left:
        log.warning(
            "%s: %d of %d cuts cannot be decoded; each is scored as all deleted and listed in the errs files (e.g. %s)",
            part,
            len(left),
            len(cuts) + len(left),
            left[0],
        )
    return cuts, rows, left


def part_inputs(cfg: RecipeConfig, part: str) -> list[Path]:
    """The files a test part's results are made from (for stage records)."""
    drop = dropped_path(cfg.data.manifest_dir, cfg.data.prefix, part)
    return [cfg.data.cuts_path(part), *([drop] if drop.is_file() else [])]


@dataclass
class _Call:
    """What the settings of one ``run_settings`` call share: the model (loaded when first needed),
    the front end's outputs, and n-best rescoring's fusion weights (chosen on dev once a call)."""

    cfg: RecipeConfig
    get_model: Callable[[], object]
    firstpass_dir: Path | None
    device: str
    model: object = None
    prefixes: FrontEndCache = field(default_factory=FrontEndCache)
    fusions: dict = field(default_factory=dict)  # (setting, first pass) -> (Fusion, what it measured)

    def loaded_model(self):
        if self.model is None:
            self.model = self.get_model()
            check_window(self.model.window_seconds, self.cfg.data.decode_window, f"{self.cfg.model.arch}'s encoder")
        return self.model


@dataclass
class _Result:
    """One setting's results on one part: where they go, what they are made from, and the stage
    records that say whether they are up to date."""

    part: str
    setting: DecodeConfig
    strategy: Strategy
    out_dir: Path
    suffix: str  # the setting's suffix and the checkpoint's tag
    errs: Path
    record: StageRecord
    system: str | None = None  # the first pass it reads
    fp_path: Path | None = None  # that first pass's records of the part
    fp_out: Path | None = None  # the first-pass records it writes (as_first_pass)
    fp_record: StageRecord | None = None
    dev_only: bool = False  # a dev part, decoded for its first-pass records only


def run_settings(
    cfg: RecipeConfig,
    get_model: Callable[[], object],
    tag: str,
    exp_dir: Path,
    settings: list[DecodeConfig],
    parts: list[str],
    firstpass_dir: Path | None = None,
    device: str = "cpu",
    checkpoints: Sequence[Path] = (),
) -> dict:
    """Decode (or deliberate) every test part with every setting; skip results that are up to date.

    ``get_model`` is called only if something is left to decode. A result is redone when its cuts,
    ``checkpoints``, first-pass records, setting or scoring options changed, or it is damaged.
    Under torchrun every rank decodes its share of each part and rank 0 alone writes (and returns
    the WERs; the other ranks return none).
    """
    cfg.check_features()
    wers: dict = {}
    call = _Call(cfg, get_model, firstpass_dir, device)
    norm = get_normalizer(cfg.score.normalizer)
    # A setting that writes first-pass records decodes the dev parts too: the rescoring of its
    # n-best chooses its weights there.
    writes_records = any(get_strategy(s.mode).writes_records(s) for s in settings)
    dev_too = [p for p in cfg.data.dev_parts if p not in parts] if writes_records else []
    if writes_records and firstpass_dir is None:
        raise ValueError("a setting with as_first_pass writes first-pass records: give the first-pass directory")
    for part in [*parts, *dev_too]:
        test_part = load_test_part(cfg, part, norm)
        written = set()
        for setting in settings:
            dev_only = part in dev_too  # the records only: the report shows test results
            if dev_only and not get_strategy(setting.mode).writes_records(setting):
                continue
            job = _plan(cfg, part, setting, tag, exp_dir, firstpass_dir, checkpoints, dev_only)
            if _up_to_date(job):
                continue
            wer = _decode_result(call, job, test_part)
            if wer is not None:
                wers[(part, job.suffix)] = wer
                written.add(setting.mode)
        for mode in written:
            summarise(Path(exp_dir) / mode, part, tag)
    return wers


def _plan(cfg, part, setting, tag, exp_dir, firstpass_dir, checkpoints, dev_only) -> _Result:
    """The paths of a setting's results on ``part`` and their stage records: the results are made
    from the part's cuts, ``checkpoints``, the first-pass records read, the setting and the scoring
    options. The first-pass records a setting writes have a record of their own: the CTC stage adds
    confidences and scores to them (StageRecord.amended), which must not make the results stale."""
    strategy = get_strategy(setting.mode)
    out_dir = Path(exp_dir) / setting.mode
    suffix = f"{setting.suffix()}-{tag}"
    errs = out_dir / f"errs-{part}-{suffix}.txt"
    inputs = [*part_inputs(cfg, part), *checkpoints]
    system = fp_path = None
    if strategy.reads_first_pass:
        system = setting.first_pass or cfg.first_pass_system
        fp_path = records_path(firstpass_dir, system, part)
        inputs.append(fp_path)
        if strategy.tunes_fusion:  # its weights are chosen on dev
            for dev in cfg.data.dev_parts:
                inputs += [*part_inputs(cfg, dev), records_path(firstpass_dir, system, dev)]
    options = {
        "setting": vars(setting),
        "score": asdict(cfg.score),
        "model": asdict(cfg.model),
        "decode_window": cfg.data.decode_window,
    }
    outputs = [out_dir / f"recogs-{part}-{suffix}.txt", errs]
    record = StageRecord(record_path_for(errs), inputs, options, outputs, verify=_check_errs)
    job = _Result(part, setting, strategy, out_dir, suffix, errs, record, system, fp_path, dev_only=dev_only)
    if strategy.writes_records(setting):
        job.fp_out = records_path(firstpass_dir, setting.as_first_pass, part)
        job.fp_record = StageRecord(record_path_for(job.fp_out), inputs, options, [job.fp_out], verify=read_records)
    return job


def _up_to_date(job: _Result) -> bool:
    """Whether nothing of ``job`` is left to do. Rank 0 checks (a check may adopt an older run's
    outputs, i.e. write) and every rank follows."""
    return rank0_decides(
        lambda: (
            (job.dev_only or job.record.check(str(job.errs)))
            and (job.fp_record is None or job.fp_record.check(str(job.fp_out)))
        )
    )


def _decode_result(call: _Call, job: _Result, test_part: tuple) -> float | None:
    """Decodes ``job``'s part with its setting and writes what it makes; the WER (rank 0, test
    parts), else None."""
    cuts, missing_rows, missing = test_part
    cfg, setting = call.cfg, job.setting
    first_pass = read_first_pass(job.fp_path, cuts) if job.strategy.reads_first_pass else None
    model = call.loaded_model()
    fusion, fusion_info = _fusion(call, job) if job.strategy.tunes_fusion else (None, None)
    left_out = list(missing)
    fp_records = [] if job.fp_out else None
    results, speed = decode_part(
        model,
        cuts,
        setting,
        cfg.score.normalizer,
        first_pass,
        call.device,
        cfg.data.strict,
        call.prefixes,
        left_out,
        fusion=fusion,
        records=fp_records,
        extractor=cfg.data.feature_extractor(),
    )
    if job.fp_out and is_main():
        _write_first_pass(job, fp_records)
    if job.dev_only or not is_main():
        barrier()  # a later setting of this call may read what rank 0 writes
        return None
    wer = _write_part_results(cfg, job, results + missing_rows, speed, left_out, fusion_info)
    barrier()
    return wer


def _fusion(call: _Call, job: _Result) -> tuple[Fusion, dict]:
    """N-best rescoring's weights for ``job``'s setting and first pass, chosen on dev once a call."""
    key = (job.setting.suffix(), job.system)
    if key not in call.fusions:
        path = job.out_dir / f"fusion-{job.suffix}.json"
        call.fusions[key] = choose_fusion(
            call.cfg, call.model, job.setting, job.system, call.firstpass_dir, call.device, call.prefixes, path
        )
    return call.fusions[key]


def _write_first_pass(job: _Result, records: list) -> None:
    write_records(job.fp_out, sorted(records, key=lambda r: r["id"]))
    job.fp_record.done()
    log.info("%s: %d first-pass records (%s's n-best)", job.fp_out, len(records), job.suffix)


def _write_part_results(cfg, job: _Result, results: list, speed: dict, left_out: list, fusion_info) -> float:
    """The recogs, errs and speed files of ``job`` (its header shows the setting, the first pass
    it read, the fusion weights and the speed); returns the WER."""
    shown = {k: v for k, v in vars(job.setting).items() if v is not None}
    if job.strategy.reads_first_pass:
        shown["first_pass"] = job.system
    if fusion_info is not None:
        shown["fusion"] = fusion_info
    header = f"Test: {job.part}\nSetting: {json.dumps(shown)}\nSpeed: {json.dumps(speed)}"
    wer = write_results(
        job.out_dir, job.part, job.suffix, results, cfg.score.normalizer, cfg.score.sclite_mode, header, left_out
    )
    atomic_write_text(
        job.out_dir / f"speed-{job.part}-{job.suffix}.json",
        json.dumps({**speed, "test": job.part, "wer": wer}, indent=1),
    )
    job.record.done()
    log.info(
        "%s %s: WER %.2f%%, RTF %s, %.1f passes/utt",
        job.part,
        job.suffix,
        wer,
        speed["rtf"],
        speed["forward_passes_per_utt"],
    )
    return wer


def read_first_pass(path: Path, cuts) -> dict:
    """A first pass's records of a part, one for every cut in ``cuts``."""
    first_pass = read_records(path)
    no_record = [c.id for c in cuts if c.id not in first_pass]
    if no_record:
        raise ValueError(
            f"{path}: no record for {len(no_record)} cuts (e.g. {no_record[:3]}); "
            "is it from another recipe, or older than the cuts? (rerun the first-pass stage)"
        )
    return first_pass


def choose_fusion(cfg, model, setting, system, firstpass_dir, device, prefixes, path: Path) -> tuple[Fusion, dict]:
    """N-best rescoring's fusion weights, chosen on the dev parts (never on a test part), and what
    they measured there; written to ``path``."""
    if not cfg.data.dev_parts:
        raise ValueError("nbest_rescoring chooses its fusion weights on data.dev_parts, and the config lists none")
    norm = get_normalizer(cfg.score.normalizer)
    cands: dict = {}
    refs: dict = {}
    for part in cfg.data.dev_parts:
        fp_path = records_path(firstpass_dir, system, part)
        if not fp_path.is_file():
            raise FileNotFoundError(
                f"{fp_path}: n-best rescoring chooses its weights on {part}, which the first pass {system} "
                "has not decoded (rerun the first-pass stage: it decodes the dev parts too)"
            )
        cuts, _, _ = load_test_part(cfg, part, norm)
        results, _ = decode_part(
            model,
            cuts,
            setting,
            cfg.score.normalizer,
            read_first_pass(fp_path, cuts),
            device,
            cfg.data.strict,
            prefixes,
            candidates=cands,
            extractor=cfg.data.feature_extractor(),
        )
        # A long cut's pieces have no references of their own: the weights are chosen on whole cuts.
        refs.update((cut_id, ref) for cut_id, ref, _ in results if not is_piece(cut_id))
    cands = {c: v for c, v in cands.items() if c in refs}
    # Every rank has every candidate (decode_part gathers them) and chooses the same weights.
    fusion, info = tune_fusion(cands, refs, norm, setting.fuse)
    info = {"dev_parts": list(cfg.data.dev_parts), **info}
    if is_main():
        atomic_write_text(path, json.dumps(info, indent=1))
    log.info(
        "%s on %s: weights chosen on %s (lm %g, words %g, ctc %g): dev WER %.2f%% -> %.2f%% "
        "(without the LM %.2f%%, n-best oracle %.2f%%)",
        setting.suffix(),
        system,
        "+".join(cfg.data.dev_parts),
        fusion.lm_weight,
        fusion.length_weight,
        fusion.ctc_weight,
        info["wer_first_pass"],
        info["wer"],
        info["wer_without_lm"],
        info["wer_oracle"],
    )
    return fusion, info


def _check_errs(path: Path) -> None:
    """Raises if ``path`` is not a whole errs file (a recogs file must list ref/hyp pairs)."""
    lines = path.read_text().splitlines()
    if path.name.startswith("recogs-"):
        read_recogs(path)
        return
    float(lines[0].split("=")[1])
    read_errs_accounting(path, lines)
    if not any(line.startswith("PER-WORD STATS:") for line in lines):
        raise ValueError("ends before its PER-WORD STATS section")


def summarise(out_dir: Path, part: str, tag: str) -> None:
    """``wer-summary-{part}-{tag}.txt`` over every errs file of that part and checkpoint in ``out_dir``."""
    wers, counts = {}, {}
    pat = re.compile(rf"errs-{re.escape(part)}-(.*)-{re.escape(tag)}\.txt$")
    for p in out_dir.glob(f"errs-{part}-*-{tag}.txt"):
        m = pat.match(p.name)
        if m:
            lines = p.read_text().splitlines()
            try:
                wers[m.group(1)] = float(lines[0].split("=")[1])
            except (IndexError, ValueError):
                raise ValueError(f"{p}: no '%WER = ...' first line (damaged? delete it and rerun decoding)") from None
            acc = read_errs_accounting(p, lines)
            if acc["utts_in_part"] is not None:
                counts[m.group(1)] = (acc["utts_scored"], acc["utts_in_part"])
    if wers:
        write_wer_summary(out_dir / f"wer-summary-{part}-{tag}.txt", wers, counts)
