"""The embedded corpus: fortune-file sentences spoken by espeak-ng voices, in LibriSpeech layout.

Parts ``train-clean-100`` (training voices and sentences), ``dev-clean`` and ``test-clean`` (each its
own held-out voices, held-out sentences), so every later stage is the LibriSpeech code path.
"""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

from whisper_llada.corpora.fortunes import fortune_sentences
from whisper_llada.corpora.synth_corpus import Speaker, write_part

log = logging.getLogger(__name__)

TRAIN_VOICES = ["en-us", "en", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
TRAIN_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f3"]
# Dev speaks with voices and variants that neither training nor test uses, as test does: settings
# chosen on dev (fusion weights, thresholds) then face unseen voices there as they do on test.
DEV_VOICES = ["en-gb-scotland"]
DEV_VARIANTS = ["+m7", "+m8"]
TEST_VOICES = ["en-us-nyc", "en-gb-x-gbcwmd"]
TEST_VARIANTS = ["+m5", "+m6", "+f4", "+f5"]


def speakers(
    voices: list[str], variants: list[str], rates: list[int], pitches: list[int], first_id: int
) -> list[Speaker]:
    combos = itertools.product(voices, variants, rates, pitches)
    return [Speaker(first_id + i, v + var, r, p) for i, (v, var, r, p) in enumerate(combos)]


def split_sentences(num_train: int, num_dev: int, num_test: int, seed: int = 0) -> dict[str, list[str]]:
    """The fortune sentences of each part, and under ``"lm"`` every sentence that neither dev nor
    test speaks (the training ones included): the corpus's text-only LM data."""
    sents = fortune_sentences()
    need = num_train + num_dev + num_test
    if need > len(sents):
        raise ValueError(f"{need} sentences asked for, the fortune file has {len(sents)} usable ones")
    random.Random(seed).shuffle(sents)
    return {
        "test-clean": sents[:num_test],
        "dev-clean": sents[num_test : num_test + num_dev],
        "train-clean-100": sents[num_test + num_dev : need],
        "lm": sents[num_test + num_dev :],
    }


def write_lm_text(path: str | Path, num_train: int, num_dev: int, num_test: int, seed: int = 0) -> int:
    """The LM text (``split_sentences``' ``"lm"``), one sentence a line, as LibriSpeech's
    ``librispeech-lm-norm.txt``; returns its number of sentences."""
    from whisper_llada.utils.checkpoint_io import atomic_write_text

    lm = split_sentences(num_train, num_dev, num_test, seed)["lm"]
    atomic_write_text(path, "".join(s + "\n" for s in lm))
    return len(lm)


def build_corpus(dl_dir: str | Path, num_train: int, num_dev: int, num_test: int, seed: int = 0) -> dict[str, int]:
    parts = split_sentences(num_train, num_dev, num_test, seed)
    test, dev, train = parts["test-clean"], parts["dev-clean"], parts["train-clean-100"]
    train_spk = speakers(TRAIN_VOICES, TRAIN_VARIANTS, [150, 180], [40, 60], first_id=1000)
    dev_spk = speakers(DEV_VOICES, DEV_VARIANTS, [155, 185], [45, 55], first_id=8000)
    test_spk = speakers(TEST_VOICES, TEST_VARIANTS, [160, 190], [50], first_id=9000)
    counts = {}
    # Test and dev first, each with its own speaker draws: espeak-ng's output depends on what the
    # engine spoke before (measured: the same call differs after other utterances), so this way
    # the test and dev audio do not change with --num-train.
    for part, texts, pool in (
        ("test-clean", test, test_spk),
        ("dev-clean", dev, dev_spk),
        ("train-clean-100", train, train_spk),
    ):
        rng = random.Random(f"{seed}:{part}")
        counts[part] = write_part(dl_dir, part, [(rng.choice(pool), t) for t in texts])
    log.info(
        "corpus in %s: %s (%d training, %d dev, %d test speakers)",
        dl_dir,
        counts,
        len(train_spk),
        len(dev_spk),
        len(test_spk),
    )
    return counts
