"""Text normalisers applied to references and hypotheses before scoring.

``librispeech``: upper case, punctuation removed (apostrophes kept); ``whisper``: the Whisper
English normaliser from ``transformers`` (as the paper scores), upper-cased afterwards.
"""

from __future__ import annotations

import re
from typing import Callable

_NON_WORD = re.compile(r"[^A-Z0-9' ]+")


def librispeech_normalize(text: str) -> str:
    text = _NON_WORD.sub(" ", text.upper())
    text = re.sub(r"(^| )'+|'+( |$)", " ", text)  # quotes, not apostrophes inside words
    return " ".join(text.split())


def _whisper_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # The British-to-American spelling map ships with Whisper checkpoints, not with
    # transformers; without a checkpoint the normaliser runs without it.
    norm = EnglishTextNormalizer({})
    return lambda text: " ".join(norm(text).upper().split())


NORMALIZERS = {"librispeech": lambda: librispeech_normalize, "whisper": _whisper_normalizer, "none": lambda: str.strip}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; known: {sorted(NORMALIZERS)}")
    return NORMALIZERS[name]()
