"""Models with random weights at a named size, for measurements that need a model's work but not its
skill (the decoding benchmark, the memory plan), and the ids-only tokenizers they are built with.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from whisper_llada.config.model import ModelConfig
from whisper_llada.config.registry import get_arch
from whisper_llada.models.build import build_model
from whisper_llada.utils.config import from_dict

SIZES = {
    # name: (LLM d_model, layers, heads, mlp, vocab), (Whisper d_model, layers, heads), Q-Former (hidden, layers, heads)
    "tiny": ((256, 4, 4, 688, 2000), (384, 4, 6), (256, 1, 4)),
    "small": ((768, 12, 12, 2048, 32000), (512, 6, 8), (768, 2, 12)),
    "llada-1b": ((2048, 16, 16, 5632, 126464), (768, 12, 12), (768, 2, 12)),
    # LLaDA-8B and whisper-large-v3 (a GPU's job); the AR twin gets the same shapes
    "llada-8b": ((4096, 32, 32, 12288, 126464), (1280, 32, 20), (768, 2, 12)),
}


class VocabTokenizer:
    """Ids only: the benchmark never turns tokens into text."""

    def __init__(self, vocab: int):
        self.vocab_size = vocab
        self.mask_id, self.eos_id, self.pad_id = vocab - 1, vocab - 2, vocab - 2

    def prompt_ids(self, task: str) -> list[int]:
        return list(range(10, 10 + 12))  # the length of LLaDA's chat prompt around a short task

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError


class WhisperIdsTokenizer(VocabTokenizer):
    """Ids only, Whisper's way: a 3-token prompt (start of transcript, language, no timestamps)."""

    def prompt_ids(self, task: str) -> list[int]:
        return [10, 11, 12]

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


class EndsAt(nn.Module):
    """Wraps a masked-diffusion LM so its response ends with EOS from position ``length`` on.

    Passes the prefix-cache arguments through, so cached and recomputing denoisers see one model.
    """

    def __init__(self, lm: nn.Module, length: int, eos_id: int):
        super().__init__()
        self.lm, self.length, self.eos_id = lm, length, eos_id
        self.supports_prefix_cache = getattr(lm, "supports_prefix_cache", False)

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def forward(
        self,
        inputs_embeds,
        attention_mask=None,
        logits_to_keep: int = 0,
        position_ids=None,
        past_key_values=None,
        past_mask=None,
        keep_kv: int = 0,
        prefix_length: int = 0,
    ):
        out = self.lm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            logits_to_keep=logits_to_keep,
            position_ids=position_ids,
            past_key_values=past_key_values,
            past_mask=past_mask,
            keep_kv=keep_kv,
            prefix_length=prefix_length,
        )
        logits = out.logits
        L = logits_to_keep or logits.shape[1]
        resp = logits[:, -L:]
        # Response positions: the last L; EOS is forbidden before ``length`` and certain after.
        pos = torch.arange(L, device=logits.device)
        resp[..., self.eos_id] = torch.where(pos < self.length, -1e4, 1e4).to(logits.dtype)
        return out


def whisper_shape(size: str, decoder_layers: int, **extra) -> dict:
    """The Whisper config of a size: its encoder, and a decoder of ``decoder_layers`` layers."""
    wd, wl, wh = SIZES[size][1]
    return dict(
        d_model=wd,
        encoder_layers=wl,
        encoder_attention_heads=wh,
        encoder_ffn_dim=4 * wd,
        decoder_layers=decoder_layers,
        decoder_attention_heads=wh,
        decoder_ffn_dim=4 * wd,
        num_mel_bins=128 if wd >= 1280 else 80,
        **extra,
    )


def model_config(size: str, arch: str, tok: VocabTokenizer, trim: bool) -> ModelConfig:
    """``arch`` (a prefix-layout LLM) at ``size``, its Whisper encoder with one decoder layer;
    ``trim``: the encoder and the Q-Former read the audio's frames only."""
    (d, layers, heads, mlp, vocab), _, (qh, ql, qheads) = SIZES[size]
    llm = get_arch(arch).shape_config(d, layers, heads, mlp, vocab, 4096)
    whisper = whisper_shape(size, 1)
    return from_dict(
        ModelConfig,
        {
            # trimmed: the encoder reads the audio's frames only, as the embedded recipe (whisper.window audio)
            "arch": arch,
            "whisper": {"config": whisper, "window": "audio" if trim else "full"},
            "qformer": {
                "hidden_size": qh,
                "num_layers": ql,
                "num_heads": qheads,
                "intermediate_size": 4 * qh,
                "trim_to_audio": trim,
            },
            "llm": {"config": llm, "train": "frozen"},
            "tokenizer": {"path": "-"},
        },
        f"bench:{size}",
    )


def on_device(cfg: ModelConfig, tok, device, dtype) -> nn.Module:
    """The model with its random weights made on ``device`` (a CPU's generator takes minutes at 8B),
    native LLaDA directly at ``dtype``."""
    cfg = replace(cfg, llm=replace(cfg.llm, dtype={torch.bfloat16: "bfloat16"}.get(dtype, cfg.llm.dtype)))
    with torch.device(device):
        return build_model(cfg, tokenizer=tok).to(device, dtype).eval()


def decoder_pair(size: str, device, dtype) -> tuple:
    """Whisper's decoder as block diffusion (blocks of 4) and as its AR twin, random weights at the
    size's Whisper shapes with Whisper's 51,865-id vocabulary; the EOS row of the tied output layer
    is zeroed so that neither ever ends early: each runs its whole forced length."""
    vocab = 51865
    ends = vocab - 2  # the bench tokenizer's EOS (and pad)
    whisper = whisper_shape(
        size,
        SIZES[size][1][1],
        vocab_size=vocab,
        pad_token_id=ends,
        bos_token_id=ends,
        eos_token_id=ends,
        decoder_start_token_id=10,
    )
    tok = WhisperIdsTokenizer(vocab)
    models = []
    for arch, llm in (
        ("whisper_decoder_mdm", {"train": "frozen", "block_size": 4}),
        ("whisper_decoder_ar", {"train": "frozen"}),
    ):
        cfg = from_dict(
            ModelConfig,
            {
                "arch": arch,
                "whisper": {"config": whisper, "window": "audio"},
                "qformer": {"trim_to_audio": True},  # the encoder's frames end with the audio
                "llm": llm,
                "tokenizer": {"path": "-"},
            },
            f"bench:{size}",
        )
        model = on_device(cfg, tok, device, dtype)
        with torch.no_grad():
            model.llm.get_input_embeddings().weight[tok.eos_id] = 0
        models.append(model)
    return tok, *models
