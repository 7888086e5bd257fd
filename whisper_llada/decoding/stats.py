"""What decoding counts: forward passes (NFEs), the sequence positions they ran and model calls per
batch (``PassCounts``), and a part's totals (``PartTotals``), from which its speed file is written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.utils.dist import merged_speed

log = logging.getLogger(__name__)


@dataclass
class PartTotals:
    """One process's totals over its share of a test part; ``part_speed`` merges those of every process."""

    num_utts: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0  # the front end's seconds included, cached or not
    front: float = 0.0  # the front end's seconds (encoder, Q-Former, prompt)
    passes: int = 0
    positions: int = 0  # sequence positions the LLM ran (a cached prefix counts once)
    full: int = 0  # hypotheses that fill a fixed canvas (``canvas_filled``)

    def add_batch(self, counts: PassCounts, num_utts: int, audio: float, wall: float, front: float, full: int) -> None:
        """One batch: its counts, utterances, seconds of audio, wall seconds (the front end's
        ``front`` included) and hypotheses that fill their canvas."""
        self.front += front
        self.wall_seconds += wall
        self.audio_seconds += audio
        self.passes += counts.total_passes()
        self.positions += counts.total_positions()
        self.num_utts += num_utts
        self.full += full


def part_speed(totals: list[PartTotals], what: str, gen_len) -> dict:
    """The speed of a part (its speed file's keys, in their order) from every process's totals.
    ``what`` (the setting's suffix) and ``gen_len`` name the setting in a warning when hypotheses
    fill their whole canvas."""
    out = merged_speed([asdict(t) for t in totals], summed=("passes", "positions", "full"), of_slowest=("front",))
    full = out.pop("full")
    if full:
        log.warning(
            "%s: %d of %d hypotheses fill the whole canvas (gen_len %s) and may be cut short: raise gen_len, "
            "or lower data.decode_window so that long cuts are decoded in shorter pieces",
            what,
            full,
            out["num_utts"],
            gen_len,
        )
    out["canvas_full"] = full
    n_all = max(out["num_utts"], 1)
    out["front_end_seconds"] = round(out.pop("front"), 3)
    out["forward_passes_per_utt"] = round(out.pop("passes") / n_all, 2)
    positions_all = out.pop("positions")
    out["positions_per_utt"] = round(positions_all / n_all, 1) if positions_all else None
    return out
