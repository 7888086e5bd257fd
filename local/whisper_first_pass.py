#!/usr/bin/env python3
"""First pass by Whisper's own autoregressive decoding (beam search, n-best with scores).

Reads  {manifest_dir}/{prefix}_cuts_{part}.jsonl.gz and the config's firstpass.whisper model
Writes {output_dir}/whisper/{part}.jsonl.gz (first-pass records) and errs/recogs of the 1-best

Several processes: torchrun --nproc-per-node N ./local/whisper_first_pass.py ... (each decodes a
share of the batches, rank 0 writes every file; the records are those of one process)
"""

import argparse
import json
import logging
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument(
        "--parts",
        nargs="+",
        help="default: data.dev_parts and data.test_parts (n-best rescoring chooses its weights on dev)",
    )
    p.add_argument("--output-dir", type=Path, default=Path("data/firstpass"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.utils.dist import run_on_ranks

    run_on_ranks(lambda device: first_passes(args, device), args.device)


def first_passes(args, device: str) -> None:
    from dataclasses import asdict

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.data.pieces import check_window
    from whisper_llada.data.text_norm import get_normalizer
    from whisper_llada.data.tokenizer import build_tokenizer
    from whisper_llada.firstpass.records import read_records, records_path, write_records
    from whisper_llada.firstpass.whisper_ar import make_first_pass, run_first_pass
    from whisper_llada.inference import load_test_part, part_inputs
    from whisper_llada.scoring.wer import write_results
    from whisper_llada.utils.dist import barrier, is_main, rank0_decides
    from whisper_llada.utils.stage_record import StageRecord, record_path_for

    cfg = load_recipe_config(args.config, args.overrides)
    norm = get_normalizer(cfg.score.normalizer)
    decoder = None
    for part in args.parts or [*cfg.data.dev_parts, *cfg.data.test_parts]:
        out = records_path(args.output_dir, "whisper", part)
        suffix = f"beam-{cfg.firstpass.num_beams}"
        # Redone when the cuts or the first pass's options changed, or an output is damaged.
        options = {
            "firstpass": asdict(cfg.firstpass),
            "score": asdict(cfg.score),
            "tokenizer": asdict(cfg.model.tokenizer),
            "decode_window": cfg.data.decode_window,
        }
        outputs = [out.parent / f"recogs-{part}-{suffix}.txt", out.parent / f"errs-{part}-{suffix}.txt", out]
        record = StageRecord(
            record_path_for(out),
            part_inputs(cfg, part),
            options,
            outputs,
            verify=lambda p, out=out: read_records(p) if p == out else p.read_text(),
        )
        # A check may write: rank 0's, followed by all.
        if rank0_decides(lambda record=record, out=out: record.check(str(out))):
            continue
        if decoder is None:
            tok = build_tokenizer(cfg.model.tokenizer) if cfg.firstpass.whisper.get("config") else None
            decoder = make_first_pass(cfg.firstpass, tok, device)
            check_window(decoder.frames / 100, cfg.data.decode_window, "the Whisper first pass")
        cuts, missing_rows, missing = load_test_part(cfg, part, norm)
        records, speed = run_first_pass(decoder, cuts, cfg.firstpass.batch_size, norm, cfg.data.feature_extractor())
        if not is_main():
            barrier()
            continue
        refs = {c.id: norm(" ".join(s.text for s in c.supervisions)) for c in cuts}
        results = [(r["id"], refs[r["id"]].split(), r["text"].split()) for r in records] + missing_rows
        got = {r["id"] for r in records}
        for cut_id in sorted(set(refs) - got):  # input that could not be loaded (named in the log above)
            results.append((cut_id, refs[cut_id].split(), []))
            missing.append((cut_id, "no first-pass output: its features could not be loaded (see the log)"))
        setting = {"num_beams": cfg.firstpass.num_beams, "pad_seconds": cfg.firstpass.pad_seconds}
        header = f"Test: {part}\nSetting: {json.dumps(setting)}\nSpeed: {json.dumps(speed)}"
        wer = write_results(
            out.parent, part, suffix, results, cfg.score.normalizer, cfg.score.sclite_mode, header, missing
        )
        write_records(out, records)
        record.done()
        logging.info("%s: %d records, 1-best WER %.2f%%", out, len(records), wer)
        barrier()


if __name__ == "__main__":
    main()
