"""whisper-llada: speech recognition with audio-conditioned diffusion LLMs.

A frozen Whisper encoder and a window-level Q-Former feed LLaDA; see docs/.
"""

__version__ = "0.1.0"
