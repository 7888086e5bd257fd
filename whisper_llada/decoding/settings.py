"""Decode settings with the keys of the paper's ``decode_config.yaml``, and their result-file suffix.

A recipe lists several settings; each names every knob it uses in its suffix, so result files of
different settings never collide. A setting's ``mode`` names its strategy
(``whisper_llada.decoding.strategies``), which checks the keys it reads and makes the suffix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from whisper_llada.decoding.strategy import get_strategy
from whisper_llada.diffusion.options import CACHES, MASKING, RULES
from whisper_llada.utils.config import from_dict

FUSE = ("lm", "words", "ctc")


@dataclass
class DecodeConfig:
    mode: str = "decoding"
    steps: int = 128
    # Canvas length. auto: per row, from its CTC-compressed audio tokens or its duration times the
    # training transcripts' token rate (decoding; pure diffusion), or from the hypothesis
    # (deliberation: its length + len_margin EOS), plus len_margin.
    gen_len: int | str = 128
    block_length: int = 128  # == gen_len: pure diffusion; shorter: semi-autoregressive blocks
    len_margin: int = 4  # gen_len auto: positions beyond the estimate
    len_scale: float = 1.0  # gen_len auto: canvas per CTC-compressed audio token
    token_rate: str | None = None  # gen_len auto: token_rate.json (default: beside the BPE model)
    # Commit rule: fixed (the paper: a block's masks spread evenly over its steps) or threshold
    # (every masked position with confidence >= threshold, at least one a step; steps unused).
    commit: str = "fixed"
    threshold: float = 0.9
    # Prefix keys and values: auto (cached exactly when the model's prefix does not attend to the
    # response, else recomputed), none, exact, or approximate (a bidirectional model's prefix cache
    # reused for cache_refresh steps and refreshed at every block; Fast-dLLM).
    cache: str = "auto"
    cache_refresh: int = 4
    remasking: str = "low_confidence"  # or random
    temperature: float = 0.0
    mask_ratio: float = 0.3  # diffusion deliberation
    # low_confidence (the model's) | random | first_pass (the first pass's word confidences)
    masking_type: str = "low_confidence"
    # Deliberation: the first-pass system whose records it repairs (None: the recipe's first_pass_system).
    first_pass: str | None = None
    num_chunks: int = 4  # semi-AR deliberation
    # nbest_rescoring: the first pass's n-best (the first `nbest`, None: all) scored by the model's
    # pseudo-log-likelihood over pll_groups interleaved mask groups (one pass each), fused
    # log-linearly with the first pass's score and the word count, weights chosen on the dev parts.
    nbest: int | None = None
    pll_groups: int = 4
    # The fusion's features besides the first pass's score (lm: the pseudo-log-likelihood; words:
    # the word count; ctc: the CTC recogniser's log-likelihood, where the records carry one).
    fuse: list[str] = field(default_factory=lambda: list(FUSE))
    # Deliberation: follow the hypothesis with EOS up to the training response length, as
    # responses are padded in our training. False is the paper's layout (the hypothesis alone), which suits models
    # trained, as the paper's were, on responses padded only to the batch's longest.
    eos_pad: bool = True
    # Beam search: the AR twin's; for diffusion decoding, semi-AR with one token a step (steps =
    # gen_len), each hypothesis extended at its surest open position (whisper_llada.diffusion.beam).
    num_beams: int = 1
    # Autoregressive decoding as a first pass: each cut's beam (its n-best with log-probabilities)
    # also goes to first-pass records of this system name, on the dev parts too, for another
    # model's deliberation or n-best rescoring (the paper's cascade: the AR model's output repaired).
    as_first_pass: str | None = None
    batch_size: int = 16
    name: str | None = None  # overrides the generated suffix

    def __post_init__(self):
        strategy = get_strategy(self.mode)  # an unknown mode is refused here
        if self.masking_type not in MASKING:
            raise ValueError(f"masking_type {self.masking_type!r}: expected one of {MASKING}")
        if isinstance(self.gen_len, str) and self.gen_len != "auto":
            raise ValueError(f"gen_len {self.gen_len!r}: expected a number of tokens or auto")
        if self.commit not in RULES:
            raise ValueError(f"commit {self.commit!r}: expected one of {RULES}")
        if self.cache not in CACHES:
            raise ValueError(f"cache {self.cache!r}: expected one of {CACHES}")
        if not set(self.fuse) <= set(FUSE) or "lm" not in self.fuse:
            raise ValueError(f"fuse {list(self.fuse)}: expected lm and any of {FUSE[1:]}")
        if (self.nbest is not None and self.nbest < 1) or self.pll_groups < 1:
            raise ValueError(f"nbest {self.nbest} / pll_groups {self.pll_groups}: expected positive numbers")
        if self.num_beams < 1:
            raise ValueError(f"num_beams {self.num_beams}: expected a positive number")
        strategy.validate(self)

    @property
    def reads_first_pass(self) -> bool:
        """Works on a first pass's records (deliberation or n-best rescoring)."""
        return get_strategy(self.mode).reads_first_pass

    @property
    def is_deliberation(self) -> bool:
        """The models' name for ``reads_first_pass``."""
        return self.reads_first_pass

    def suffix(self) -> str:
        return self.name or get_strategy(self.mode).suffix(self)


def decode_configs(items: list[dict] | dict, where: str) -> list[DecodeConfig]:
    """One or several settings from a config section (a mapping or a list of mappings)."""
    if isinstance(items, dict):
        items = [items]
    out = [from_dict(DecodeConfig, d, f"{where}[{i}]") for i, d in enumerate(items)]
    names = [c.suffix() for c in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: settings {dup} appear more than once")
    return out
