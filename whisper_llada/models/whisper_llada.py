"""Whisper-LLaDA (the paper, arch ``whisper_llada``; ``whisper_hf_mlm`` too): the Q-Former's audio
tokens as a prefix of a masked-diffusion LLM (native LLaDA, or a Hugging Face masked LM).
"""

from __future__ import annotations

from whisper_llada.models.masked_diffusion import MaskedDiffusionSpeechLM


class WhisperLLaDA(MaskedDiffusionSpeechLM):
    """A ``MaskedDiffusionSpeechLM`` whose registry entry gives it the Q-Former prefix layout."""
