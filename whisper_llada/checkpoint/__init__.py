"""Loading and converting checkpoints of other formats (CTranslate2 Whisper, the authors' release)."""
