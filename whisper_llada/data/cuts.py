"""The one way every stage reads a recipe's cuts: the part's manifest checked (present, features of
the configured size, or audio for features on the fly), read lazily, filtered with counts;
training, decoding and the first passes use it.

Lazily means one cut at a time from the file: a 281,241-cut manifest (LibriSpeech 960 h) no longer
has to sit in memory in every process before the first batch (tools/measure_cut_loading.py).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError, gzip.BadGzipFile)


class _NamedErrors:
    """Iterates a lazy manifest; a truncated or damaged file fails with its name and what to do."""

    def __init__(self, source, path: Path):
        self.source, self.path = source, path

    def __iter__(self):
        try:
            yield from self.source
        except _READ_ERRORS as e:
            from whisper_llada.data.manifests_io import manifest_error

            raise manifest_error(self.path, e, "features") from e


def check_part(data, part: str) -> Path:
    """The cut manifest of ``part``, which must exist and hold features of ``data.num_mel_bins`` bins,
    or audio alone with ``data.features: on_the_fly`` (only its first cut is read)."""
    from lhotse import load_manifest_lazy

    path = data.cuts_path(part)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: cut manifest of part {part!r} not found (run the features stage "
            f"for it, or fix data.prefix / the part names in the config)"
        )
    first = next(iter(_NamedErrors(load_manifest_lazy(path), path)), None)
    if first is None:
        raise ValueError(f"{path}: no cuts in part {part!r} (see the features stage's log and dropped-cut list)")
    feats = getattr(first, "features", None)
    # The cuts must be those the features stage makes for data.features: its rerun makes them so.
    if data.features == "on_the_fly" and (feats is not None or not first.has_recording):
        what = "stored features" if feats is not None else "no recording"
        raise ValueError(
            f"{path}: cut {first.id} has {what}, but data.features is on_the_fly (features computed from "
            "the audio); rerun the features stage with this config"
        )
    if data.features == "stored" and feats is None:
        raise ValueError(
            f"{path}: cut {first.id} has no stored features (made for data.features: on_the_fly?), but "
            "data.features is stored; rerun the features stage with this config"
        )
    if feats is not None and feats.num_features != data.num_mel_bins:
        raise ValueError(
            f"{path}: features of {feats.num_features} mel bins, but data.num_mel_bins is "
            f"{data.num_mel_bins}; delete {data.manifest_dir} and rerun the features stage"
        )
    return path


def load_part_cuts(
    data,
    parts: Sequence[str],
    where: str,
    *,
    lazy: bool = False,
    tokenizer=None,
    max_tokens: int | None = None,
    min_duration: float = 0.0,
    max_duration: float | None = None,
    need_text: bool = True,
    strict: bool | None = None,
    dropped: list | None = None,
    dropped_file=None,
):
    """The usable cuts of ``parts`` (several are interleaved with lhotse's mux), filtered by
    ``filter_cuts`` with the config's text normaliser.

    ``lazy``: a CutSet read and filtered as it is iterated (training); otherwise in memory (test
    parts, which are decoded several times). ``data`` is the recipe's DataConfig.
    """
    from lhotse import CutSet, load_manifest_lazy

    from whisper_llada.data.dataset import filter_cuts

    sets = []
    for part in parts:
        path = check_part(data, part)
        sets.append(CutSet(_NamedErrors(load_manifest_lazy(path), path)))
    if not sets:
        raise ValueError(f"{where}: no parts given")
    cuts = CutSet.mux(*sets) if len(sets) > 1 else sets[0]
    return filter_cuts(
        cuts,
        tokenizer=tokenizer,
        max_tokens=max_tokens,
        normalize=data.text_normalizer(),
        min_duration=min_duration,
        **({} if max_duration is None else {"max_duration": max_duration}),
        need_text=need_text,
        where=where,
        strict=data.strict if strict is None else strict,
        dropped=dropped,
        dropped_file=dropped_file,
        lazy=lazy,
    )
