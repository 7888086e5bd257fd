"""lhotse dataset and cut filtering for training and decoding.

A batch is ``{"audio", "texts", "cut_ids", "durations"}``; its ``Audio`` (``data.audio``) holds
log-mel features (stored, or computed from the audio by ``extractor``), or Whisper encoder frames
when they were cached, or audio tokens when a frozen front end's outputs are held in ``token_cache``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from whisper_llada.data.audio import Audio

log = logging.getLogger(__name__)

MAX_WHISPER_SECONDS = 30.0


def cut_text(cut) -> str:
    return " ".join(s.text.strip() for s in cut.supervisions if s.text).strip()


class SpeechTextDataset(torch.utils.data.Dataset):
    """Loads each cut on its own so one unreadable cut is reported and dropped, not fatal.

    ``extractor`` (``DataConfig.feature_extractor()``): features are computed from each cut's audio
    with it (``data.features: on_the_fly``) instead of read from storage."""

    def __init__(
        self,
        normalize: Callable[[str], str] | None = None,
        encoder_cache: bool = False,
        strict: bool = False,
        extractor=None,
    ):
        self.normalize = normalize or (lambda s: s)
        self.encoder_cache = encoder_cache
        self.strict = strict
        self.extractor = extractor
        self.token_cache: dict | None = None  # cut id -> audio tokens (n, D), set by the trainer
        # cut id -> why it could not be loaded (file and error): decoding counts these, it does not lose them
        self.failures: dict[str, str] = {}

    @property
    def _what(self) -> str:
        if self.token_cache is not None:
            return "audio tokens"
        if self.encoder_cache:
            return "encoder output"
        return "audio" if self.extractor is not None else "features"

    def _load(self, cut):
        if self.token_cache is not None:
            tokens = self.token_cache[cut.id]
            return tokens, tokens.shape[0]
        if self.encoder_cache:
            return torch.from_numpy(cut.load_custom("encoder_out")), int(cut.custom["encoder_real_frames"])
        if self.extractor is not None:
            feats = torch.from_numpy(cut.compute_features(self.extractor))
        else:
            feats = torch.from_numpy(cut.load_features())
        return feats, feats.shape[0]

    def _storage(self, cut) -> str:
        """The file a cut's input is read from, for messages."""
        try:
            if self.encoder_cache:
                return str(cut.custom["encoder_out"].storage_path)
            if self.extractor is not None:
                from whisper_llada.data.features import audio_file

                return audio_file(cut)
            f = cut.features
            return (
                str(Path(f.storage_path) / f.storage_key) if f.storage_type == "lilcom_files" else str(f.storage_path)
            )
        except Exception:  # a cut without the field: the message still names the cut
            return f"cut {cut.id}"

    def __getitem__(self, cuts) -> dict:
        arrays, lens, kept = [], [], []
        for cut in cuts:
            try:
                a, n = self._load(cut)
            except Exception as e:  # corrupt or missing storage: name the cut and its file, go on
                where = self._storage(cut)
                if self.strict:
                    raise RuntimeError(
                        f"{where}: cut {cut.id}: cannot load its {self._what} (rerun the stage that wrote it)"
                    ) from e
                log.warning("%s: cut %s: cannot load its %s (%r); skipped", where, cut.id, self._what, e)
                self.failures[cut.id] = f"cannot load its {self._what} from {where} ({type(e).__name__}: {e})"
                continue
            arrays.append(a)
            lens.append(n)
            kept.append(cut)
        if not kept:
            return {"cut_ids": [], "texts": [], "durations": []}
        T = max(a.shape[0] for a in arrays)
        x = torch.zeros(len(arrays), T, arrays[0].shape[1], dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            x[i, : a.shape[0]] = a
        out = {
            "cut_ids": [c.id for c in kept],
            "texts": [self.normalize(cut_text(c)) for c in kept],
            "durations": [c.duration for c in kept],
        }
        if self.token_cache is not None:
            out["audio"] = Audio.tokens(x, torch.tensor(lens))
        elif self.encoder_cache:
            out["audio"] = Audio.frames(x.float(), torch.tensor(lens))
        else:
            out["audio"] = Audio.features(x, torch.tensor(lens))
        return out


def move_batch(batch: dict, device) -> dict:
    """The batch with its audio on ``device``."""
    out = dict(batch)
    if "audio" in out:
        out["audio"] = out["audio"].to(device)
    return out


def filter_cuts(
    cuts,
    *,
    max_duration: float = MAX_WHISPER_SECONDS,
    min_duration: float = 0.0,
    tokenizer=None,
    max_tokens: int | None = None,
    normalize: Callable[[str], str] | None = None,
    need_text: bool = True,
    where: str = "",
    strict: bool = False,
    dropped: list | None = None,
    dropped_file=None,
    lazy: bool = False,
):
    """Drop cuts that cannot be used, logging each and a count per reason (``strict``: raise at the
    first). Returns a CutSet in memory, or with ``lazy`` one that filters as it is read (the counts,
    ``dropped`` and ``dropped_file`` are then done when its first full pass ends).

    Each dropped cut is also appended to ``dropped`` and written to ``dropped_file`` (see
    ``whisper_llada.data.dropped``) as {id, reason, text}, so no cut vanishes without a record.
    """
    from lhotse import CutSet

    kw = dict(
        max_duration=max_duration,
        min_duration=min_duration,
        tokenizer=tokenizer,
        max_tokens=max_tokens,
        normalize=normalize,
        need_text=need_text,
        where=where,
        strict=strict,
        dropped=dropped,
        dropped_file=dropped_file,
    )
    if lazy:
        return CutSet(_LazyFiltered(cuts, kw))
    return CutSet.from_cuts(list(_filter_iter(cuts, **kw)))


class _LazyFiltered:
    """An iterable for a lazy CutSet: every pass filters the source again; the first full pass reports."""

    def __init__(self, source, kw: dict):
        self.source, self.kw, self.reported = source, kw, False

    def __iter__(self):
        if self.reported:
            yield from _filter_iter(self.source, **{**self.kw, "dropped": None, "dropped_file": None}, report=False)
            return
        yield from _filter_iter(self.source, **self.kw)
        self.reported = True


def _filter_iter(
    cuts,
    *,
    max_duration,
    min_duration,
    tokenizer,
    max_tokens,
    normalize,
    need_text,
    where,
    strict,
    dropped,
    dropped_file,
    report: bool = True,
):
    from whisper_llada.data.dropped import entry, write_dropped

    normalize = normalize or (lambda s: s)
    reasons: Counter = Counter()
    out: list[dict] = []
    n_kept = 0
    for cut in cuts:
        text = normalize(cut_text(cut))
        why = None
        if cut.duration > max_duration:
            why = f"longer than {max_duration:g} s (the encoder's window)"
        elif cut.duration < min_duration:
            why = f"shorter than {min_duration:g} s"
        elif need_text and not text:
            why = "empty transcript"
        elif tokenizer is not None and max_tokens is not None and len(tokenizer.encode(text)) + 1 > max_tokens:
            why = f"transcript longer than {max_tokens - 1} tokens (response_length {max_tokens} with EOS)"
        if why:
            if strict:
                raise ValueError(f"{where}: cut {cut.id}: {why} (strict mode)")
            reasons[why] += 1
            log.debug("%s: dropping cut %s: %s", where, cut.id, why)
            out.append(entry(cut.id, why, cut_text(cut)))
            continue
        n_kept += 1
        yield cut
    if not report:
        return
    if hasattr(normalize, "report"):
        normalize.report(where)
    total = n_kept + sum(reasons.values())
    if dropped is not None:
        dropped.extend(out)
    if dropped_file is not None:
        write_dropped(dropped_file, out)
    if reasons:
        detail = "; ".join(f"{n} {why}" for why, n in reasons.most_common())
        listed = f" (listed in {dropped_file})" if dropped_file is not None else ""
        log.warning("%s: kept %d of %d cuts; dropped %s%s", where, n_kept, total, detail, listed)
    else:
        log.info("%s: kept all %d cuts", where, total)
