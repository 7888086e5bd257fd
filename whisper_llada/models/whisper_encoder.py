"""The frozen Whisper encoder: loaded from any Hugging Face Whisper directory, or built from a config.

Also pads lhotse-style (B, T, F) log-mel batches to the encoder's fixed 30 s input as
Whisper's own front end would.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from whisper_llada.utils.checkpoint_io import load_state_dict_strict

log = logging.getLogger(__name__)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from whisper_llada.utils.checkpoint_io import read_safetensors_dir

    try:
        return read_safetensors_dir(path)
    except FileNotFoundError:
        binf = path / "pytorch_model.bin"
        if binf.is_file():
            return torch.load(binf, map_location="cpu", weights_only=True)
        raise FileNotFoundError(
            f"{path}: no Whisper weights (model.safetensors[.index.json] or pytorch_model.bin)"
        ) from None


# What lhotse's WhisperFbank computes (16 kHz, 25 ms window, 10 ms shift): a Whisper directory's
# feature extractor must agree, or the encoder reads features unlike those it was trained on.
def load_whisper_part(part: str, path: str | None = None, config: dict | None = None) -> nn.Module:
    """Whisper's ``encoder`` or ``decoder`` (``transformers`` modules) with a directory's weights, or
    random from ``config``: only that part's weights are materialised."""
    from transformers import WhisperConfig
    from transformers.models.whisper import modeling_whisper

    cls = {"encoder": modeling_whisper.WhisperEncoder, "decoder": modeling_whisper.WhisperDecoder}[part]
    if config is not None:
        return cls(WhisperConfig(**config))
    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p}: not a Whisper directory (no config.json)")
    module = cls(WhisperConfig(**json.loads((p / "config.json").read_text())))
    state = _read_weights(p)
    for prefix in (f"model.{part}.", f"{part}."):
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            break
    else:
        raise ValueError(f"{p}: no {part} weights (keys starting with model.{part}. or {part}.)")
    load_state_dict_strict(module, sub, source=str(p))
    return module


def load_whisper_encoder(path: str | None = None, config: dict | None = None) -> nn.Module:
    """Encoder only: the decoder's weights in the directory are never materialised."""
    encoder = load_whisper_part("encoder", path, config).eval()
    if config is None:
        cfg = encoder.config
        log.info("loaded Whisper encoder from %s (d_model %d, %d mel bins)", path, cfg.d_model, cfg.num_mel_bins)
    return encoder


def input_frames(encoder: nn.Module) -> int:
    """Number of log-mel frames the encoder takes (3000 = 30 s for real Whisper models)."""
    return encoder.config.max_source_positions * 2


def pad_features(features: torch.Tensor, feature_lens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, T, F) log-mel -> (B, F, num_frames) Whisper input.

    Whisper pads the waveform with zeros, whose log-mel is clamped to 8 (log10) below the
    utterance's maximum, i.e. (max - 2) after its (x + 4) / 4 scaling; padding frames get
    that value so a padded batch feeds the encoder what each utterance alone would.
    """
    B, T, F = features.shape
    if int(feature_lens.max()) > num_frames:
        raise ValueError(
            f"utterance of {int(feature_lens.max())} frames exceeds the encoder's {num_frames}-frame window"
        )
    frames = torch.arange(max(T, num_frames), device=features.device)
    real = frames[None, :T] < feature_lens[:, None].to(features.device)
    row_max = features.masked_fill(~real[..., None], float("-inf")).amax(dim=(1, 2))
    floor = (row_max - 2.0)[:, None, None]
    out = floor.expand(B, num_frames, F).clone()
    n = min(T, num_frames)
    out[:, :n] = torch.where(real[:, :n, None], features[:, :n], floor)
    return out.transpose(1, 2)


def encode_audio_window(
    encoder: nn.Module, features: torch.Tensor, feature_lens: torch.Tensor, out_frames: int, stop: int | None = None
) -> torch.Tensor:
    """Run the encoder on the first ``out_frames`` output frames only, instead of a 30 s window;
    with ``stop``, only its first ``stop`` layers (no final layer norm: ``adapted_layers`` follow).

    Frames past each utterance are zero at the convolutions' input and invisible as
    attention keys, so a row's output does not depend on the rest of the batch; it is
    not what Whisper computes on 30 s (its frames also attend to the padding), but it costs
    a fraction on short utterances.
    """
    import torch.nn.functional as F

    B, T, Fb = features.shape
    n_in = 2 * out_frames
    dtype = next(encoder.parameters()).dtype
    x = torch.zeros(B, n_in, Fb, dtype=dtype, device=features.device)
    n = min(T, n_in)
    real_in = torch.arange(n_in, device=features.device)[None, :] < feature_lens[:, None]
    x[:, :n] = features[:, :n].to(dtype)
    x = x.masked_fill(~real_in[..., None], 0.0).transpose(1, 2)
    h = F.gelu(encoder.conv1(x))
    h = h.masked_fill(~real_in[:, None, :], 0.0)  # what conv2's zero padding would see alone
    h = F.gelu(encoder.conv2(h)).transpose(1, 2)
    h = h + encoder.embed_positions.weight[:out_frames].to(h.dtype)
    bias = key_padding_bias((feature_lens + 1) // 2, out_frames, h.dtype)
    for layer in encoder.layers[:stop]:
        h = layer(h, bias)
        h = h[0] if isinstance(h, tuple) else h
    return h if stop is not None else encoder.layer_norm(h)


def key_padding_bias(real: torch.Tensor, frames: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, 1, frames) attention bias that hides the frames past each row's ``real``."""
    keep = torch.arange(frames, device=real.device)[None, :] < real[:, None]
    bias = torch.zeros(real.shape[0], 1, 1, frames, dtype=dtype, device=real.device)
    return bias.masked_fill(~keep[:, None, None, :], torch.finfo(dtype).min)


def adapted_layers(encoder: nn.Module, start: int, frames: torch.Tensor, real: torch.Tensor, window: str):
    """The encoder's layers from ``start`` on and its final layer norm, on the hidden states
    (B, T, C) its first ``start`` layers gave (``run_frozen_encoder(..., stop=start)``). Frames
    past ``real`` are hidden as keys (``window`` audio) or seen, as Whisper sees its padding (full)."""
    h = frames.to(next(encoder.parameters()).dtype)
    bias = key_padding_bias(real.to(h.device), h.shape[1], h.dtype) if window == "audio" else None
    for layer in encoder.layers[start:]:
        h = layer(h, bias)
        h = h[0] if isinstance(h, tuple) else h
    return encoder.layer_norm(h)


@torch.no_grad()
def run_frozen_encoder(
    encoder: nn.Module, window: str, features: torch.Tensor, feature_lens: torch.Tensor, frames_needed, stop=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, F) log-mel -> encoder frames and the number of real frames per row.

    ``window`` "full": Whisper's 30 s window (1500 frames); "audio": only the leading frames
    ``frames_needed(real, total)`` says the model reads (``encode_audio_window``). ``stop``: the
    hidden states after the first ``stop`` layers instead (the rest are trained: ``adapted_layers``).
    """
    from whisper_llada.models.qformer import encoder_frames

    total = encoder.config.max_source_positions
    real = encoder_frames(feature_lens).clamp(max=total)
    if window == "audio":
        need = int(frames_needed(real, total).max())
        return encode_audio_window(encoder, features, feature_lens, need, stop), real
    x = pad_features(features, feature_lens, input_frames(encoder))
    x = x.to(next(encoder.parameters()).dtype)
    if stop is not None:
        return encoder(x, output_hidden_states=True).hidden_states[stop], real
    return encoder(x).last_hidden_state, real
