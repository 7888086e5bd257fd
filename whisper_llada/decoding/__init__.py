"""Decoding strategies (one class each, found by a decode setting's ``mode``), the statistics a
decoding run counts, and the decoding-speed benchmark. Importing this package imports no torch.
"""
