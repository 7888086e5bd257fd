"""Models: native LLaDA, the window-level Q-Former, Whisper-LLaDA and its autoregressive twin.

Import from here; heavy dependencies (transformers, peft) load only when a model is built.
"""

from whisper_llada.models.build import build_model
from whisper_llada.models.config import ModelConfig
from whisper_llada.models.llada import LLaDAConfig, LLaDAModelLM
from whisper_llada.models.qformer import QFormerConfig, WindowQFormer

__all__ = ["build_model", "ModelConfig", "LLaDAConfig", "LLaDAModelLM", "QFormerConfig", "WindowQFormer"]
