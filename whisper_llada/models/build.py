"""Builds the model a ``ModelConfig`` names (``model.arch``, looked up in ``config.registry``).

Loads (or makes) the encoder, tokenizer and LLM, attaches LoRA through ``peft`` and sets
which parameters train. The LLM builders of native LLaDA and of the Llama twin live here.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from whisper_llada.config.model import LoRAConfig, ModelConfig
from whisper_llada.data.tokenizer import TextTokenizer, build_tokenizer
from whisper_llada.models.qformer import WindowQFormer
from whisper_llada.models.speech_llm import SpeechLLM
from whisper_llada.models.whisper_encoder import load_whisper_encoder

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def apply_lora(llm: nn.Module, cfg: LoRAConfig) -> nn.Module:
    """Wrap ``llm`` with LoRA adapters on ``cfg.targets``; only adapter weights stay trainable."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets), bias="none"
    )
    return get_peft_model(llm, lora)


def llada_config(cfg: ModelConfig, tokenizer: TextTokenizer):
    """The LLaDAConfig of a random LLaDA: ``model.llm.config`` over the tokenizer's ids."""
    from whisper_llada.models.llada import LLaDAConfig

    fields = {
        "vocab_size": tokenizer.vocab_size,
        "mask_token_id": tokenizer.mask_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        **cfg.llm.config,
    }
    return LLaDAConfig.from_dict(fields, source="model.llm.config")


def build_llada(cfg: ModelConfig, tokenizer: TextTokenizer, dtype: torch.dtype) -> nn.Module:
    from whisper_llada.models.llada import LLaDAModelLM

    if cfg.llm.path is not None:
        return LLaDAModelLM.from_pretrained(cfg.llm.path, dtype=dtype)
    return LLaDAModelLM.from_config(llada_config(cfg, tokenizer), dtype=dtype)


def build_llama(cfg: ModelConfig, tokenizer: TextTokenizer, dtype: torch.dtype) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.llm.path is not None:
        return LlamaForCausalLM.from_pretrained(cfg.llm.path, dtype=dtype, local_files_only=True)
    fields = {
        "vocab_size": tokenizer.vocab_size,
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "tie_word_embeddings": False,
        **cfg.llm.config,
    }
    return LlamaForCausalLM(LlamaConfig(**fields)).to(dtype)


def llada_shape(width: int, layers: int, heads: int, ffn: int, vocab: int, max_len: int) -> dict:
    return dict(
        d_model=width,
        n_layers=layers,
        n_heads=heads,
        mlp_hidden_size=ffn,
        vocab_size=vocab,
        max_sequence_length=max_len,
    )


def llama_shape(width: int, layers: int, heads: int, ffn: int, vocab: int, max_len: int) -> dict:
    return dict(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_position_embeddings=max_len,
    )


def llm_width(llm: nn.Module) -> int:
    return llm.get_input_embeddings().weight.shape[1]


def build_model(cfg: ModelConfig, tokenizer: TextTokenizer | None = None) -> SpeechLLM:
    """Same config, same weights: random parts are seeded with ``cfg.init_seed``."""
    tokenizer = tokenizer or build_tokenizer(cfg.tokenizer)
    if cfg.llm.dtype not in DTYPES:
        raise ValueError(f"llm.dtype {cfg.llm.dtype!r}: expected one of {sorted(DTYPES)}")
    dtype = DTYPES[cfg.llm.dtype]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = _build(cfg, tokenizer, dtype)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("built %s: %.2fM parameters, %.2fM trainable", cfg.arch, n_all / 1e6, n_train / 1e6)
    return model


def _build(cfg: ModelConfig, tokenizer: TextTokenizer, dtype: torch.dtype) -> SpeechLLM:
    arch = cfg.arch_spec
    encoder = load_whisper_encoder(cfg.whisper.path, cfg.whisper.config)
    if not arch.reads_llm:
        return arch.model_cls()(cfg, encoder, tokenizer)
    llm = arch.build_llm(cfg, tokenizer, dtype)
    if llm.get_input_embeddings().weight.shape[0] < tokenizer.vocab_size:
        where = cfg.llm.path or "model.llm.config"
        raise ValueError(
            f"{where}: LLM embeds {llm.get_input_embeddings().weight.shape[0]} ids but the tokenizer uses {tokenizer.vocab_size}"
        )
    if cfg.llm.gradient_checkpointing:
        llm.gradient_checkpointing_enable()
    if cfg.llm.train == "lora":
        llm.requires_grad_(False)
        llm = apply_lora(llm, cfg.lora)
    else:
        llm.requires_grad_(cfg.llm.train == "full")
    for module in getattr(llm, "pretrained_only", lambda: [])():
        module.requires_grad_(False)
    if cfg.llm.freeze_embeddings:
        llm.get_input_embeddings().requires_grad_(False)
    # A cross-attention LLM reads the encoder's frames itself: no Q-Former.
    qformer = WindowQFormer(cfg.qformer, encoder.config.d_model, llm_width(llm)) if arch.layout == "prefix" else None
    model = arch.model_cls()(cfg, encoder, qformer, llm, tokenizer)
    if cfg.llm.block_size is not None and (cfg.llm.block_size < 1 or not getattr(model, "block_diffusion_ok", False)):
        raise ValueError(
            f"model.llm.block_size {cfg.llm.block_size}: block diffusion needs a positive size and an arch "
            f"that builds it (whisper_decoder_mdm), not {cfg.arch}"
        )
    if not 0.0 <= cfg.loss.suffix_mask_prob <= 1.0 or (cfg.loss.suffix_mask_prob and cfg.llm.block_size is None):
        raise ValueError(
            f"model.loss.suffix_mask_prob {cfg.loss.suffix_mask_prob}: a share (0..1) of rows masked by "
            "block suffixes, for block diffusion (model.llm.block_size)"
        )
    return model
