"""Masked diffusion: the training objective and the decoding and deliberation samplers."""

from whisper_llada.diffusion.beam import generate_beam
from whisper_llada.diffusion.commit import CommitRule
from whisper_llada.diffusion.denoiser import Denoiser, PrefixCache, PrefixState, make_denoiser
from whisper_llada.diffusion.sampling import deliberate, generate

__all__ = [
    "CommitRule",
    "Denoiser",
    "PrefixCache",
    "PrefixState",
    "deliberate",
    "generate",
    "generate_beam",
    "make_denoiser",
]
