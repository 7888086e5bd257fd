"""lhotse dataset and cut filtering for training and decoding.

A batch is ``{"audio", "texts", "cut_ids", "durations"}``; its ``Audio`` (``data.audio``) holds
log-mel features, or Whisper encoder frames when they were cached, or audio tokens when a
frozen front end's outputs are held in ``token_cache``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Optional

import torch

from whisper_llada.data.audio import Audio

log = logging.getLogger(__name__)

MAX_WHISPER_SECONDS = 30.0


def cut_text(cut) -> str:
    return " ".join(s.text.strip() for s in cut.supervisions if s.text).strip()


class SpeechTextDataset(torch.utils.data.Dataset):
    """Loads each cut on its own so one unreadable cut is reported and dropped, not fatal."""

    def __init__(self, normalize: Optional[Callable[[str], str]] = None, encoder_cache: bool = False,
                 strict: bool = False):
        self.normalize = normalize or (lambda s: s)
        self.encoder_cache = encoder_cache
        self.strict = strict
        self.token_cache: Optional[dict] = None  # cut id -> audio tokens (n, D), set by the trainer

    @property
    def _what(self) -> str:
        return "audio tokens" if self.token_cache is not None else "encoder output" if self.encoder_cache else "features"

    def _load(self, cut):
        if self.token_cache is not None:
            tokens = self.token_cache[cut.id]
            return tokens, tokens.shape[0]
        if self.encoder_cache:
            return torch.from_numpy(cut.load_custom("encoder_out")), int(cut.custom["encoder_real_frames"])
        feats = torch.from_numpy(cut.load_features())
        return feats, feats.shape[0]

    def __getitem__(self, cuts) -> dict:
        arrays, lens, kept = [], [], []
        for cut in cuts:
            try:
                a, n = self._load(cut)
            except Exception as e:  # corrupt or missing storage: name the cut, go on
                if self.strict:
                    raise RuntimeError(f"cut {cut.id}: cannot load its {self._what}") from e
                log.warning("cut %s: cannot load its %s (%r); skipped", cut.id, self._what, e)
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


def filter_cuts(cuts, *, max_duration: float = MAX_WHISPER_SECONDS, min_duration: float = 0.0,
                tokenizer=None, max_tokens: Optional[int] = None, normalize: Optional[Callable[[str], str]] = None,
                need_text: bool = True, where: str = "", strict: bool = False):
    """Drop cuts that cannot be used, logging each and a count per reason (``strict``: raise at the
    first). Returns a CutSet in memory."""
    from lhotse import CutSet

    normalize = normalize or (lambda s: s)
    reasons: Counter = Counter()
    kept = []
    for cut in cuts:
        text = normalize(cut_text(cut))
        why = None
        if cut.duration > max_duration:
            why = f"longer than {max_duration:g} s (Whisper's window)" if max_duration == MAX_WHISPER_SECONDS else f"longer than {max_duration:g} s"
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
            continue
        kept.append(cut)
    total = len(kept) + sum(reasons.values())
    if reasons:
        detail = "; ".join(f"{n} {why}" for why, n in reasons.most_common())
        log.warning("%s: kept %d of %d cuts; dropped %s", where, len(kept), total, detail)
    else:
        log.info("%s: kept all %d cuts", where, total)
    return CutSet.from_cuts(kept)
