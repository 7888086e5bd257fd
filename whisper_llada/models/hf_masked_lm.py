"""A Hugging Face masked LM (``AutoModelForMaskedLM``: BERT, RoBERTa, ModernBERT, ...) as the
masked-diffusion LM of arch ``whisper_hf_mlm``: the class, loss and samplers are Whisper-LLaDA's.

It reads ``[prompt][audio tokens][response]`` through ``inputs_embeds`` and keeps no prefix cache, so
the recomputing ``Denoiser`` serves training, decoding and deliberation. Tests build it from a config.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn


class HFMaskedLM(nn.Module):
    """An ``AutoModelForMaskedLM`` that takes what the ``Denoiser`` gives an LM: ``inputs_embeds``, a
    key-padding ``attention_mask``, optional ``position_ids`` and ``logits_to_keep``.

    Position ids are numbered per row over its real positions (0, 1, ... after any left padding):
    these models add absolute position embeddings (or rotate by absolute position), and rows of a
    padded batch must read as each row alone. Token types are all 0 (one segment)."""

    def __init__(self, mlm: nn.Module):
        super().__init__()
        self.mlm = mlm
        self.config = mlm.config  # what peft reads when it wraps this module
        params = inspect.signature(mlm.forward).parameters
        if "position_ids" not in params or "inputs_embeds" not in params:
            raise ValueError(
                f"{type(mlm).__name__} takes no position_ids or inputs_embeds: the rows of a left-padded "
                "batch cannot be placed at their own positions"
            )
        self._token_types = "token_type_ids" in params
        # RoBERTa-style embeddings count positions from padding_idx + 1.
        pe = getattr(getattr(mlm.base_model, "embeddings", None), "position_embeddings", None)
        self.position_offset = pe.padding_idx + 1 if getattr(pe, "padding_idx", None) is not None else 0
        self.max_positions = getattr(mlm.config, "max_position_embeddings", None)

    def get_input_embeddings(self) -> nn.Module:
        return self.mlm.get_input_embeddings()

    def gradient_checkpointing_enable(self, **kw) -> None:
        self.mlm.gradient_checkpointing_enable(**kw)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask=None, position_ids=None, logits_to_keep: int = 0):
        from transformers.modeling_outputs import MaskedLMOutput

        B, T = inputs_embeds.shape[:2]
        mask = (
            torch.ones(B, T, dtype=torch.bool, device=inputs_embeds.device)
            if attention_mask is None
            else attention_mask.to(torch.bool)
        )
        if position_ids is None:
            position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
        # Every position is below T (the longest row), also explicit ones (``positions: aligned``):
        # checked without reading the tensor, which would wait for the device every step.
        if self.max_positions is not None and T + self.position_offset > self.max_positions:
            raise ValueError(
                f"{type(self.mlm).__name__}: a sequence of {T} positions does not fit "
                f"max_position_embeddings {self.max_positions} (prompt + audio tokens + response); "
                "use fewer audio tokens (qformer.trim_to_audio, ctc_compress) or a shorter loss.response_length"
            )
        kw = {"token_type_ids": torch.zeros(B, T, dtype=torch.long, device=mask.device)} if self._token_types else {}
        logits = self.mlm(
            inputs_embeds=inputs_embeds,
            attention_mask=mask.long(),
            position_ids=position_ids + self.position_offset,
            **kw,
        ).logits
        return MaskedLMOutput(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def build_hf_masked_lm(cfg, tokenizer, dtype: torch.dtype) -> HFMaskedLM:
    """From a hub directory (``llm.path``, local files only) or a config (``llm.config`` with
    ``model_type``, e.g. bert, roberta, modernbert; vocabulary and pad id from the tokenizer)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    if not cfg.prefix_attends_response:
        raise ValueError(
            f"model.arch {cfg.arch}: model.prefix_attends_response false is not possible: a Hugging Face "
            "masked LM attends in both directions over the whole sequence, so its prompt and audio "
            "always see the response (leave it true; decoding recomputes every step, cache none)"
        )
    if cfg.llm.path is not None:
        path = Path(cfg.llm.path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json) for model.llm.path")
        return HFMaskedLM(AutoModelForMaskedLM.from_pretrained(str(path), dtype=dtype, local_files_only=True))
    fields = dict(cfg.llm.config)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ValueError(
            "model.llm.config: a Hugging Face masked LM built from a config needs model_type "
            "(e.g. bert, roberta, modernbert)"
        )
    fields = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_id, **fields}
    return HFMaskedLM(AutoModelForMaskedLM.from_config(AutoConfig.for_model(model_type, **fields)).to(dtype))


def hf_masked_lm_shape(width: int, layers: int, heads: int, ffn: int, vocab: int, max_len: int) -> dict:
    """A BERT of that shape."""
    return dict(
        model_type="bert",
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_position_embeddings=max_len,
    )
