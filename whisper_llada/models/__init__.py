"""Models: native LLaDA, the window-level Q-Former, Whisper-LLaDA and its autoregressive twin.

Import from here; the names load on first use (PEP 562), so that ``models.config`` imports without
torch, and heavy dependencies (transformers, peft) load only when a model is built.
"""

from importlib import import_module

_WHERE = {
    "build_model": "build",
    "ModelConfig": "config",
    "QFormerConfig": "config",
    "LLaDAConfig": "llada",
    "LLaDAModelLM": "llada",
    "WindowQFormer": "qformer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
