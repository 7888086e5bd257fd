"""CTranslate2 Whisper (``model.bin``, as faster-whisper uses) to a Hugging Face Whisper directory.

The binary holds a version, the spec name, and named arrays; attention projections are
fused (self-attention q|k|v, cross-attention k|v), and a zero bias stands for the key
projection that Whisper has none of. The output loads with ``WhisperForConditionalGeneration``.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# CTranslate2's DataType enum.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Spec name and variables (aliases resolved) of a CTranslate2 ``model.bin``."""
    path = Path(path)
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    def string() -> str:
        nonlocal pos
        n = take("<H")
        s = data[pos : pos + n - 1].decode()
        pos += n
        return s

    version = take("<I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}; this reader knows version 6")
    spec = string()
    take("<I")  # spec revision
    out: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype_id, nbytes = take("<B"), take("<I")
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if dtype_id not in _DTYPES:
            raise ValueError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        if _DTYPES[dtype_id] == "bfloat16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, _DTYPES[dtype_id])
        out[name] = arr.reshape(shape) if shape else arr.reshape(())
    for _ in range(take("<I")):
        alias, target = string(), string()
        out[alias] = out[target]
    return spec, out


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _layer(v: dict, src: str, dst: str, sd: dict, cross: bool) -> None:
    def ln(s, d):
        sd[f"{d}.weight"], sd[f"{d}.bias"] = _t(v[f"{s}/gamma"]), _t(v[f"{s}/beta"])

    def lin(s, d, bias=True):
        sd[f"{d}.weight"] = _t(v[f"{s}/weight"])
        if bias:
            sd[f"{d}.bias"] = _t(v[f"{s}/bias"])

    sa = f"{src}/self_attention"
    ln(f"{sa}/layer_norm", f"{dst}.self_attn_layer_norm")
    w, b = _t(v[f"{sa}/linear_0/weight"]), _t(v[f"{sa}/linear_0/bias"])
    for name, wi, bi in zip(("q_proj", "k_proj", "v_proj"), w.chunk(3), b.chunk(3)):
        sd[f"{dst}.self_attn.{name}.weight"] = wi
        if name != "k_proj":
            sd[f"{dst}.self_attn.{name}.bias"] = bi
    lin(f"{sa}/linear_1", f"{dst}.self_attn.out_proj")
    if cross:
        ca = f"{src}/attention"
        ln(f"{ca}/layer_norm", f"{dst}.encoder_attn_layer_norm")
        lin(f"{ca}/linear_0", f"{dst}.encoder_attn.q_proj")
        w, b = _t(v[f"{ca}/linear_1/weight"]), _t(v[f"{ca}/linear_1/bias"])
        (wk, wv), (_, bv) = w.chunk(2), b.chunk(2)
        sd[f"{dst}.encoder_attn.k_proj.weight"], sd[f"{dst}.encoder_attn.v_proj.weight"] = wk, wv
        sd[f"{dst}.encoder_attn.v_proj.bias"] = bv
        lin(f"{ca}/linear_2", f"{dst}.encoder_attn.out_proj")
    ln(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    lin(f"{src}/ffn/linear_0", f"{dst}.fc1")
    lin(f"{src}/ffn/linear_1", f"{dst}.fc2")


def _count(v: dict, prefix: str) -> int:
    return len({m.group(1) for k in v if (m := re.match(rf"{prefix}/layer_(\d+)/", k))})


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    added = json.loads(tokenizer_json.read_text()).get("added_tokens", [])
    return {t["content"]: t["id"] for t in added}


def _whisper_config(v: dict, special: dict[str, int]):
    """The ``WhisperConfig`` of the CTranslate2 variables ``v`` (shapes, layer counts, special ids)."""
    from transformers import WhisperConfig

    eot = special["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=v["encoder/conv1/weight"].shape[0],
        encoder_layers=_count(v, "encoder"),
        decoder_layers=_count(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=special["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=True,
    )


def _state_dict(v: dict) -> dict[str, torch.Tensor]:
    """The Hugging Face state dict of the CTranslate2 variables ``v`` (the output layer left tied)."""
    sd: dict[str, torch.Tensor] = {}
    for n in ("conv1", "conv2"):
        sd[f"model.encoder.{n}.weight"], sd[f"model.encoder.{n}.bias"] = (
            _t(v[f"encoder/{n}/weight"]),
            _t(v[f"encoder/{n}/bias"]),
        )
    sd["model.encoder.embed_positions.weight"] = _t(v["encoder/position_encodings/encodings"])
    sd["model.decoder.embed_positions.weight"] = _t(v["decoder/position_encodings/encodings"])
    sd["model.decoder.embed_tokens.weight"] = _t(v["decoder/embeddings/weight"])
    for part in ("encoder", "decoder"):
        sd[f"model.{part}.layer_norm.weight"] = _t(v[f"{part}/layer_norm/gamma"])
        sd[f"model.{part}.layer_norm.bias"] = _t(v[f"{part}/layer_norm/beta"])
        for i in range(_count(v, part)):
            _layer(v, f"{part}/layer_{i}", f"model.{part}.layers.{i}", sd, cross=part == "decoder")
    return sd


def _generation_config(cfg, ct2_cfg: dict, special: dict[str, int]):
    """Whisper's generation settings from the CTranslate2 config (suppressed ids, alignment heads,
    languages and tasks of a multilingual model)."""
    from transformers import GenerationConfig

    eot = special["<|endoftext|>"]
    multilingual = cfg.vocab_size >= 51865
    gen = GenerationConfig(
        decoder_start_token_id=cfg.decoder_start_token_id,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=cfg.max_target_positions,
        no_timestamps_token_id=special["<|notimestamps|>"],
        is_multilingual=multilingual,
        suppress_tokens=list(ct2_cfg.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_cfg.get("suppress_ids_begin", [])),
        alignment_heads=ct2_cfg.get("alignment_heads"),
        max_initial_timestamp_index=50,
        forced_decoder_ids=None if multilingual else [[1, special["<|notimestamps|>"]]],
    )
    if multilingual:
        gen.lang_to_id = {t: i for t, i in special.items() if i in set(ct2_cfg.get("lang_ids", []))}
        gen.task_to_id = {"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]}
    return gen


def convert_ct2_whisper(src: str | Path, dst: str | Path) -> Path:
    """Write ``dst`` (config, generation config, safetensors, tokenizer) from a CTranslate2 directory."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    src, dst = Path(src), Path(dst)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (src / name).is_file():
            raise FileNotFoundError(
                f"{src / name}: not found; a CTranslate2 Whisper directory has model.bin, config.json, tokenizer.json"
            )
    spec, v = read_ct2_model(src / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"{src / 'model.bin'}: spec {spec!r} is not WhisperSpec")
    special = _special_ids(src / "tokenizer.json")
    cfg = _whisper_config(v, special)
    sd = _state_dict(v)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(cfg)
    own = {k for k in model.state_dict() if k != "proj_out.weight"}  # tied to the token embedding
    missing, unexpected = sorted(own - set(sd)), sorted(set(sd) - own)
    if missing or unexpected:
        raise ValueError(
            f"{src}: conversion left {len(missing)} parameters unfilled (e.g. {missing[:3]}) "
            f"and {len(unexpected)} unused (e.g. {unexpected[:3]})"
        )
    model.load_state_dict(sd, strict=False, assign=True)
    model.tie_weights()
    model.generation_config = _generation_config(cfg, json.loads((src / "config.json").read_text()), special)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    tok = WhisperTokenizerFast(
        tokenizer_file=str(src / "tokenizer.json"),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tok.save_pretrained(str(dst))
    WhisperFeatureExtractor(feature_size=cfg.num_mel_bins).save_pretrained(str(dst))
    log.info(
        "converted %s (%s, d_model %d, %d+%d layers, vocab %d) to %s",
        src,
        spec,
        cfg.d_model,
        cfg.encoder_layers,
        cfg.decoder_layers,
        cfg.vocab_size,
        dst,
    )
    return dst
