"""Cache tiny.en encoder hidden states (after layers 2, 3 and the final) for train/dev/test."""
from exp_scripts.common import build_cache
for part in ("dev-clean", "test-clean", "train-clean-100"):
    build_cache(part)
