"""The built-in decoding strategies: diffusion decoding, diffusion and semi-AR deliberation, n-best
rescoring and autoregressive decoding (the AR twin, optionally writing first-pass records).

Each is found by its ``mode`` (``whisper_llada.decoding.strategy``); no torch is imported here
until a batch is decoded, so that reading a recipe config stays fast.
"""

from __future__ import annotations

import re

from whisper_llada.decoding.strategy import BatchJob, Strategy, register


def _whisper_decoder_twin(arch) -> bool:
    """The Whisper-decoder AR twin: the one autoregressive model with a beam that returns its
    hypotheses (``nbest``) and a candidate scorer (``score_texts``)."""
    return arch.is_autoregressive and arch.llm_family == "whisper_decoder"


class _Diffusion(Strategy):
    """The keys every diffusion strategy shares close its suffix: cache, remasking, temperature."""

    models = "a masked-diffusion model"

    def runs_on(self, arch, cfg) -> bool:
        return arch.is_diffusion

    def suffix(self, cfg) -> str:
        s = self.tag(cfg)
        if cfg.cache == "approximate":
            s += f"-approx-cache-{cfg.cache_refresh}"
        elif cfg.cache == "none":
            s += "-no-cache"
        if cfg.remasking != "low_confidence":
            s += f"-remask-{cfg.remasking}"
        if cfg.temperature:
            s += f"-temp-{cfg.temperature:g}"
        return s


@register
class DiffusionDecoding(_Diffusion):
    """Direct decoding: pure diffusion or semi-AR blocks, or the diffusion beam search."""

    mode = "decoding"
    report_kind = "decoding"
    takes_beams = True

    def validate(self, cfg) -> None:
        if cfg.num_beams > 1:
            self._check_beam(cfg)
        super().validate(cfg)

    def _check_beam(self, cfg) -> None:
        fixed = dict(commit="fixed", remasking="low_confidence", temperature=0.0)
        bad = [f"{k} {getattr(cfg, k)!r}" for k, v in fixed.items() if getattr(cfg, k) != v]
        if cfg.gen_len == "auto" or cfg.steps != cfg.gen_len or cfg.block_length is None:
            bad.append(f"gen_len {cfg.gen_len!r} / steps {cfg.steps} / block_length {cfg.block_length}")
        if cfg.cache == "approximate":
            bad.append("cache approximate")
        if bad:
            raise ValueError(
                "diffusion beam search (num_beams > 1) commits one token a step in semi-AR blocks, "
                "most confident first, exactly: it needs a numeric gen_len, steps = gen_len, a "
                f"block_length, commit fixed, remasking low_confidence, temperature 0; not {', '.join(bad)}"
            )

    def tag(self, cfg) -> str:
        pure = cfg.gen_len == "auto" or cfg.block_length == cfg.gen_len
        kind = "diffusion" if pure else f"semi-ar-block-{cfg.block_length}"
        s = f"{kind}-gen-{cfg.gen_len}-steps-{cfg.steps}"
        if cfg.commit == "threshold":
            s = f"{kind}-gen-{cfg.gen_len}-threshold-{cfg.threshold:g}"
        if cfg.num_beams > 1:
            s += f"-beam-{cfg.num_beams}"
        return s

    def decode_batch(self, model, batch: dict, cfg, job: BatchJob) -> list[str]:
        return model.transcribe(batch, cfg, stats=job.counts, generator=job.generator)

    def fills_fixed_canvas(self, cfg) -> bool:
        return isinstance(cfg.gen_len, int)


class _OnFirstPass(_Diffusion):
    """A strategy on a first pass's records; its suffix names that first pass and the keys of
    the hypothesis's layout."""

    reads_first_pass = True
    shows_eos_pad = True  # whether eos_pad changes what it does (so its suffix names it)

    def first_pass_tail(self, cfg) -> str:
        s = ""
        if cfg.first_pass:
            s += f"-on-{cfg.first_pass}"
        if self.shows_eos_pad and not cfg.eos_pad:
            s += "-no-eos-pad"
        if cfg.gen_len == "auto":
            s += "-len-auto"
        if cfg.commit == "threshold":
            s += f"-threshold-{cfg.threshold:g}"
        return s


class _Deliberation(_OnFirstPass):
    """Deliberation proper: part of the first pass's 1-best re-masked and re-predicted."""

    report_kind = "deliberation"

    def decode_batch(self, model, batch: dict, cfg, job: BatchJob) -> list[str]:
        first = [job.first_pass[c] for c in batch["cut_ids"]]
        conf = None
        if cfg.masking_type == "first_pass":
            conf = [token_confidences(model.tokenizer, r) for r in first]
        texts = [r["text"] for r in first]
        return model.deliberate(batch, texts, cfg, confidences=conf, stats=job.counts, generator=job.generator)


@register
class DiffusionDeliberation(_Deliberation):
    """``int(L * mask_ratio)`` tokens of the 1-best re-masked, by ``masking_type``, and re-predicted."""

    mode = "diffusion_deliberation"

    def tag(self, cfg) -> str:
        s = f"delib-{cfg.masking_type}-ratio-{cfg.mask_ratio:g}-steps-{cfg.steps}"
        return s + self.first_pass_tail(cfg)


@register
class SemiARDeliberation(_Deliberation):
    """The 1-best re-masked and re-predicted chunk by chunk, left to right."""

    mode = "semi_ar_deliberation"

    def tag(self, cfg) -> str:
        return f"delib-semi-ar-chunks-{cfg.num_chunks}-steps-{cfg.steps}" + self.first_pass_tail(cfg)


@register
class NBestRescoring(_OnFirstPass):
    """The first pass's n-best scored by the model's pseudo-log-likelihood and fused with the first
    pass's scores, the weights chosen on the dev parts."""

    mode = "nbest_rescoring"
    # A cascade on a first pass as deliberation is: the report ranks the two together.
    report_kind = "deliberation"
    tunes_fusion = True
    shows_eos_pad = False  # candidates are laid out with len_margin EOS whatever eos_pad says
    models = "a model that scores candidates (a diffusion LM or the Whisper-decoder AR twin)"

    def runs_on(self, arch, cfg) -> bool:
        return arch.is_diffusion or _whisper_decoder_twin(arch)

    def tag(self, cfg) -> str:
        from whisper_llada.decoding.settings import FUSE

        s = f"rescore-nbest-{cfg.nbest or 'all'}-pll-{cfg.pll_groups}"
        if set(cfg.fuse) != set(FUSE):
            s += "-fuse-" + "-".join(f for f in FUSE if f in cfg.fuse)
        return s + self.first_pass_tail(cfg)

    def decode_batch(self, model, batch: dict, cfg, job: BatchJob) -> list[str]:
        from whisper_llada.decoding.fusion import Fusion

        return rescore_batch(
            model, batch, job.first_pass, cfg, job.norm, job.fusion or Fusion(), job.candidates, job.counts
        )


@register
class AutoregressiveDecoding(Strategy):
    """The AR twin's greedy or beam search; with ``as_first_pass`` each cut's beam also goes to
    first-pass records (the paper's cascade: another model repairs or rescores them)."""

    mode = "autoregressive"
    report_kind = "autoregressive"
    takes_beams = True
    writes_first_pass = True
    models = "an autoregressive model"

    def validate(self, cfg) -> None:
        if cfg.gen_len == "auto":
            raise ValueError("gen_len auto is for diffusion decoding and deliberation; give the AR twin a number")
        super().validate(cfg)
        name = cfg.as_first_pass
        if name is not None and (not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name == "ctc"):
            raise ValueError(
                f"as_first_pass {name!r}: expected a first-pass system name (letters, "
                "digits, _ and -; not ctc, the CTC recogniser's)"
            )

    def runs_on(self, arch, cfg) -> bool:
        return _whisper_decoder_twin(arch) if cfg.as_first_pass else arch.is_autoregressive

    def needs(self, cfg) -> str:
        if cfg.as_first_pass:
            return "a beam search that returns its hypotheses (the Whisper-decoder AR twin) for as_first_pass"
        return self.models

    def tag(self, cfg) -> str:
        return f"greedy-len-{cfg.gen_len}" if cfg.num_beams == 1 else f"beam-{cfg.num_beams}-len-{cfg.gen_len}"

    def decode_batch(self, model, batch: dict, cfg, job: BatchJob) -> list[str]:
        if cfg.as_first_pass:
            return beam_records(model, batch, cfg, job.norm, job.records, job.counts)
        return model.transcribe(batch, cfg, stats=job.counts, generator=job.generator)

    def fills_fixed_canvas(self, cfg) -> bool:
        return cfg.as_first_pass is None and isinstance(cfg.gen_len, int)

    def writes_records(self, cfg) -> bool:
        return cfg.as_first_pass is not None


def nbest_of(record: dict, n: int | None = None) -> list[dict]:
    """A first-pass record's first ``n`` distinct candidates ({"text", "score"}), best first; a
    record without an n-best is its 1-best with score 0."""
    out, seen = [], set()
    for h in record.get("nbest") or [{"text": record["text"], "score": 0.0}]:
        if h["text"] not in seen:
            seen.add(h["text"])
            out.append(h)
    return out[:n] if n else out


def rescore_batch(model, batch, first_pass, setting, norm, fusion, candidates=None, stats=None) -> list[str]:
    """Each cut's n-best scored by the model (``score_texts``) and the fused best of it."""
    from whisper_llada.decoding.fusion import Candidate

    nbests = [nbest_of(first_pass[c], setting.nbest) for c in batch["cut_ids"]]
    lm = model.score_texts(batch, [[h["text"] for h in nb] for nb in nbests], setting, stats=stats)
    hyps = []
    for cut_id, nb, scores in zip(batch["cut_ids"], nbests, lm):
        cands = [
            Candidate(h["text"], float(h["score"]), s, len(norm(h["text"]).split()), h.get("ctc_score"))
            for h, s in zip(nb, scores)
        ]
        if candidates is not None:
            candidates[cut_id] = cands
        hyps.append(cands[fusion.best(cands)].text)
    return hyps


def beam_records(model, batch, setting, norm, records: list | None, stats=None) -> list[str]:
    """Each cut's 1-best by the model's beam search; its whole beam (normalised texts, their
    log-probabilities, best first) goes to ``records`` as a first-pass record."""
    hyps = []
    for cut_id, beam in zip(batch["cut_ids"], model.nbest(batch, setting, stats)):
        nbest = [{"text": norm(text), "score": round(score, 4)} for text, score in beam]
        hyps.append(nbest[0]["text"])
        if records is not None:
            records.append({"id": cut_id, "text": nbest[0]["text"], "nbest": nbest})
    return hyps


def token_confidences(tokenizer, record: dict) -> list[float]:
    """Per-token confidences from a record's per-word confidences (each token takes its word's)."""
    words = record.get("words")
    if not words:
        raise ValueError(
            f"first-pass record {record['id']} has no word confidences (masking_type 'first_pass' needs them)"
        )
    # Each word takes the tokens its prefix adds: encoding a word alone may tokenise it otherwise
    # (Whisper's tokenizer sentence-cases what it encodes, so a lone word starts with a capital).
    out: list[float] = []
    done = 0
    for i, w in enumerate(words):
        n = len(tokenizer.encode(" ".join(x["word"] for x in words[: i + 1])))
        out += [float(w["conf"])] * max(n - done, 0)
        done = max(n, done)
    if len(out) != len(tokenizer.encode(record["text"])):
        raise ValueError(f"first-pass record {record['id']}: its words do not tokenise like its text")
    return out
