"""Masked diffusion: the training objective and the decoding and deliberation samplers.

The names below load on first use (PEP 562), so that ``diffusion.settings`` imports without torch.
"""

from importlib import import_module

_WHERE = {
    "generate_beam": "beam",
    "CommitRule": "commit",
    "Denoiser": "denoiser",
    "PrefixCache": "denoiser",
    "PrefixState": "denoiser",
    "make_denoiser": "denoiser",
    "deliberate": "sampling",
    "generate": "sampling",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
