"""Decoding strategies (one class each, found by a decode setting's ``mode``), their settings, the
n-best fusion weights and a part's speed totals. Importing this package imports no torch.
"""
