"""Masked diffusion: the training objective and the decoding and deliberation samplers.

The names below load on first use (PEP 562), so that ``decoding.settings`` imports without torch.
"""

from whisper_llada.utils.lazy_names import lazy_names

_WHERE = {
    "generate_beam": "beam",
    "CommitRule": "commit",
    "Denoiser": "denoiser",
    "PrefixCacheDenoiser": "denoiser",
    "PrefixState": "denoiser",
    "CrossAttentionDenoiser": "cross_attention",
    "BlockCacheDenoiser": "cross_attention",
    "make_denoiser": "denoiser",
    "deliberate": "sampling",
    "generate": "sampling",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_names(__name__, _WHERE)
