"""Shared pieces of the issue-16 experiments: data/encoder cache, a plain Whisper decoder forward
(causal = AR, non-causal = masked diffusion) over the pretrained tiny.en weights, decoding, WER.

Run from egs/espeak_fortunes/research with path.sh sourced (python -m exp_scripts.<script>). Nothing here is package code.
"""
from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]  # egs/espeak_fortunes
CACHE = ROOT / "exp" / "research_cache"
WHISPER = ROOT / "data/models/whisper-tiny.en"
SOT, EOT, NOTS, MASK = 50257, 50256, 50362, 50359
PAD_FRAMES = 400  # 4 s of silence after the speech, as the first pass reads it
EXTRA_OUT = 64    # encoder output frames kept after the speech


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Timer:
    def __init__(self):
        self.w, self.c = time.perf_counter(), time.process_time()

    def __call__(self):
        return time.perf_counter() - self.w, time.process_time() - self.c


# Other engineers load the 2 cores: two torch threads then spin against each other (measured: the
# encoder 0.87 s per utterance with 2 threads, 0.16 s with 1).
torch.set_num_threads(int(os.environ.get("NT", "1")))
os.chdir(ROOT)  # lhotse feature paths are relative to the recipe directory


def load_hf():
    from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast
    m = WhisperForConditionalGeneration.from_pretrained(str(WHISPER), local_files_only=True).eval()
    tok = WhisperTokenizerFast.from_pretrained(str(WHISPER), local_files_only=True)
    return m, tok


def sentence_case(upper: str) -> str:
    """LibriSpeech-normalised text in the casing Whisper's LM knows (the normaliser undoes it)."""
    s = upper.lower()
    s = re.sub(r"\bi\b", "I", s)
    s = re.sub(r"\bi'", "I'", s)
    return s[:1].upper() + s[1:]


def norm(text: str) -> str:
    from whisper_llada.data.text_norm import librispeech_normalize
    return librispeech_normalize(text)


def wer(pairs) -> float:
    """pairs: list of (ref str, hyp str), both normalised; percent WER."""
    import kaldialign
    err = n = 0
    for r, h in pairs:
        r, h = r.split(), h.split()
        n += len(r)
        err += sum(1 for a, b in kaldialign.align(r, h, "*") if a != b)
    return 100.0 * err / max(n, 1)


@torch.no_grad()
def encode_levels(enc, feats: torch.Tensor, keep_levels=(2, 3, 4)):
    """One utterance (T, 80) -> {level: (frames, C)} hidden states after `level` encoder layers
    (4 = final, layer-normed), on the audio + PAD_FRAMES of silence floor, cropped to speech + EXTRA_OUT."""
    from whisper_llada.models.whisper_encoder import pad_features
    T = feats.shape[0]
    n = T + PAD_FRAMES
    n += n % 2
    x = pad_features(feats[None], torch.tensor([T]), n)  # (1, 80, n)
    h = F.gelu(enc.conv1(x))
    h = F.gelu(enc.conv2(h)).transpose(1, 2)
    h = h + enc.embed_positions.weight[: h.shape[1]]
    keep = min(h.shape[1], (T + 1) // 2 + EXTRA_OUT)
    out = {}
    for i, layer in enumerate(enc.layers):
        if i in keep_levels:
            out[i] = h[0, :keep].half().clone()
        h = enc_layer(layer, h, None)
    out[len(enc.layers)] = enc.layer_norm(h)[0, :keep].half().clone()
    return {k: v for k, v in out.items() if k in keep_levels}


def build_cache(part: str, keep_levels=(2, 3, 4)):
    import lhotse
    path = CACHE / f"{part}.pt"
    if path.is_file():
        return torch.load(path)
    m, _ = load_hf()
    enc = m.model.encoder
    cuts = lhotse.load_manifest(ROOT / f"data/fbank/librispeech_cuts_{part}.jsonl.gz")
    items = []
    t = Timer()
    for c in cuts:
        feats = torch.from_numpy(c.load_features()).float()
        lv = encode_levels(enc, feats, keep_levels)
        text = " ".join(s.text for s in c.supervisions)
        items.append({"id": c.id, "text": text, "dur": c.duration, **{f"h{k}": v for k, v in lv.items()}})
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(items, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)
    log(f"cache {part}: {len(items)} cuts, wall/cpu {t()}")
    return items


def _attn(q_proj, k_proj, v_proj, out_proj, nh, x, kv, mask):
    B, L, C = x.shape
    hd = C // nh
    q = (q_proj(x) * hd ** -0.5).view(B, L, nh, hd).transpose(1, 2)
    k = k_proj(kv).view(B, kv.shape[1], nh, hd).transpose(1, 2)
    v = v_proj(kv).view(B, kv.shape[1], nh, hd).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    return out_proj(o.transpose(1, 2).reshape(B, L, C))


def enc_layer(layer, h, key_mask):
    """One Whisper encoder layer; key_mask (B, T) bool or None."""
    a = layer.self_attn
    m = None if key_mask is None else key_mask[:, None, None, :]
    x = layer.self_attn_layer_norm(h)
    h = h + _attn(a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads, x, x, m)
    x = layer.final_layer_norm(h)
    return h + layer.fc2(F.gelu(layer.fc1(x)))


def run_top_encoder(enc, h, key_mask, start: int):
    """Encoder layers start.. and the final layer norm on cached hidden states."""
    for layer in enc.layers[start:]:
        h = enc_layer(layer, h, key_mask)
    return enc.layer_norm(h)


def dec_forward(dec, ids, ids_mask, enc_out, enc_mask, causal: bool):
    """Whisper decoder hidden states (B, L, C). ids_mask (B, L) bool: real tokens (keys)."""
    B, L = ids.shape
    h = dec.embed_tokens(ids) + dec.embed_positions.weight[:L]
    km = ids_mask[:, None, None, :]
    if causal:
        km = km & torch.ones(L, L, dtype=torch.bool, device=ids.device).tril()[None, None]
    em = enc_mask[:, None, None, :]
    for layer in dec.layers:
        a = layer.self_attn
        x = layer.self_attn_layer_norm(h)
        h = h + _attn(a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads, x, x, km)
        a = layer.encoder_attn
        x = layer.encoder_attn_layer_norm(h)
        h = h + _attn(a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads, x, enc_out, em)
        x = layer.final_layer_norm(h)
        h = h + layer.fc2(F.gelu(layer.fc1(x)))
    return dec.layer_norm(h)


def pad_stack(arrs, dtype=torch.float32):
    T = max(a.shape[0] for a in arrs)
    x = torch.zeros(len(arrs), T, arrs[0].shape[1], dtype=dtype)
    m = torch.zeros(len(arrs), T, dtype=torch.bool)
    for i, a in enumerate(arrs):
        x[i, : a.shape[0]] = a.to(dtype)
        m[i, : a.shape[0]] = True
    return x, m


def batches(items, max_frames: int, shuffle: bool, seed: int = 0):
    """Duration-sorted buckets of items, total frames <= max_frames."""
    import random
    order = sorted(range(len(items)), key=lambda i: items[i]["dur"])
    out, cur, cur_max = [], [], 0
    for i in order:
        f = items[i]["h4"].shape[0]
        if cur and max(cur_max, f) * (len(cur) + 1) > max_frames:
            out.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, f)
    if cur:
        out.append(cur)
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


def shortlist(tok, exclude: set[str]):
    """Token ids of every fortune sentence not in `exclude` (sentence-cased, leading space), + EOT.
    Returns (ids tensor sorted, map full id -> short index tensor)."""
    from whisper_llada.data.fortunes import fortune_sentences
    ids = {EOT}
    for s in fortune_sentences():
        if s in exclude:
            continue
        ids.update(tok.encode(" " + sentence_case(s), add_special_tokens=False))
    ids = torch.tensor(sorted(ids))
    full2short = torch.full((60000,), -1, dtype=torch.long)
    full2short[ids] = torch.arange(len(ids))
    return ids, full2short
