#!/usr/bin/env python3
"""First pass by the CTC recogniser with lattices: 1-best, n-best, word confidences and times.

Reads  {exp_dir}/epoch-*.pt of a whisper_ctc config, the cuts of data.train_parts (transcripts
       for the lexicon and the LM) and of the parts to decode
Writes {lang_dir}/{words.txt,lexicon.txt,HLG.fst} (lang_dir: the BPE model's directory),
       {lm_dir}/G_{order}_gram.arpa,
       {output_dir}/ctc/{part}.jsonl.gz (first-pass records), errs/recogs of the 1-best,
       {output_dir}/ctc/stats-{part}.json and reliability-{part}.png (n-best oracle WER, lattice
       depth, confidence AUC and reliability);
       for every other first-pass system under {output_dir} (or those --align names), word
       confidences and times in its {part}.jsonl.gz (forced alignment of its 1-best against the CTC
       output), the CTC log-likelihood of each of its n-best (ctc_score, for n-best rescoring) and
       its stats likewise. Run again once a later stage writes another system's records (e.g. the
       AR twin's n-best): it aligns what is new and leaves the rest as it is.

Several processes: torchrun --nproc-per-node N ./local/ctc_first_pass.py ... (each decodes a share
of the batches, rank 0 builds the graph and writes every file; the output is one process's)
"""

import argparse
import json
import logging
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="a config with model.arch whisper_ctc")
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--epoch", type=int, help="use epoch-N.pt (default: the config's train.num_epochs)")
    p.add_argument(
        "--avg", type=int, help="average the last AVG epochs up to --epoch (default: the config's train.avg)"
    )
    p.add_argument(
        "--parts",
        nargs="+",
        help="parts to decode (default: data.dev_parts and data.test_parts; n-best rescoring chooses its weights on dev)",
    )
    p.add_argument("--output-dir", type=Path, default=Path("data/firstpass"))
    p.add_argument("--lm-dir", type=Path, default=Path("data/lm"))
    p.add_argument(
        "--align",
        nargs="*",
        metavar="SYSTEM",
        help="first-pass systems whose records get word confidences and CTC scores "
        "(default: every system with records of the part under --output-dir; none: no system)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def load_graph(cfg, lm_dir: Path):
    """HLG of the recipe's BPE model and training transcripts, built once."""
    import kaldifst

    from whisper_llada.data.cuts import load_part_cuts
    from whisper_llada.lattice.graph import build_graph, read_words
    from whisper_llada.utils.stage_record import StageRecord

    lang = Path(cfg.model.tokenizer.path).parent
    hlg = lang / "HLG.fst"
    order = cfg.firstpass.lattice.lm_order
    # Rebuilt when the BPE model or the training transcripts change (the lang stage was redone).
    record = StageRecord(
        lang / "made-from" / "HLG.fst.json",
        [Path(cfg.model.tokenizer.path), *(cfg.data.cuts_path(p) for p in cfg.data.train_parts)],
        {"lm_order": order, "normalizer": str(cfg.data.normalizer)},
        [hlg, lang / "words.txt", lang / "lexicon.txt", lm_dir / f"G_{order}_gram.arpa"],
    )
    if record.check(str(hlg)):
        return kaldifst.StdVectorFst.read(str(hlg)), read_words(lang / "words.txt")
    import sentencepiece as spm

    norm = cfg.data.text_normalizer()
    cuts = load_part_cuts(cfg.data, cfg.data.train_parts, "train", lazy=True)
    texts = [norm(" ".join(s.text for s in c.supervisions)) for c in cuts]
    sp = spm.SentencePieceProcessor(model_file=str(cfg.model.tokenizer.path))
    graph = build_graph(texts, sp, lang, lm_dir, order=order)
    # The graph's words.txt replaces the lang stage's (same words, graph symbols added): not damage.
    StageRecord.amended(lang / "made-from.json", [lang / "words.txt"])
    record.done()
    return graph, read_words(lang / "words.txt")


def main() -> None:
    args = get_parser().parse_args()
    from whisper_llada.utils.dist import run_on_ranks

    run_on_ranks(lambda device: first_passes(args, device), args.device, args.exp_dir / "log" / "log-ctc-first-pass")


def first_passes(args, device: str) -> None:
    from dataclasses import asdict

    from whisper_llada.config.recipe import load_recipe_config
    from whisper_llada.config.registry import CTC
    from whisper_llada.data.pieces import check_window
    from whisper_llada.data.text_norm import get_normalizer
    from whisper_llada.firstpass.ctc_lattice import CTCLatticeFirstPass
    from whisper_llada.firstpass.records import read_records, records_path, write_records
    from whisper_llada.firstpass.whisper_ar import run_first_pass
    from whisper_llada.inference import checkpoint_paths, load_test_part, load_trained_model, part_inputs
    from whisper_llada.utils.dist import barrier, gather, is_main, rank0_decides
    from whisper_llada.utils.stage_record import StageRecord, record_path_for

    cfg = load_recipe_config(args.config, args.overrides)
    if cfg.model.arch_spec.objective != CTC:
        raise SystemExit(f"{args.config}: model.arch is {cfg.model.arch!r}, not a CTC recogniser")
    norm = get_normalizer(cfg.score.normalizer)
    lc = cfg.firstpass.lattice
    model = graph = None
    paths, _ = checkpoint_paths(args.exp_dir, cfg.train, args.epoch, args.avg)
    for part in args.parts or [*cfg.data.dev_parts, *cfg.data.test_parts]:
        out = records_path(args.output_dir, "ctc", part)
        suffix = f"lattice-lm-{lc.lm_order}"
        # Redone when the cuts, the model or the BPE model changed.
        record = StageRecord(
            record_path_for(out),
            [*part_inputs(cfg, part), *paths, Path(cfg.model.tokenizer.path)],
            {"lattice": asdict(lc), "score": asdict(cfg.score), "data": asdict(cfg.data)},
            [out, out.parent / f"errs-{part}-{suffix}.txt", out.parent / f"recogs-{part}-{suffix}.txt"],
            verify=lambda p, out=out: read_records(p) if p == out else p.read_text(),
        )
        # A check may write: rank 0's, followed by all.
        fresh = rank0_decides(lambda record=record, out=out: record.check(str(out)))
        # The other systems' records to align: all again when the CTC output is redone, else those
        # written (or rewritten by their stage) since.
        others = {s: read_records(records_path(args.output_dir, s, part)) for s in aligned_systems(args, part)}
        todo = {s: recs for s, recs in others.items() if not fresh or not is_aligned(recs)}
        if fresh and not todo:
            continue
        if model is None:
            # Rank 0 (re)builds the graph; the others read it once it is whole.
            if is_main():
                graph, words = load_graph(cfg, args.lm_dir)
            barrier()
            if not is_main():
                graph, words = load_graph(cfg, args.lm_dir)
            model = load_trained_model(cfg, paths, device)
            check_window(model.window_seconds, cfg.data.decode_window, "the CTC recogniser's encoder")
        cuts, missing_rows, missing = load_test_part(cfg, part, norm)
        decoder = CTCLatticeFirstPass(model, graph, words, lc, align_to=list(todo.values()))
        records, speed = run_first_pass(decoder, cuts, lc.batch_size, norm, cfg.data.feature_extractor())
        # Each rank aligned the other systems' records of its own cuts: every rank gets them all.
        for recs in todo.values():
            for mine in gather({c: recs[c] for c in decoder.aligned if c in recs}):
                recs.update(mine)
        unaligned = sum(gather(decoder.unaligned))
        if not is_main():
            barrier()
            continue
        refs = {c.id: norm(" ".join(s.text for s in c.supervisions)) for c in cuts}
        systems = []
        if not fresh:  # an up-to-date CTC output is not rewritten: later stages read it
            write_ctc_output(cfg, part, out, suffix, records, refs, missing_rows, missing, speed)
            systems.append(("ctc", {r["id"]: r for r in records}))
        if unaligned:
            logging.warning("%s: %d records could not be aligned (conf 0)", part, unaligned)
        for system, recs in todo.items():
            path = records_path(args.output_dir, system, part)
            write_records(path, recs.values())
            StageRecord.amended(record_path_for(path), [path])  # its stage must not think it damaged
            systems.append((system, recs))
        for system, recs in systems:
            write_stats(args.output_dir / system, system, part, recs, refs, speed if system == "ctc" else None)
        if not fresh:
            record.done()
        barrier()


def write_ctc_output(cfg, part: str, out: Path, suffix: str, records, refs, missing_rows, missing, speed) -> None:
    """The CTC first pass's records of a part and the WER of their 1-best (errs, recogs)."""
    from whisper_llada.firstpass.records import write_records
    from whisper_llada.scoring.wer import write_results

    lc = cfg.firstpass.lattice
    results = [(r["id"], refs[r["id"]].split(), r["text"].split()) for r in records] + missing_rows
    for cut_id in sorted(set(refs) - {r["id"] for r in records}):  # input that could not be loaded
        results.append((cut_id, refs[cut_id].split(), []))
        missing.append((cut_id, "no first-pass output: its features could not be loaded (see the log)"))
    setting = {
        "lm_order": lc.lm_order,
        "beam": lc.beam,
        "lattice_beam": lc.lattice_beam,
        "lm_scale": lc.lm_scale,
    }
    header = f"Test: {part}\nSetting: {json.dumps(setting)}\nSpeed: {json.dumps(speed)}"
    wer = write_results(out.parent, part, suffix, results, cfg.score.normalizer, cfg.score.sclite_mode, header, missing)
    write_records(out, records)
    logging.info("%s: %d records, 1-best WER %.2f%%, RTF %s", out, len(records), wer, speed["rtf"])


def write_stats(system_dir: Path, system: str, part: str, recs: dict, refs: dict, speed) -> None:
    """A first-pass system's statistics of a part (n-best oracle WER, lattice depth, confidence AUC
    and reliability) over its whole cuts: ``stats-{part}.json`` and ``reliability-{part}.png``."""
    from whisper_llada.data.pieces import is_piece
    from whisper_llada.lattice.stats import first_pass_stats, plot_reliability
    from whisper_llada.utils.checkpoint_io import atomic_write_text

    # A long cut's pieces have no references of their own: the statistics are of whole cuts.
    whole = {c: r for c, r in refs.items() if not is_piece(c)}
    stats = first_pass_stats({c: r for c, r in recs.items() if c in whole}, whole)
    if speed is not None:
        stats["speed"] = speed
    atomic_write_text(system_dir / f"stats-{part}.json", json.dumps(stats, indent=2) + "\n")
    plot_reliability(stats, system_dir / f"reliability-{part}.png", f"{system} on {part}")
    if not stats["utterances"]:
        logging.info("%s %s: every cut decoded in pieces; its statistics cover whole cuts only", system, part)
        return
    logging.info(
        "%s %s: WER %.2f%% over %d whole cuts, n-best oracle %.2f%%, confidence AUC %s%s",
        system,
        part,
        stats["wer"],
        stats["utterances"],
        stats["nbest_oracle_wer"],
        f"{stats['confidence_auc']:.3f}" if "confidence_auc" in stats else "-",
        f", lattice depth {stats['lattice_depth']:.1f}" if "lattice_depth" in stats else "",
    )


def aligned_systems(args, part: str) -> list[str]:
    """The first-pass systems whose records of ``part`` the CTC output aligns: --align's, else every
    system directory under --output-dir but the CTC recogniser's own that holds them."""
    from whisper_llada.firstpass.records import records_path

    if args.align is not None:
        return list(args.align)
    root = args.output_dir
    found = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    return [s for s in found if s != "ctc" and records_path(root, s, part).is_file()]


def is_aligned(records: dict) -> bool:
    """Every record has word confidences and every hypothesis of its n-best a CTC score."""
    return all("words" in r and all("ctc_score" in h for h in r.get("nbest", [])) for r in records.values())


if __name__ == "__main__":
    main()
