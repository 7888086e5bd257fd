"""Helpers for recipe tests: a workspace that mirrors the repository and a tiny spoken corpus."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import make_sentences

ROOT = Path(__file__).resolve().parent.parent


def make_workspace(tmp: Path, recipe: str = "librispeech") -> Path:
    """``tmp/egs/<recipe>`` with the recipe's run.sh and conf linked, so outputs stay in ``tmp``."""
    for name in ("path.sh", "local", "tools", ".venv"):
        (tmp / name).symlink_to(ROOT / name)
    rdir = tmp / "egs" / recipe
    rdir.mkdir(parents=True)
    for name in os.listdir(ROOT / "egs" / recipe):
        if name in ("run.sh", "conf", "local"):
            (rdir / name).symlink_to(ROOT / "egs" / recipe / name)
    return rdir


def make_corpus(dl_dir: Path, n_train: int = 12, n_dev: int = 2, n_test: int = 2, long_test: int = 0) -> None:
    """``long_test``: one more test utterance, that many sentences spoken as one (a long cut)."""
    from whisper_llada.corpora.synth_corpus import Speaker, write_part

    speakers = [Speaker(101, "en-us", 165, 50), Speaker(102, "en+f3", 150, 60), Speaker(103, "en-gb-x-rp", 175, 45)]
    sents = make_sentences(n_train + n_dev + n_test + long_test, seed=11)
    parts = {
        "train-clean-100": sents[:n_train],
        "dev-clean": sents[n_train : n_train + n_dev],
        "test-clean": sents[n_train + n_dev : n_train + n_dev + n_test],
    }
    if long_test:
        parts["test-clean"].append(" ".join(sents[n_train + n_dev + n_test :]))
    for part, texts in parts.items():
        write_part(dl_dir, part, [(speakers[i % 3], t) for i, t in enumerate(texts)])


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{out[-4000:]}")
    return out


def make_kaldi_corpus(root: Path, parts: dict[str, int], seed: int = 5) -> dict[str, list[tuple]]:
    """Kaldi data directories ``root/{part}`` (wav.scp, segments, text, utt2spk) of espeak-ng speech:
    each recording holds two utterances with silence around them, so only ``segments`` tells them
    apart. ``parts``: utterances per part (even). Returns part -> [(utt id, rec id, start, end, text)]."""
    import numpy as np
    import soundfile as sf

    from whisper_llada.corpora.espeak import ESpeak

    engine = ESpeak.get()
    sents = make_sentences(sum(parts.values()), seed=seed)
    rate, out, k = 16000, {}, 0
    for part, n in parts.items():
        d = root / part
        d.mkdir(parents=True)
        (d / "audio").mkdir()
        rows, wav_scp = [], []
        for r in range(n // 2):
            rec_id, spk = f"{part}-rec{r}", f"spk{r % 2}"
            pieces, t = [np.zeros(int(0.4 * rate), np.float32)], 0.4
            for j in range(2):
                text = sents[k]
                k += 1
                speech = engine.synth(text.lower(), voice="en-us" if r % 2 else "en+f3", seed=k)
                import librosa

                speech = librosa.resample(speech, orig_sr=engine.sample_rate, target_sr=rate).astype(np.float32)
                start, end = t, t + len(speech) / rate
                rows.append((f"{spk}-{rec_id}-{j}", rec_id, round(start, 3), round(end, 3), text))
                pieces += [speech, np.zeros(int(0.6 * rate), np.float32)]
                t = end + 0.6
            wav = d / "audio" / f"{rec_id}.wav"
            sf.write(wav, np.concatenate(pieces), rate)
            wav_scp.append(f"{rec_id} {wav}")
        (d / "wav.scp").write_text("\n".join(wav_scp) + "\n")
        (d / "segments").write_text("".join(f"{u} {r} {s:.3f} {e:.3f}\n" for u, r, s, e, _ in rows))
        (d / "text").write_text("".join(f"{u} {t}\n" for u, _, _, _, t in rows))
        (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u, *_ in rows))
        out[part] = rows
    return out
