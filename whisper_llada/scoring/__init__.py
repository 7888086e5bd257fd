"""Scoring: icefall-format result files built with kaldialign, and system comparisons."""
