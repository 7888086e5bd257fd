"""The names a decode setting may give the samplers' options: commit rules, prefix caches and
deliberation's masking types. No torch here, so that reading a recipe config stays fast.
"""

# The commit rules of diffusion/commit.py and the prefix caches of diffusion/denoiser.py. Reading
# a recipe config (the shell recipes' config_value.py, about 25 calls a run) imports these only:
# 0.1 s instead of the 2 s torch takes.
RULES = ("fixed", "threshold")
CACHES = ("auto", "none", "exact", "approximate")

# Deliberation's masking_type, by these names in the sampler too (diffusion/sampling.py).
MASKING = ("low_confidence", "random", "first_pass")
