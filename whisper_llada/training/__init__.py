"""Training: the multi-GPU loop (DDP via torchrun, gloo on CPU), checkpoints, schedules."""
