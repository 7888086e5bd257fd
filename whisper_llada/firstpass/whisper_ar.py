"""First pass by Whisper's own autoregressive decoding (``transformers``): beam search, n-best
with sequence scores.

A real checkpoint brings its tokenizer; a random model built from a config (tests, smoke
runs) uses the recipe's sentencepiece tokenizer as its vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from whisper_llada.config.recipe import FirstPassConfig
from whisper_llada.data.audio import FEATURES
from whisper_llada.data.dataset import SpeechTextDataset
from whisper_llada.models.whisper_encoder import pad_features

log = logging.getLogger(__name__)


class WhisperFirstPass:
    def __init__(self, cfg: FirstPassConfig, fallback_tokenizer=None, device="cpu"):
        from transformers import WhisperConfig, WhisperForConditionalGeneration

        self.cfg, self.device = cfg, torch.device(device)
        if cfg.whisper.get("path"):
            from transformers import WhisperTokenizer

            path = Path(cfg.whisper["path"])
            self.model = WhisperForConditionalGeneration.from_pretrained(str(path), local_files_only=True)
            tok = WhisperTokenizer.from_pretrained(str(path), local_files_only=True)
            self.decode = lambda ids: tok.decode(ids, skip_special_tokens=True)
        elif cfg.whisper.get("config"):
            if fallback_tokenizer is None:
                raise ValueError("a first-pass Whisper built from a config needs the recipe's tokenizer")
            t = fallback_tokenizer
            fields = dict(
                vocab_size=t.vocab_size,
                decoder_start_token_id=t.user_id,
                bos_token_id=t.user_id,
                eos_token_id=t.eos_id,
                pad_token_id=t.pad_id,
                **cfg.whisper["config"],
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self.model = WhisperForConditionalGeneration(WhisperConfig(**fields))
            self.decode = t.decode
        else:
            raise ValueError("firstpass.whisper: give path (a Whisper directory), ct2_path or config")
        if cfg.pad_seconds is not None:
            raise ValueError(
                "firstpass.pad_seconds needs firstpass.whisper.ct2_path: transformers' Whisper "
                "accepts the 30 s window only"
            )
        self.model.to(self.device).eval()
        self.frames = self.model.config.max_source_positions * 2

    @torch.no_grad()
    def __call__(self, batch: dict) -> list[dict]:
        cfg = self.cfg
        audio = batch["audio"].expect(FEATURES, who="the Whisper first pass")
        x = pad_features(audio.data, audio.lens, self.frames).to(self.device)
        nbest = min(cfg.nbest, cfg.num_beams)
        kw = dict(
            num_beams=cfg.num_beams,
            num_return_sequences=nbest,
            max_new_tokens=cfg.max_new_tokens,
            return_dict_in_generate=True,
            output_scores=True,
        )
        if cfg.language and getattr(self.model.generation_config, "is_multilingual", False):
            kw.update(language=cfg.language, task="transcribe")
        out = self.model.generate(input_features=x, **kw)
        seqs = out.sequences.tolist()
        scores = (
            out.sequences_scores.tolist() if getattr(out, "sequences_scores", None) is not None else [0.0] * len(seqs)
        )
        records = []
        for i, cut_id in enumerate(batch["cut_ids"]):
            hyps = [{"text": self.decode(seqs[i * nbest + k]), "score": scores[i * nbest + k]} for k in range(nbest)]
            hyps.sort(key=lambda h: -h["score"])
            records.append({"id": cut_id, "text": hyps[0]["text"], "nbest": hyps})
        return records


class CT2WhisperFirstPass:
    """The same first pass through CTranslate2 (faster-whisper's engine): one model directory
    with ``model.bin`` and ``tokenizer.json``; on a CPU it is some twenty times faster than
    ``transformers``' beam search."""

    def __init__(self, cfg: FirstPassConfig, device="cpu"):
        import json

        import ctranslate2
        from tokenizers import Tokenizer

        self.cfg = cfg
        path = Path(cfg.whisper["ct2_path"])
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path}: no CTranslate2 model.bin")
        compute = cfg.whisper.get("compute_type", "int8" if str(device) == "cpu" else "float16")
        # On a CPU, one thread per core torch may use: CTranslate2's default (4) oversubscribes a CPU
        # with fewer cores (about 10 % slower on 2 cores, measured on 48 utterances).
        threads = {} if str(device).startswith("cuda") else {"intra_threads": torch.get_num_threads()}
        self.model = ctranslate2.models.Whisper(
            str(path), device="cuda" if str(device).startswith("cuda") else "cpu", compute_type=compute, **threads
        )
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        special = {t["content"]: t["id"] for t in json.loads((path / "tokenizer.json").read_text())["added_tokens"]}
        self.prompt = [special["<|startoftranscript|>"]]
        if self.model.is_multilingual:
            self.prompt += [special[f"<|{cfg.language or 'en'}|>"], special["<|transcribe|>"]]
        self.prompt.append(special["<|notimestamps|>"])
        self.frames = 3000
        self.pad_frames = None if cfg.pad_seconds is None else int(round(cfg.pad_seconds * 100))

    def __call__(self, batch: dict) -> list[dict]:
        import ctranslate2
        import numpy as np

        cfg = self.cfg
        audio = batch["audio"].expect(FEATURES, who="the Whisper first pass")
        frames = window_frames(audio.lens, self.pad_frames, self.frames)
        x = pad_features(audio.data, audio.lens, frames).float().cpu().numpy()
        nbest = min(cfg.nbest, cfg.num_beams)
        res = self.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(x)),
            [self.prompt] * x.shape[0],
            beam_size=cfg.num_beams,
            num_hypotheses=nbest,
            return_scores=True,
            max_length=cfg.max_new_tokens,
        )
        records = []
        for cut_id, r in zip(batch["cut_ids"], res):
            hyps = [
                {"text": self.tok.decode(ids, skip_special_tokens=True), "score": float(sc)}
                for ids, sc in zip(r.sequences_ids, r.scores)
            ]
            records.append({"id": cut_id, "text": hyps[0]["text"], "nbest": hyps})
        return records


def window_frames(feature_lens: torch.Tensor, pad_frames: int | None, full: int = 3000) -> int:
    """Encoder input frames for a batch: the full window, or the longest utterance plus
    ``pad_frames`` of silence (even, as the stride-2 convolution wants; at most ``full``)."""
    if pad_frames is None:
        return full
    n = int(feature_lens.max()) + pad_frames
    return min(full, n + n % 2)


def make_first_pass(cfg: FirstPassConfig, fallback_tokenizer=None, device="cpu"):
    """CTranslate2 when ``firstpass.whisper.ct2_path`` is set, else ``transformers``."""
    if cfg.whisper.get("ct2_path"):
        return CT2WhisperFirstPass(cfg, device)
    return WhisperFirstPass(cfg, fallback_tokenizer, device)


def run_first_pass(
    decoder: Callable[[dict], list[dict]],
    cuts,
    batch_size: int,
    normalize: Callable[[str], str] | None = None,
    extractor=None,
) -> tuple[list[dict], dict]:
    """Records of every cut, in cut-id order, and the speed (audio seconds, wall seconds, RTF);
    ``extractor``: features are computed from the audio (``DataConfig.feature_extractor()``).

    Under torchrun each rank decodes its share of the batches (whisper_llada.utils.dist) and every
    rank returns the records of all of them."""
    import time

    from tqdm import tqdm

    from whisper_llada.utils.dist import gather, merged_speed, my_batches

    norm = normalize or (lambda s: s)
    ds = SpeechTextDataset(extractor=extractor)
    out, wall, audio = [], 0.0, 0.0
    # Batches of similar durations: a trimmed window then pads little, and beams end together.
    for _, cut_batch in tqdm(my_batches(cuts, batch_size, "first pass"), desc="first pass"):
        batch = ds[cut_batch]
        if not batch["cut_ids"]:
            continue
        t0 = time.perf_counter()
        records = decoder(batch)
        wall += time.perf_counter() - t0
        audio += sum(batch["durations"])
        for r in records:
            r["text"] = norm(r["text"])
            for h in r["nbest"]:
                h["text"] = norm(h["text"])
            if "words" in r:  # the text is its words: normalise them one by one (a word may
                # become none or several, which keep its confidence and times)
                r["words"] = [{**w, "word": piece} for w in r["words"] for piece in norm(w["word"]).split()]
                r["text"] = " ".join(w["word"] for w in r["words"])
            out.append(r)
    gathered = gather((out, dict(num_utts=len(out), audio_seconds=audio, wall_seconds=wall)))
    out = sorted(
        (r for recs, _ in gathered for r in recs), key=lambda r: r["id"]
    )  # decoded by duration, returned by id
    return out, merged_speed([t for _, t in gathered])
