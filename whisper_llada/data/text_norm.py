"""Text normalisers for training targets, the lang directory and scoring.

``librispeech``: upper case, punctuation removed (apostrophes kept, typographic ones made ASCII),
accented letters folded to their base letter (``accents: keep`` keeps them), digits kept or spelled
in words (``digits: spell``); anything else it removes is counted and reported once per part.
``whisper``: the Whisper English normaliser from ``transformers`` (as the paper scores), upper-cased.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable

log = logging.getLogger(__name__)

# Typographic apostrophes and quotes that stand for an apostrophe inside a word (SHE’S).
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u2032\u00b4`"})
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)(ST|ND|RD|TH)?\b")
_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Sentence punctuation is what the normaliser is meant to remove; any other character it removes
# (%, &, $, a letter it cannot fold) changes what was said, so it is counted and reported.
_PLAIN_PUNCTUATION = frozenset('.,;:!?"()[]{}-\u2013\u2014\u2026\u00ab\u00bb\u201c\u201d/')
# Quotes, not apostrophes inside words (SHE'S): an apostrophe with no letter or digit on one side.
_QUOTES = re.compile(r"(?<!\w)'+|'+(?!\w)")
_ASCII_REMOVED = re.compile(r"[^A-Z0-9' ]+")
_ASCII_COUNTED = re.compile(r"[^A-Z0-9'\s.,;:!?\"()\[\]{}/-]")


def _fold_accents(text: str) -> str:
    """É -> E, Ï -> I (the combining marks of the decomposed letter dropped)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")


def _spell_numbers(text: str) -> str:
    try:
        from num2words import num2words
    except ImportError as e:  # pragma: no cover - num2words is a dependency of the package
        raise RuntimeError("digits: spell needs the num2words package") from e

    def spell(m: re.Match) -> str:
        number, suffix = m.group(1), m.group(2)
        value = float(number) if "." in number else int(number)
        return " " + num2words(value, to="ordinal" if suffix and isinstance(value, int) else "cardinal") + " "

    return _NUMBER.sub(spell, text)


class Normalizer:
    """A callable text normaliser that counts what it removes beyond sentence punctuation (a letter it
    cannot fold, a symbol such as % or &) and reports it once per part with examples (``report``)."""

    def __init__(self, name: str = "librispeech", accents: str = "fold", digits: str = "keep"):
        if accents not in ("fold", "keep"):
            raise ValueError(f"accents: {accents!r}; known: fold, keep")
        if digits not in ("keep", "spell"):
            raise ValueError(f"digits: {digits!r}; known: keep, spell")
        self.name, self.accents, self.digits = name, accents, digits
        self.removed: Counter = Counter()
        self.examples: list[str] = []
        self._other = _whisper_normalizer() if name == "whisper" else None

    def __call__(self, text: str) -> str:
        if self.name == "none":
            return text.strip()
        if self._other is not None:
            return self._other(text)
        raw = text
        text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).upper()
        if self.digits == "spell":
            text = _spell_numbers(text).upper()
        if self.accents == "fold" and not text.isascii():
            text = _fold_accents(text)
        if text.isascii():  # the common case, done with two regular expressions
            for c in _ASCII_COUNTED.findall(text):
                self._removed(c, raw)
            text = _QUOTES.sub(" ", _ASCII_REMOVED.sub(" ", text))
            return " ".join(text.split())
        out = []
        for c in text:
            if c in _ASCII_LETTERS or c in "0123456789' " or (self.accents == "keep" and c.isalpha()):
                out.append(c)
                continue
            out.append(" ")
            if not (c in _PLAIN_PUNCTUATION or c.isspace()):
                self._removed(c, raw)
        text = _QUOTES.sub(" ", "".join(out))  # quotes, not apostrophes inside words
        return " ".join(text.split())

    def _removed(self, c: str, raw: str) -> None:
        self.removed[c] += 1
        if len(self.examples) < 3 and raw not in self.examples:
            self.examples.append(raw)

    def report(self, where: str) -> None:
        """Warn (once per call, then start counting afresh) about characters removed since the last report."""
        if self.removed:
            chars = ", ".join(f"{c!r} x{n}" for c, n in self.removed.most_common(10))
            log.warning(
                "%s: the %s normaliser removed %d characters that are not punctuation (%s); e.g. in %s. "
                "Set data.accents / data.digits in the config, or clean the transcripts.",
                where,
                self.name,
                sum(self.removed.values()),
                chars,
                " | ".join(repr(e) for e in self.examples),
            )
        self.removed, self.examples = Counter(), []


def librispeech_normalize(text: str) -> str:
    return Normalizer("librispeech")(text)


def _whisper_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # The British-to-American spelling map ships with Whisper checkpoints, not with
    # transformers; without a checkpoint the normaliser runs without it.
    norm = EnglishTextNormalizer({})
    return lambda text: " ".join(norm(text).upper().split())


NORMALIZERS = ("librispeech", "whisper", "none")


def get_normalizer(name: str, accents: str = "fold", digits: str = "keep") -> Normalizer:
    """``name`` may carry its options, ``librispeech:accents=keep,digits=spell`` (how a recipe's
    scoring normaliser gets the data normaliser's options; see recipe.load_recipe_config)."""
    base, _, spec = name.partition(":")
    if base not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {base!r}; known: {sorted(NORMALIZERS)}")
    opts = {"accents": accents, "digits": digits}
    for item in filter(None, spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in opts:
            raise ValueError(f"normalizer {name!r}: {item!r} is not accents=... or digits=...")
        opts[key] = value
    return Normalizer(base, opts["accents"], opts["digits"])
