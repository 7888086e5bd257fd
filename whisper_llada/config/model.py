"""The model section of a recipe config: encoder, Q-Former, LLM, LoRA, tokenizer, loss.

Every field has the paper's value as default where the paper gives one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from whisper_llada.config.registry import CTC, get_arch
from whisper_llada.data.tokenizer import TokenizerConfig

if TYPE_CHECKING:
    import torch


@dataclass
class QFormerConfig:
    num_query: int = 4
    second_per_window: float = 0.333333
    second_stride: float = 0.333333
    num_layers: int = 2
    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    frames_per_second: int = 50  # Whisper encoder output rate
    # Keep only the windows that cover the real audio (plus one); the paper uses all windows.
    trim_to_audio: bool = False
    # Initial std of the projection into the LLM (None: PyTorch's default). Small values keep
    # audio tokens on the scale of an LLM's token embeddings.
    proj_init_std: float | None = None

    @property
    def kernel(self) -> int:
        return max(1, round(self.frames_per_second * self.second_per_window))

    @property
    def stride(self) -> int:
        return max(1, round(self.frames_per_second * self.second_stride))

    def num_windows(self, num_frames: int) -> int:
        if num_frames < self.kernel:
            return 0
        return (num_frames - self.kernel) // self.stride + 1

    def windows_for(self, real_frames: torch.Tensor, total_frames: int) -> torch.Tensor:
        """Number of windows kept per row: all of them, or those covering the audio plus one."""
        import torch

        total = self.num_windows(total_frames)
        if not self.trim_to_audio:
            return torch.full_like(real_frames, total)
        covering = torch.div(real_frames + self.stride - 1, self.stride, rounding_mode="floor") + 1
        return covering.clamp(min=1, max=total)

    def frames_needed(self, real_frames: torch.Tensor, total_frames: int) -> torch.Tensor:
        """Per row, how many leading encoder frames the kept windows read (what a cache must hold)."""
        n_win = self.windows_for(real_frames, total_frames)
        return (n_win - 1) * self.stride + self.kernel


@dataclass
class WhisperEncoderConfig:
    path: str | None = None  # a Hugging Face Whisper directory (config.json + weights)
    config: dict | None = None  # WhisperConfig fields for a randomly initialised encoder (tests)
    # full: every utterance padded to Whisper's 30 s window (the paper). audio: only the frames
    # the Q-Former reads, padding masked; several times faster on short utterances, but not
    # what Whisper computed in its own training.
    window: str = "full"
    # Encoder adaptation: the top N layers (and the final layer norm) train with the model; 0 (the
    # paper): all frozen. An encoder cache then holds the output of the layers below them.
    train_layers: int = 0

    def __post_init__(self):
        if self.window not in ("full", "audio"):
            raise ValueError(f"whisper.window {self.window!r}: expected full or audio")
        if self.train_layers < 0:
            raise ValueError(f"whisper.train_layers {self.train_layers}: expected 0 or more")


@dataclass
class LLMConfig:
    path: str | None = None  # a hub directory (LLaDA: config.json + safetensors)
    config: dict | None = None  # fields for an LLM built from scratch (LLaDA or Llama config)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    train: str = "lora"  # lora (adapters only) | full | frozen
    # The token embeddings (and an output layer tied to them) stay as pretrained: a small corpus
    # cannot improve on them for words it never says, and they are the costliest gradient when the
    # vocabulary is large (Whisper's 51,865 ids are two thirds of its decoder).
    freeze_embeddings: bool = False
    gradient_checkpointing: bool = False
    # whisper_decoder_mdm: block diffusion. The response attends in both directions within blocks
    # of this many tokens and causally across them (training sees each block noised against the
    # clean blocks before it, as semi-AR decoding with blocks of this size meets it). None: every
    # position attends to every other (the paper's full bidirectional attention).
    block_size: int | None = None


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    targets: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj"])


@dataclass
class LossConfig:
    weighting: str = "plain"  # plain (the paper) | llada (1/p weighted, length normalised)
    eps: float = 1e-3
    response_length: int = 128  # the response block is padded with EOS to this many tokens
    # None: every response is padded to response_length. k: only to the batch's longest
    # transcript plus EOS plus k more EOS, so EOS padding does not dominate the loss.
    batch_eos_padding: int | None = None
    # Weight of an auxiliary CTC loss on the audio tokens (0: off, as the paper). It teaches
    # a from-scratch front end the audio-to-text alignment far sooner than the LLM loss alone.
    ctc_weight: float = 0.0
    # whisper_decoder_mdm: weight of the next-token loss of the same decoder run causally (0: off).
    # It doubles an epoch's cost; measured (egs/espeak_fortunes, dev, semi-AR decoding) 43.02 -> 38.60 with two
    # epochs, 42.22 with one (the cost of two without it): off in the recipes, whose epochs it would double.
    ar_weight: float = 0.0
    # Block diffusion (llm.block_size): the share of rows masked as left-to-right decoding within
    # blocks meets them, each block a random suffix masked (at least one token) after a clean
    # prefix, instead of every token alike (0: off).
    suffix_mask_prob: float = 0.0


@dataclass
class CTCHeadConfig:
    """The CTC first-pass recogniser (arch whisper_ctc): transformer layers on the frozen encoder."""

    num_layers: int = 2
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    frame_stride: int = 2  # average pairs of 50 Hz encoder frames: 25 Hz, plenty for BPE pieces


@dataclass
class ModelConfig:
    arch: str = (
        "whisper_llada"  # a name of config/registry.py: whisper_llada, whisper_llama (the AR twin), whisper_ctc, ...
    )
    prompt: str = "Transcribe the audio:"
    # Parts built from a config (not loaded) are initialised from this seed, so a frozen
    # random encoder or LLM is the same in training and decoding.
    init_seed: int = 0
    whisper: WhisperEncoderConfig = field(default_factory=WhisperEncoderConfig)
    # The Q-Former of the prefix layout. Its window geometry (second_per_window, second_stride,
    # trim_to_audio) serves every arch besides: the encoder frames a model reads with
    # whisper.window audio, and an encoder cache holds (FrozenWhisperFrontEnd.frames_needed).
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ctc: CTCHeadConfig = field(default_factory=CTCHeadConfig)
    # The LLM reads CTC-compressed audio tokens: runs of one greedy label of the auxiliary CTC
    # head averaged, blank runs dropped (needs loss.ctc_weight > 0; off in the paper). About one
    # audio token per text token, in order: a from-scratch LLM learns to read them far sooner.
    ctc_compress: bool = False
    # Position ids of the LLM input. sequential (the paper): [prompt][audio][response], 0..T-1.
    # aligned: [audio][prompt][response] with response token i at the position of audio token i,
    # a monotonic-alignment prior that lets a from-scratch LLM learn to read CTC-compressed audio
    # tokens in a few hundred steps instead of thousands (not for a pretrained LLaDA).
    positions: str = "sequential"
    # Whether prompt and audio positions attend to the response (true: the paper's fully
    # bidirectional LLaDA). false: they never see it, in training as in decoding, so decoding
    # computes their keys and values once per utterance and every step runs only the response
    # (an exact cache; the decode settings' ``cache``).
    prefix_attends_response: bool = True

    @property
    def arch_spec(self):
        """The registry's entry of ``arch`` (its objective, layout and classes)."""
        return get_arch(self.arch)

    def __post_init__(self):
        arch = self.arch_spec
        if self.llm.train not in ("lora", "full", "frozen"):
            raise ValueError(f"llm.train {self.llm.train!r}: expected lora, full or frozen")
        if (self.whisper.path is None) == (self.whisper.config is None):
            raise ValueError("whisper: give exactly one of path and config")
        if arch.objective == CTC:
            if self.tokenizer.type != "sentencepiece":
                raise ValueError(f"{self.arch} reads BPE pieces: tokenizer.type must be sentencepiece")
        elif arch.layout == "cross_attention":
            # Whisper's own decoder is the LM: the whisper: section's directory (or config) holds it.
            if self.llm.path is not None or self.llm.config is not None:
                raise ValueError(f"{self.arch}: its LLM is the decoder of whisper: give llm no path or config")
            if self.ctc_compress or self.loss.ctc_weight > 0:
                raise ValueError(f"{self.arch} reads the encoder's frames: no ctc_compress, loss.ctc_weight 0")
        elif (self.llm.path is None) == (self.llm.config is None):
            raise ValueError("llm: give exactly one of path and config")
        if self.positions not in ("sequential", "aligned"):
            raise ValueError(f"positions {self.positions!r}: expected sequential or aligned")
        if self.ctc_compress and self.loss.ctc_weight <= 0:
            raise ValueError("ctc_compress needs the auxiliary CTC head: set loss.ctc_weight > 0")
