"""Logging set-up shared by the stage scripts: one format, console plus an optional file per rank."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logger(
    log_prefix: str | Path | None = None, rank: int = 0, world_size: int = 1, level: int = logging.INFO
) -> None:
    """Console logging; with ``log_prefix`` also ``{prefix}-{date}[-{rank}]`` (icefall's naming)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_prefix is not None:
        stamp = datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
        name = f"{log_prefix}-{stamp}" + (f"-{rank}" if world_size > 1 else "")
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(name))
    fmt = FORMAT if world_size == 1 else FORMAT.replace("%(levelname)s", f"%(levelname)s (rank {rank})")
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)
