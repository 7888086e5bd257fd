"""Text tokenizers behind one interface: LLaDA's Hugging Face tokenizer or a sentencepiece BPE.

Both give ``encode``/``decode``, the mask, EOS and pad ids, and the chat-prompt ids that
precede the audio tokens.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TokenizerConfig:
    type: str = "sentencepiece"  # "sentencepiece", "hf" or "whisper" (a Whisper directory's own BPE)
    path: str | None = None  # .model file, or a Hugging Face tokenizer directory
    mask_token: str = "<|mdm_mask|>"  # hf only: names of LLaDA's special tokens
    eos_token: str = "<|endoftext|>"
    pad_token: str | None = None  # default: the EOS token, as LLaDA pads with EOS


class TextTokenizer(ABC):
    mask_id: int
    eos_id: int
    pad_id: int
    vocab_size: int  # ids the model must embed

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` with EOS, mask and other special tokens removed wherever they stand.

        Decoding fills everything after the first EOS with EOS, so this equals cutting at
        it; a deliberated hypothesis keeps its words on both sides of a stray EOS, as the
        paper's ``skip_special_tokens`` decoding does.
        """

    @abstractmethod
    def prompt_ids(self, task: str) -> list[int]:
        """Chat prompt for a user turn ``task``, ending with the assistant header."""


class SentencePieceTokenizer(TextTokenizer):
    """A sentencepiece model plus three ids we append after its vocabulary: mask, user, assistant."""

    def __init__(self, model_file: str | Path):
        import sentencepiece as spm

        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file}: sentencepiece model not found")
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        n = self.sp.get_piece_size()
        if self.sp.eos_id() < 0:
            raise ValueError(f"{model_file}: the sentencepiece model has no EOS piece (train it with eos_id >= 0)")
        self.num_pieces = n
        self.mask_id, self.user_id, self.assistant_id = n, n + 1, n + 2
        self.eos_id = self.pad_id = self.sp.eos_id()
        self.vocab_size = n + 3

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        drop = {self.eos_id, self.sp.bos_id()}
        ids = [i for i in map(int, ids) if i < self.num_pieces and i not in drop]
        return self.sp.decode(ids)

    def prompt_ids(self, task: str) -> list[int]:
        return [self.user_id, *self.encode(task), self.assistant_id]


class HFChatTokenizer(TextTokenizer):
    """A Hugging Face tokenizer directory: LLaDA's (chat template, ``<|mdm_mask|>``, ``<|endoftext|>``) or a
    masked LM's (``[MASK]``, ``[SEP]``, ``[PAD]`` named in the tokenizer config; no chat template)."""

    def __init__(self, path: str | Path, mask_token: str, eos_token: str, pad_token: str | None = None):
        from transformers import AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: tokenizer directory not found")
        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.path = path
        self.mask_id = self._id(mask_token)
        self.eos_id = self._id(eos_token)
        self.pad_id = self._id(pad_token) if pad_token else self.eos_id
        self.vocab_size = len(self.tok)
        self._special = set(self.tok.all_special_ids) | {self.mask_id, self.eos_id, self.pad_id}

    def _id(self, token: str) -> int:
        i = self.tok.convert_tokens_to_ids(token)
        if i is None or (i == self.tok.unk_token_id and token != self.tok.unk_token):  # Whisper's EOS is its unk
            raise ValueError(f"{self.path}: tokenizer has no token {token!r}")
        return int(i)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([i for i in map(int, ids) if i not in self._special]).strip()

    def prompt_ids(self, task: str) -> list[int]:
        if not getattr(self.tok, "chat_template", None):
            # An encoder-only masked LM (BERT family, arch whisper_hf_mlm) has no chat turns: the task
            # in its own special tokens ([CLS] task [SEP]), as it read text in pretraining.
            return list(self.tok.encode(task, add_special_tokens=True))
        out = self.tok.apply_chat_template(
            [{"role": "user", "content": task}], add_generation_prompt=True, tokenize=True
        )
        if hasattr(out, "keys"):  # transformers may return a BatchEncoding
            out = out["input_ids"]
        return list(out)


def sentence_case(text: str) -> str:
    """An upper-case LibriSpeech transcript in the casing Whisper's LM knows ("I" and its contractions
    kept upper); the scoring normaliser upper-cases again."""
    s = re.sub(r"\bi\b", "I", text.lower())
    return s[:1].upper() + s[1:]


class WhisperTextTokenizer(HFChatTokenizer):
    """Whisper's byte-level BPE (a Whisper model directory's ``tokenizer.json``): transcripts in sentence
    case after a space, as Whisper writes them; the prompt is ``<|startoftranscript|><|notimestamps|>``
    (an English-only model's), whatever the task text."""

    def encode(self, text: str) -> list[int]:
        return super().encode(" " + sentence_case(text.strip()))

    def prompt_ids(self, task: str) -> list[int]:
        return [self._id("<|startoftranscript|>"), self._id("<|notimestamps|>")]


def build_tokenizer(cfg: TokenizerConfig) -> TextTokenizer:
    if cfg.path is None:
        raise ValueError("tokenizer.path is not set")
    if cfg.type == "sentencepiece":
        return SentencePieceTokenizer(cfg.path)
    if cfg.type == "hf":
        return HFChatTokenizer(cfg.path, cfg.mask_token, cfg.eos_token, cfg.pad_token)
    if cfg.type == "whisper":
        return WhisperTextTokenizer(cfg.path, cfg.mask_token, cfg.eos_token, cfg.pad_token)
    raise ValueError(f"unknown tokenizer type {cfg.type!r} (expected 'sentencepiece', 'hf' or 'whisper')")


def train_sentencepiece(
    texts: Sequence[str], model_prefix: str | Path, vocab_size: int, model_type: str = "bpe"
) -> Path:
    """Train a sentencepiece model with ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2 (EOS) and no pad piece."""
    import io

    import sentencepiece as spm

    model_prefix = Path(model_prefix)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        input_sentence_size=10_000_000,
        shuffle_input_sentence=True,
        minloglevel=2,
    )
    from whisper_llada.utils.checkpoint_io import atomic_write_bytes

    return atomic_write_bytes(Path(f"{model_prefix}.model"), proto.getvalue())
