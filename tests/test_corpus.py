"""The embedded corpus: fortune sentences normalised LibriSpeech style, spoken by held-out voices."""

from __future__ import annotations

import re

from whisper_llada.corpora.espeak_corpus import DEV_VOICES, TEST_VOICES, TRAIN_VOICES, build_corpus
from whisper_llada.corpora.fortunes import fortune_sentences, normalize_sentence


def test_normalize_sentence():
    assert normalize_sentence("It's 80 degrees, isn't it?") == "IT'S EIGHTY DEGREES ISN'T IT"
    assert normalize_sentence("The 3rd time -- a well-known rule.") == "THE THIRD TIME A WELL KNOWN RULE"
    assert normalize_sentence("Q: what?") is None and normalize_sentence("see /usr/bin") is None
    assert normalize_sentence("filmed in 70mm") is None


def test_fortune_sentences():
    sents = fortune_sentences()
    assert len(sents) > 10000 and len(set(sents)) == len(sents)
    assert all(re.fullmatch(r"[A-Z' ]+", s) and 5 <= len(s.split()) <= 25 for s in sents)


def test_build_corpus_holds_out_voices_and_sentences(tmp_path):
    counts = build_corpus(tmp_path, num_train=6, num_dev=2, num_test=3)
    assert counts == {"train-clean-100": 6, "dev-clean": 2, "test-clean": 3}
    root = tmp_path / "LibriSpeech"
    texts = {}
    for part in counts:
        lines = [l for t in sorted((root / part).rglob("*.trans.txt")) for l in t.read_text().splitlines()]
        assert len(lines) == counts[part] and len(list((root / part).rglob("*.flac"))) == counts[part]
        texts[part] = {l.split(" ", 1)[1] for l in lines}
        speakers = {int(l.split("-")[0]) for l in lines}
        # Dev (8000...) and test (9000...) speakers are their own.
        assert all(
            (s >= 9000) == (part == "test-clean") and (8000 <= s < 9000) == (part == "dev-clean") for s in speakers
        )
    assert not texts["test-clean"] & (texts["train-clean-100"] | texts["dev-clean"])
    assert not set(TRAIN_VOICES) & set(TEST_VOICES) and not set(DEV_VOICES) & set(TRAIN_VOICES + TEST_VOICES)


def test_breathy_voices_are_the_same_in_every_process():
    """espeak-ng seeds its noise from the clock; the seed set per utterance makes the female
    variants (breath noise) repeat across processes, so fresh corpora are identical."""
    import subprocess
    import sys

    code = (
        "import hashlib; from whisper_llada.corpora.espeak import ESpeak; e = ESpeak.get(); "
        "print(*(hashlib.md5(e.synth('the human brain is a wonderful thing', voice=v, seed=7).tobytes()).hexdigest() "
        "for v in ('en-us-nyc+f5', 'en-gb-x-rp+f3')))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and len(runs[0].split()) == 2


def test_corpus_audio_does_not_depend_on_training_size_or_interruption(tmp_path):
    """espeak-ng's output depends on what it spoke before. Test and dev are spoken first, with
    their own speaker draws, so a smaller --num-train leaves them bit for bit the same; a resumed
    build replays the history and writes the files an uninterrupted one writes."""
    import hashlib
    import subprocess
    import sys

    def build(root, n):
        code = f"from whisper_llada.corpora.espeak_corpus import build_corpus; build_corpus({str(root)!r}, {n}, 2, 3)"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return {
            str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted((root / "LibriSpeech").rglob("*.flac"))
        }

    small, full = build(tmp_path / "small", 4), build(tmp_path / "full", 9)
    held_out = {k: v for k, v in full.items() if "/train-clean-100/" not in k}
    assert {k: v for k, v in small.items() if "/train-clean-100/" not in k} == held_out and len(held_out) == 5
    # An interrupted build: one test and two training files missing, then the stage runs again.
    gone = sorted(k for k in full if "/test-clean/" in k)[:1] + sorted(k for k in full if "/train-clean-100/" in k)[-2:]
    for k in gone:
        (tmp_path / "full" / k).unlink()
    assert build(tmp_path / "full", 9) == full and len(full) == 14
