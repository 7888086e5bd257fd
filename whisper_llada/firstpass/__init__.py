"""First-pass recognisers and their records (1-best, n-best with scores, word confidences)."""
