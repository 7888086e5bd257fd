"""The configuration of a recipe, in one place below models, training and the first passes: the model
section (``model``), the table of architectures (``registry``) and the whole recipe file (``recipe``).

Its modules import without torch: a stage reads its config before it loads a model.
"""
