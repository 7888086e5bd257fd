"""Models: native LLaDA, the window-level Q-Former, Whisper-LLaDA and its autoregressive twin.

Import from here; the names load on first use (PEP 562), so that heavy dependencies (transformers,
peft) load only when a model is built. Their configuration is ``whisper_llada.config``.
"""

from whisper_llada.utils.lazy_names import lazy_names

_WHERE = {
    "build_model": "build",
    "LLaDAConfig": "llada",
    "LLaDAModelLM": "llada",
    "WindowQFormer": "qformer",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_names(__name__, _WHERE)
