"""The lang directory: a sentencepiece BPE model over the training transcripts and the word list.

``data/lang_bpe_{N}/``: ``bpe.model``, ``tokens.txt`` (piece id), ``words.txt`` (icefall style:
``<eps> 0`` first, then words, then ``#0 <s> </s>``), ``transcript_words.txt`` and, given the
utterances' durations, ``token_rate.json`` (the canvas of ``gen_len: auto`` decoding).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from whisper_llada.data.tokenizer import SentencePieceTokenizer, train_sentencepiece
from whisper_llada.utils.checkpoint_io import atomic_write_text

log = logging.getLogger(__name__)


def token_rate(lengths: Sequence[int], durations: Sequence[float], quantile: float = 0.99) -> dict:
    """Tokens per second of speech that bounds ``quantile`` of the utterances (a canvas sized by it
    truncates at most 1 % of transcripts before its margin), with the mean and maximum beside it."""
    import numpy as np

    rates = np.array([n / d for n, d in zip(lengths, durations) if d > 0], dtype=np.float64)
    if rates.size == 0:
        raise ValueError("no utterance with a positive duration to measure the token rate on")
    return {
        "tokens_per_second": round(float(np.quantile(rates, quantile)), 4),
        "quantile": quantile,
        "mean": round(float(rates.mean()), 4),
        "max": round(float(rates.max()), 4),
        "utterances": int(rates.size),
    }


def prepare_lang(
    texts: Iterable[str], lang_dir: str | Path, vocab_size: int, durations: Sequence[float] | None = None
) -> Path:
    lang_dir = Path(lang_dir)
    texts = list(texts)
    if durations is not None:
        if len(durations) != len(texts):
            raise ValueError(f"{lang_dir}: {len(texts)} transcripts but {len(durations)} durations")
        durations = [d for t, d in zip(texts, durations) if t.strip()]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"{lang_dir}: no training transcripts to build the lang directory from")
    atomic_write_text(lang_dir / "transcript_words.txt", "\n".join(texts) + "\n")
    words = sorted({w for t in texts for w in t.split()})
    table = ["<eps>", *words, "#0", "<s>", "</s>"]
    atomic_write_text(lang_dir / "words.txt", "".join(f"{w} {i}\n" for i, w in enumerate(table)))
    model = lang_dir / "bpe.model"
    if model.is_file():
        log.info("%s already exists - skipping BPE training", model)
    else:
        # A tiny corpus cannot support a large vocabulary; sentencepiece would refuse.
        try:
            train_sentencepiece(texts, lang_dir / "bpe", vocab_size)
        except RuntimeError as e:
            raise ValueError(
                f"{lang_dir}: sentencepiece could not train {vocab_size} pieces on {len(texts)} "
                f"transcripts ({e}); lower the vocabulary size"
            ) from e
    sp = SentencePieceTokenizer(model)
    atomic_write_text(lang_dir / "tokens.txt", "".join(f"{sp.sp.id_to_piece(i)} {i}\n" for i in range(sp.num_pieces)))
    if durations is not None:
        rate = token_rate([len(sp.encode(t)) for t in texts], durations)
        atomic_write_text(lang_dir / "token_rate.json", json.dumps(rate, indent=1) + "\n")
        log.info(
            "%s: %.2f BPE tokens per second bound 99%% of the training transcripts (mean %.2f)",
            lang_dir,
            rate["tokens_per_second"],
            rate["mean"],
        )
    log.info("%s: %d words, %d BPE pieces", lang_dir, len(words), sp.num_pieces)
    return model
