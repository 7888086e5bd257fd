"""The logic of the repository's tools/ scripts: the decoding-speed benchmark of random-weight
models (``bench``), a recipe's memory plan on the meta device (``memory_plan``) and the full-width
check that trains and decodes it (``full_width``).
"""
