"""The logic of the repository's tools/ scripts that check a recipe at full size: its memory plan on
the meta device (``memory_plan``) and the full-width check that trains and decodes it (``full_width``).
"""
