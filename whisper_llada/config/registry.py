"""The table of model architectures: ``model.arch`` -> the class it builds, how its LLM is made and
the objective it trains with. Nothing else in the package compares arch names; it asks here.

Entries name their code as ``"module:attribute"`` and import it only when asked, so that reading
a config never imports ``transformers``. Adding a backend: one module + one entry (docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

# Training objectives. A masked-diffusion model is decoded and deliberated by the samplers of
# ``whisper_llada.diffusion`` through its ``denoiser()``; its response block has a fixed length.
MASKED_DIFFUSION = "masked_diffusion"
NEXT_TOKEN = "next_token"  # the autoregressive twin: greedy / beam search with a KV cache
CTC = "ctc"  # the first-pass recogniser: frame posteriors for the lattice decoder


def _load(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(import_module(module), attr)


@dataclass(frozen=True)
class Arch:
    name: str
    model_class: str  # "module:Class" built as Class(cfg, encoder, qformer, llm, tokenizer), or (cfg, encoder, tokenizer) without LLM
    objective: str  # MASKED_DIFFUSION | NEXT_TOKEN | CTC
    # "module:function" (model_cfg, tokenizer, dtype) -> the LM (``inputs_embeds`` in, ``.logits`` out); None: no LLM
    llm_builder: str | None = None
    # "module:function" (width, layers, heads, ffn, vocab, max_len) -> ``model.llm.config`` of that shape
    # (benchmarks and tests build any arch at a given size through it)
    llm_shape: str | None = None
    llm_family: str | None = (
        None  # which LLM code: "llada" (native, what the memory plan sizes), "llama", "hf_masked_lm"
    )
    about: str = ""
    # "prefix": the LLM reads the Q-Former's audio tokens before the text (the paper);
    # "cross_attention": the LLM attends to the encoder's frames from every layer (no Q-Former).
    layout: str = "prefix"

    @property
    def reads_llm(self) -> bool:
        return self.llm_builder is not None

    @property
    def is_diffusion(self) -> bool:
        return self.objective == MASKED_DIFFUSION

    @property
    def is_autoregressive(self) -> bool:
        return self.objective == NEXT_TOKEN

    def model_cls(self) -> type:
        return _load(self.model_class)

    def build_llm(self, cfg, tokenizer, dtype):
        return _load(self.llm_builder)(cfg, tokenizer, dtype)

    def shape_config(self, width: int, layers: int, heads: int, ffn: int, vocab: int, max_len: int) -> dict:
        if self.llm_shape is None:
            raise ValueError(f"arch {self.name!r} reads no LLM: it has no LLM shape")
        return _load(self.llm_shape)(width, layers, heads, ffn, vocab, max_len)


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch(
            "whisper_llada",
            "whisper_llada.models.whisper_llada:WhisperLLaDA",
            MASKED_DIFFUSION,
            "whisper_llada.models.build:build_llada",
            "whisper_llada.models.build:llada_shape",
            "llada",
            "Whisper-LLaDA (the paper): native LLaDA, bidirectional, prefix cache",
        ),
        Arch(
            "whisper_llama",
            "whisper_llada.models.whisper_llama:WhisperLLaMA",
            NEXT_TOKEN,
            "whisper_llada.models.build:build_llama",
            "whisper_llada.models.build:llama_shape",
            "llama",
            "the autoregressive twin: transformers' Llama, causal",
        ),
        Arch(
            "whisper_ctc",
            "whisper_llada.models.whisper_ctc:WhisperCTC",
            CTC,
            about="the first-pass CTC recogniser: transformer layers on the frozen encoder",
        ),
        Arch(
            "whisper_hf_mlm",
            "whisper_llada.models.whisper_llada:WhisperLLaDA",
            MASKED_DIFFUSION,
            "whisper_llada.models.hf_masked_lm:build_hf_masked_lm",
            "whisper_llada.models.hf_masked_lm:hf_masked_lm_shape",
            "hf_masked_lm",
            "a Hugging Face AutoModelForMaskedLM (BERT, RoBERTa, ModernBERT...) as the diffusion LM",
        ),
        Arch(
            "whisper_decoder_mdm",
            "whisper_llada.models.whisper_decoder:WhisperDecoderMDM",
            MASKED_DIFFUSION,
            "whisper_llada.models.whisper_decoder_lm:build_whisper_decoder_lm",
            llm_family="whisper_decoder",
            about="Whisper's pretrained decoder as a masked-diffusion LM, cross-attending to the encoder",
            layout="cross_attention",
        ),
        Arch(
            "whisper_decoder_ar",
            "whisper_llada.models.whisper_decoder:WhisperDecoderAR",
            NEXT_TOKEN,
            "whisper_llada.models.whisper_decoder_lm:build_whisper_decoder_lm",
            llm_family="whisper_decoder",
            about="the autoregressive twin of whisper_decoder_mdm: Whisper's decoder fine-tuned as it was trained",
            layout="cross_attention",
        ),
    )
}


def get_arch(name: str) -> Arch:
    """The entry of ``name``; an unknown name is an error that lists the known ones."""
    try:
        return ARCHS[name]
    except KeyError:
        known = ", ".join(f"{a.name} ({a.about})" for a in ARCHS.values())
        raise ValueError(f"model.arch {name!r} is not a known architecture; known: {known}") from None


def arch_names(objective: str | None = None) -> list[str]:
    """Names of the registered archs, optionally only those trained with ``objective``."""
    return [a.name for a in ARCHS.values() if objective is None or a.objective == objective]
