"""The CTC first pass: lattices from the CTC recogniser over HLG, turned into first-pass records
(1-best, n-best, word confidences and times), and for another system's records confidences of its
1-best by forced alignment and the CTC log-likelihood of each of its n-best, against the same CTC output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from whisper_llada.config.recipe import LatticeConfig
from whisper_llada.lattice.lattice import (
    align,
    arc_posteriors,
    best_path,
    decode,
    nbest,
    search_windows,
    word_confidences,
    word_spans,
)

log = logging.getLogger(__name__)

# The CTC score of a text with more pieces than the frames can hold (its likelihood is 0).
CTC_FLOOR = -1.0e4


class CTCLatticeFirstPass:
    """``decoder(batch) -> records`` for ``run_first_pass``.

    Each of ``align_to`` (cut id -> record of another system) receives ``words`` with
    confidences: each word's span from forced alignment of its pieces, its confidence the
    lattice posterior of that word there (0 for a word outside the lexicon); and each of its
    n-best a ``ctc_score``, the CTC log-likelihood of its pieces (``CTC_FLOOR`` where they cannot
    fit the frames), a feature for n-best rescoring.
    """

    def __init__(self, model, graph, words: dict[int, str], lc: LatticeConfig, align_to: Sequence[dict] = ()):
        self.model, self.graph, self.words, self.lc = model, graph, words, lc
        self.word_ids = {w: i for i, w in words.items()}
        self.sp = model.tokenizer.sp
        # Seconds per CTC frame: encoder frames at frames_per_second, averaged frame_stride at a time.
        self.sec = model.cfg.ctc.frame_stride / model.cfg.qformer.frames_per_second
        self.align_to = list(align_to)
        self.unaligned = 0
        self.aligned: list[str] = []  # the cuts whose records of other systems this object amended

    def _words(self, names, ids, windows, spans, lat, post) -> list[dict]:
        conf = word_confidences(lat, post, ids, windows)
        return [
            {"word": w, "conf": round(c, 4), "start": round(s * self.sec, 3), "end": round((e + 1) * self.sec, 3)}
            for w, c, (s, e) in zip(names, conf, spans)
        ]

    def _record(self, cut_id: str, lp: np.ndarray) -> dict:
        lc = self.lc
        # The LM weight enters as 1 / acoustic scale, so that the search's beams see it too; lattice
        # costs are then graph + acoustic / lm_scale.
        lat = decode(lp, self.graph, lc.beam, lc.lattice_beam, acoustic_scale=1.0 / lc.lm_scale)
        if lat is None:
            log.warning("cut %s: no path survived the beam; empty hypothesis", cut_id)
            return {"id": cut_id, "text": "", "nbest": [{"text": "", "score": 0.0}], "words": []}
        # Posteriors on lm_scale * graph + acoustic (log-probabilities at their own scale).
        post, _ = arc_posteriors(lat, 1.0, lc.posterior_scale * lc.lm_scale)
        arcs, _, _, _ = best_path(lat)
        spans = word_spans(lat, arcs)
        ids = [w for w, _, _ in spans]
        windows = search_windows([s for _, s, _ in spans], lat.num_frames, lc.tolerance)
        words = self._words([self.words[w] for w in ids], ids, windows, [(s, e) for _, s, e in spans], lat, post)
        hyps = [
            {"text": " ".join(self.words[w] for w in seq), "score": round(score, 4)}
            for seq, score in nbest(lat, lc.nbest, 1.0, lc.nbest_beam)
        ]
        rec = {
            "id": cut_id,
            "text": " ".join(w["word"] for w in words),
            "nbest": hyps,
            "words": words,
            "lattice_depth": round(len(lat.src) / max(lat.num_frames, 1), 2),
        }
        self.aligned.append(cut_id)
        for other in filter(None, (system.get(cut_id) for system in self.align_to)):
            other["words"] = self._aligned_words(other["text"].split(), lp, lat, post)
            for h in other.get("nbest") or []:
                h["ctc_score"] = self.log_likelihood(lp, h["text"])
        return rec

    def log_likelihood(self, lp: np.ndarray, text: str) -> float:
        """log P_ctc(text | audio) summed over alignments (blank 0, piece p is class p + 1)."""
        pieces = [p + 1 for p in self.sp.encode(text)]
        if not pieces:
            return round(float(lp[:, 0].sum()), 4)  # all blank
        loss = torch.nn.functional.ctc_loss(
            torch.from_numpy(np.ascontiguousarray(lp)).float()[:, None, :],
            torch.tensor([pieces]),
            torch.tensor([lp.shape[0]]),
            torch.tensor([len(pieces)]),
            blank=0,
            reduction="sum",
        )
        return round(-float(loss), 4) if torch.isfinite(loss) else CTC_FLOOR

    def _aligned_words(self, text: list[str], lp: np.ndarray, lat, post) -> list[dict]:
        spans = align(lp, [self.sp.encode(w) for w in text]) if text else []
        if spans is None:  # more pieces than frames allow: no times, no support from the lattice
            self.unaligned += 1
            return [{"word": w, "conf": 0.0, "start": 0.0, "end": 0.0} for w in text]
        ids = [self.word_ids.get(w, 0) for w in text]
        windows = search_windows([s for s, _ in spans], lat.num_frames, self.lc.tolerance)
        return self._words(text, ids, windows, spans, lat, post)

    @torch.no_grad()
    def __call__(self, batch: dict) -> list[dict]:
        logp, lens = self.model.batch_log_probs(batch)
        logp, lens = logp.cpu().numpy(), lens.cpu().tolist()
        return [self._record(cut_id, logp[i, : lens[i]]) for i, cut_id in enumerate(batch["cut_ids"])]
