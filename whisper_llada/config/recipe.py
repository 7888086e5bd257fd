"""A recipe's YAML config: model, data, training, first pass, decoding, deliberation, scoring.

Stage scripts load it with ``load_recipe_config(path, overrides)``; ``--set a.b=value``
overrides any key (the value is parsed as YAML).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from whisper_llada.config.model import ModelConfig
from whisper_llada.decoding.settings import DecodeConfig, decode_configs
from whisper_llada.utils.config import from_dict, load_yaml


@dataclass
class DataConfig:
    # What the manifests stage reads, one directory per part under the corpus directory it is given:
    # librispeech (a LibriSpeech-layout tree), kaldi (Kaldi data directories: wav.scp, text, utt2spk,
    # segments optional; every recording's rate and channels read from its audio) or lhotse (ready
    # {prefix}_{recordings,supervisions}_{part}.jsonl.gz).
    corpus: Literal["librispeech", "kaldi", "lhotse"] = "librispeech"
    # Not used: the Kaldi importer reads each recording's rate (the features stage resamples to
    # 16 kHz). Kept so that configs which still set it load.
    sampling_rate: int | None = None
    raw_manifest_dir: str = "data/manifests"  # recordings and supervisions (the manifests stage)
    manifest_dir: str = "data/fbank"  # cuts with features (the features stage)
    # stored: the features stage computes Whisper's log-mel features once and stores them (lilcom);
    # on_the_fly: it writes the cuts alone and the data loader computes the features from the audio
    # each time a cut is read (no feature storage, for CPU time in the loader). Changing it redoes
    # the features stage.
    features: Literal["stored", "on_the_fly"] = "stored"
    prefix: str = "librispeech"  # cuts are {manifest_dir}/{prefix}_cuts_{part}.jsonl.gz
    train_parts: list[str] = field(default_factory=lambda: ["train-clean-100", "train-clean-360", "train-other-500"])
    dev_parts: list[str] = field(default_factory=lambda: ["dev-clean", "dev-other"])
    test_parts: list[str] = field(default_factory=lambda: ["test-clean", "test-other"])
    num_mel_bins: int = 128
    vocab_size: int = 500  # BPE pieces of the recipe's lang directory, data/lang_bpe_{vocab_size}
    # Applied to training transcripts and the lang directory's text (text_normalizer()).
    normalizer: str = "librispeech"
    accents: Literal["fold", "keep"] = "fold"  # CAFÉ -> CAFE, or kept as written
    digits: Literal["keep", "spell"] = "keep"  # 1990 kept, or spelled in words (num2words)
    strict: bool = False  # stop at the first unusable cut instead of reporting and skipping it
    # Test cuts longer than this are decoded whole, in pieces of at most this many seconds cut at
    # their quietest points and joined before scoring (docs/recipes.md); at most the shortest
    # encoder window of the recipe's systems (Whisper's 30 s).
    decode_window: float = 30.0

    def cuts_path(self, part: str) -> Path:
        return Path(self.manifest_dir) / f"{self.prefix}_cuts_{part}.jsonl.gz"

    def manifest_path(self, kind: str, part: str) -> Path:
        """``kind``: recordings or supervisions."""
        return Path(self.raw_manifest_dir) / f"{self.prefix}_{kind}_{part}.jsonl.gz"

    def feature_extractor(self):
        """lhotse's ``WhisperFbank`` the data loader computes features with (``features: on_the_fly``),
        or None: the cuts' stored features are read."""
        if self.features == "stored":
            return None
        from whisper_llada.data.features import whisper_fbank

        return whisper_fbank(self.num_mel_bins)

    @property
    def all_parts(self) -> list[str]:
        return list(dict.fromkeys(self.train_parts + self.dev_parts + self.test_parts))

    @property
    def lang_dir(self) -> Path:
        return Path(f"data/lang_bpe_{self.vocab_size}")

    def text_normalizer(self):
        """The one normaliser of training targets and the lang directory, as this config sets it."""
        from whisper_llada.data.text_norm import get_normalizer

        return get_normalizer(self.normalizer, self.accents, self.digits)


@dataclass
class TrainConfig:
    num_epochs: int = 10
    # The epochs a decoding averages by default: the last ``avg`` up to the one it decodes (icefall's
    # --avg; the decode scripts' --avg overrides it). Averaging the last two of a short fine-tuning
    # undoes some of its memorising (egs/espeak_fortunes/RESULTS.md).
    avg: int = 1
    max_duration: float = 200.0  # seconds of audio per batch and rank
    # Utterances per batch at most (None: no cap). Every utterance costs the same memory when
    # padded to Whisper's 30 s window, so a batch of short ones is the largest; see
    # tools/memory_plan.py for what fits.
    max_cuts: int | None = None
    num_buckets: int = 30
    lr: float = 3e-5  # peak
    lr_floor: float = 1e-5
    # Peak learning rate of the adapted Whisper layers (model.whisper.train_layers), on the same
    # schedule scaled; None: lr. Pretrained layers want less than a module trained from scratch.
    encoder_lr: float | None = None
    warmup_steps: int = 3000
    decay_steps: int = 100000  # cosine from peak to floor over this many optimiser steps
    weight_decay: float = 0.0
    accum_grad: int = 1
    grad_clip: float = 1.0
    save_every_n: int = 4000  # batches
    keep_last_k: int = 20
    log_interval: int = 50
    valid_max_batches: int = 0  # 0: the whole dev set
    num_workers: int = 2
    seed: int = 42
    min_duration: float = 0.5
    cache_encoder: bool = False  # run the frozen encoder once, train on its stored outputs
    amp: str = "bf16"  # bf16 | fp16 | none (GPU only; CPU always runs float32)
    # Two-stage training (needs model.loss.ctc_weight > 0): the first N epochs train the front end
    # (Q-Former + CTC head) alone with the CTC loss, which is cheap; later epochs train the LLM on
    # the then frozen front end. A from-scratch LLM learns to read audio tokens only once they
    # are stable (measured on the embedded recipe). 0: everything trains together (the paper).
    frontend_epochs: int = 0
    # Or take the trained front end from another model's checkpoint (e.g. the AR twin from
    # Whisper-LLaDA's epoch-{frontend_epochs}.pt, so both read identical audio tokens) and train
    # the LLM on it, frozen, from the first epoch.
    frontend_from: str | None = None
    # Once the front end is frozen, compute every cut's audio tokens once and train the LLM on
    # them (in memory: for small models; exact, the frozen Q-Former is deterministic).
    cache_audio_tokens: bool = False
    # Text-only pre-training of the LLM before it first hears audio (training.text_pretrain): the
    # model's own objective on the sentences of lm_text (one a line, .gz allowed; dev and test
    # transcripts are dropped), the prompt its only prefix. The paper's LLaDA knows English
    # before fine-tuning; a small LLM trained from scratch learns its language here. 0: none.
    lm_text: str | None = None
    lm_epochs: int = 0
    lm_batch_size: int = 128  # sentences per batch and rank
    lm_lr: float | None = None  # peak, on its own warmup and cosine; None: lr


@dataclass
class LatticeConfig:
    """The CTC first pass's lattices (local/ctc_first_pass.py)."""

    lm_order: int = 2  # word n-gram of the training transcripts (G)
    beam: float = 16.0
    lattice_beam: float = 8.0
    lm_scale: float = 1.0  # weight of the graph (LM) cost against the CTC log-probs (decoded as 1 / acoustic scale)
    posterior_scale: float = 1.0  # < 1 flattens the posteriors that confidences come from
    nbest: int = 10
    nbest_beam: float = 6.0  # lattice arcs this much worse than the best path are left out of the n-best
    tolerance: int = 2  # frames before a word's start where the lattice's label still counts
    batch_size: int = 16


@dataclass
class FirstPassConfig:
    # {path: HF Whisper dir}, {ct2_path: CTranslate2 dir, compute_type: int8} or {config: {...}} (random, tests)
    whisper: dict = field(default_factory=dict)
    num_beams: int = 5
    nbest: int = 5
    max_new_tokens: int = 128
    batch_size: int = 8
    language: str | None = "en"
    # None: Whisper's 30 s window, as it was trained. A number (CTranslate2 only): the encoder
    # reads each batch's longest utterance plus this many seconds of silence, which ends the
    # transcript as well (with no silence Whisper runs on; see egs/espeak_fortunes/conf).
    pad_seconds: float | None = None
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    # The CTC first-pass recogniser's config, relative to the file that names it (as base: is); the
    # recipes' ctc steps train and decode it on this config's data and lang directory. null: none.
    ctc_config: str | None = None


@dataclass
class ScoreConfig:
    # librispeech | whisper | none. A plain librispeech gets the data normaliser's accents and
    # digits options when the config is loaded (references and hypotheses treated as the
    # training targets were), e.g. librispeech:accents=fold,digits=spell.
    normalizer: str = "librispeech"
    sclite_mode: bool = False


@dataclass
class RecipeConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    firstpass: FirstPassConfig = field(default_factory=FirstPassConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    decode: list = field(default_factory=list)  # DecodeConfig mappings
    deliberate: list = field(default_factory=list)  # DecodeConfig mappings (deliberation modes)
    first_pass_system: str = "whisper"  # data/firstpass/{system}/{part}.jsonl.gz read by deliberation
    source: str = ""

    def check_features(self) -> None:
        """The Whisper directory must expect the features the recipe computes (a clear error if not)."""
        if self.model.whisper.path is not None:
            from whisper_llada.data.features import check_feature_settings

            check_feature_settings(self.model.whisper.path, self.data.num_mel_bins)

    def decode_settings(self) -> list[DecodeConfig]:
        return decode_configs(self.decode, f"{self.source}: decode")

    def deliberate_settings(self) -> list[DecodeConfig]:
        out = decode_configs(self.deliberate, f"{self.source}: deliberate")
        bad = [c.mode for c in out if not c.is_deliberation]
        if bad:
            raise ValueError(f"{self.source}: deliberate lists non-deliberation modes {bad}")
        return out


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value")
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return data


def merge(base: dict, over: dict) -> dict:
    """``base`` updated by ``over``: mappings merge key by key, anything else (lists too) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_with_bases(path: str | Path, seen: tuple = ()) -> dict:
    """A config file with its ``base:`` files (one path or a list, relative to the file, applied in
    order, each possibly with bases of its own) merged under it, so a new recipe's config can be
    another recipe's plus the keys that differ."""
    path = Path(path)
    if path.resolve() in seen:
        raise ValueError(f"{path}: its base: files include itself")
    data = load_yaml(path)
    bases = data.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"{path}: base: must be a path or a list of paths, got {bases!r}")
    ctc = (data.get("firstpass") or {}).get("ctc_config") if isinstance(data.get("firstpass"), dict) else None
    if isinstance(ctc, str) and not Path(ctc).is_absolute():
        # Named relative to this file, like base:, so a config that bases on another recipe's keeps
        # reaching its CTC config; stages read it from the recipe directory (the working directory).
        data["firstpass"]["ctc_config"] = os.path.relpath(path.parent / ctc)
    out: dict = {}
    for b in bases:
        bpath = path.parent / b
        if not bpath.is_file():
            raise FileNotFoundError(f"{path}: base: {b}: file not found (looked for {bpath})")
        out = merge(out, load_with_bases(bpath, seen + (path.resolve(),)))
    return merge(out, data)


def load_recipe_config(path: str | Path, overrides: Sequence[str] = ()) -> RecipeConfig:
    data = apply_overrides(load_with_bases(path), overrides)
    if "model" not in data:
        raise ValueError(f"{path}: no 'model' section")
    # Relative paths in the config are relative to the recipe directory, where stages run.
    cfg = from_dict(RecipeConfig, {**data, "source": str(path)}, str(path))
    d = cfg.data
    if (
        cfg.score.normalizer == "librispeech"
        and d.normalizer == "librispeech"
        and (d.accents, d.digits) != ("fold", "keep")
    ):
        cfg.score.normalizer = f"librispeech:accents={d.accents},digits={d.digits}"
    if not 1 <= cfg.train.avg <= cfg.train.num_epochs:
        # Caught here, not when a decoding after the training cannot find the epochs.
        raise ValueError(
            f"{path}: train.avg {cfg.train.avg} must lie in 1..train.num_epochs ({cfg.train.num_epochs}; "
            "a config that trains fewer epochs than its base sets avg too)"
        )
    cfg.decode_settings()
    cfg.deliberate_settings()
    return cfg
