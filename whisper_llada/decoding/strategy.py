"""The decoding-strategy interface and its registry: a setting's ``mode`` names a ``Strategy``,
which validates the setting, names its result files, runs on a batch and gives its report kind.

Adding a strategy: a subclass with ``@register`` (docs/decoding.md). The built-in strategies
(``whisper_llada.decoding.strategies``) are registered on the first lookup. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar

from whisper_llada.diffusion.counts import PassCounts

_BUILTIN = "whisper_llada.decoding.strategies"
_REGISTRY: dict[str, Strategy] = {}


@dataclass
class BatchJob:
    """What a strategy reads for one batch besides the batch itself, and what it gives back besides
    the hypotheses (counts, n-best candidates, first-pass records)."""

    norm: Callable[[str], str]
    generator: Any = None  # a torch.Generator seeded for this batch
    first_pass: dict | None = None  # cut id -> first-pass record (strategies that read one)
    fusion: Any = None  # n-best rescoring's weights (None: the first pass's 1-best)
    counts: PassCounts = field(default_factory=PassCounts)
    candidates: dict = field(default_factory=dict)  # n-best rescoring: cut id -> its Candidate list
    records: list = field(default_factory=list)  # as_first_pass: one first-pass record per cut


class Strategy:
    """One decoding strategy. A subclass sets the class attributes and overrides ``tag`` (or
    ``suffix``), ``runs_on`` and ``decode_batch``, and ``validate`` where it reads keys of its own."""

    mode: ClassVar[str]  # the DecodeConfig.mode that selects it; its results go to {exp_dir}/{mode}/
    report_kind: ClassVar[str]  # what the report (whisper_llada.scoring.compare) files its results as
    reads_first_pass: ClassVar[bool] = False  # works on a first pass's records (first_pass: SYSTEM)
    takes_beams: ClassVar[bool] = False  # accepts num_beams > 1
    writes_first_pass: ClassVar[bool] = False  # accepts as_first_pass
    tunes_fusion: ClassVar[bool] = False  # chooses fusion weights on the dev parts before a test part
    models: ClassVar[str] = ""  # the models it runs on, in words (for the error that refuses one)

    def validate(self, cfg) -> None:
        """Raises ValueError for a setting this strategy cannot run (``DecodeConfig`` calls it)."""
        if cfg.num_beams > 1 and not self.takes_beams:
            beams = " or ".join(s.mode for s in strategies() if s.takes_beams)
            raise ValueError(f"num_beams is for decoding (mode {beams}), not {cfg.mode}")
        if cfg.as_first_pass is not None and not self.writes_first_pass:
            writers = " or ".join(s.mode for s in strategies() if s.writes_first_pass)
            raise ValueError(f"as_first_pass is for mode {writers} (its beam gives the n-best), not {cfg.mode}")

    def tag(self, cfg) -> str:
        """The setting's result-file suffix before any keys shared with other strategies."""
        raise NotImplementedError

    def suffix(self, cfg) -> str:
        """The setting's result-file suffix (``DecodeConfig.suffix``; a setting's ``name`` overrides it)."""
        return self.tag(cfg)

    def runs_on(self, arch, cfg) -> bool:
        """Whether a model of ``arch`` (a ``whisper_llada.config.registry.Arch``) can run ``cfg``."""
        raise NotImplementedError

    def needs(self, cfg) -> str:
        """The models that can run ``cfg``, in words."""
        return self.models

    def check_model(self, model, cfg) -> None:
        """Raises ValueError, before any batch, if ``model`` cannot run ``cfg``. Asks the model's
        arch entry (``model.cfg.arch_spec``), not the model's methods."""
        if not self.runs_on(model.cfg.arch_spec, cfg):
            raise ValueError(f"{type(model).__name__} cannot run mode {self.mode}: it needs {self.needs(cfg)}")

    def decode_batch(self, model, batch: dict, cfg, job: BatchJob) -> list[str]:
        """One hypothesis per cut of ``batch`` (whose ``prefix`` is computed); counts go to ``job``."""
        raise NotImplementedError

    def fills_fixed_canvas(self, cfg) -> bool:
        """Whether its hypotheses are cut at a fixed canvas of ``gen_len`` tokens (then counted
        when they fill it: they may have been cut short)."""
        return False

    def writes_records(self, cfg) -> bool:
        """Whether it writes first-pass records (each cut's beam as its n-best)."""
        return False


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: makes ``cls`` the strategy of its ``mode``."""
    for attr in ("mode", "report_kind", "models"):
        if not getattr(cls, attr, ""):
            raise ValueError(f"strategy {cls.__name__} sets no {attr}")
    if cls.mode in _REGISTRY and type(_REGISTRY[cls.mode]) is not cls:
        raise ValueError(f"mode {cls.mode!r} is {type(_REGISTRY[cls.mode]).__name__}'s: {cls.__name__} cannot take it")
    _REGISTRY[cls.mode] = cls()
    return cls


def strategies() -> list[Strategy]:
    """Every registered strategy, in the order of registration."""
    import_module(_BUILTIN)
    return list(_REGISTRY.values())


def modes() -> tuple[str, ...]:
    """The modes a decode setting may name."""
    return tuple(s.mode for s in strategies())


def get_strategy(mode: str) -> Strategy:
    """The strategy of ``mode``; an unknown mode is an error that lists the known ones."""
    import_module(_BUILTIN)
    try:
        return _REGISTRY[mode]
    except KeyError:
        raise ValueError(f"mode {mode!r}: expected one of {modes()}") from None


def report_kinds() -> dict[str, str]:
    """mode -> the kind the report files its results as."""
    return {s.mode: s.report_kind for s in strategies()}
