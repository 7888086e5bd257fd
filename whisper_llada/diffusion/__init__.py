"""Masked diffusion: the training objective and the decoding and deliberation samplers."""
