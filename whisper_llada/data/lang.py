"""The lang directory: a sentencepiece BPE model over the training transcripts and the word list.

``data/lang_bpe_{N}/``: ``bpe.model``, ``tokens.txt`` (piece id), ``words.txt`` (icefall style:
``<eps> 0`` first, then words, then ``#0 <s> </s>``) and ``transcript_words.txt``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from whisper_llada.data.tokenizer import SentencePieceTokenizer, train_sentencepiece
from whisper_llada.utils.checkpoint_io import atomic_write_text

log = logging.getLogger(__name__)


def prepare_lang(texts: Iterable[str], lang_dir: str | Path, vocab_size: int) -> Path:
    lang_dir = Path(lang_dir)
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
            raise ValueError(f"{lang_dir}: sentencepiece could not train {vocab_size} pieces on {len(texts)} "
                             f"transcripts ({e}); lower the vocabulary size") from e
    sp = SentencePieceTokenizer(model)
    atomic_write_text(lang_dir / "tokens.txt", "".join(f"{sp.sp.id_to_piece(i)} {i}\n" for i in range(sp.num_pieces)))
    log.info("%s: %d words, %d BPE pieces", lang_dir, len(words), sp.num_pieces)
    return model
