"""Whisper's pretrained decoder as a language model over the encoder's frames (the LM of the
``whisper_decoder_mdm`` and ``whisper_decoder_ar`` archs), run causally or bidirectionally.

Cross-attention keys and values of the frames are computed once per utterance (``cross_kv``); the
self-attention can take a key cache and any attention pattern (block diffusion's). See docs/models.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _attend(attn: nn.Module, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> torch.Tensor:
    """One of Whisper's attention modules with given keys and values (B, H, S, hd); mask (B|1, 1, L|1, S) bool."""
    B, L, C = x.shape
    H = k.shape[1]
    q = attn.q_proj(x).view(B, L, H, C // H).transpose(1, 2)
    # Whisper scales queries inside q_proj's use (HF multiplies by head_dim ** -0.5); so does SDPA's default.
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.out_proj(o.transpose(1, 2).reshape(B, L, C))


def _heads(proj: nn.Module, x: torch.Tensor, H: int) -> torch.Tensor:
    B, T, C = x.shape
    return proj(x).view(B, T, H, C // H).transpose(1, 2)


class WhisperDecoderLM(nn.Module):
    """Whisper's decoder run either way: causal (next token) or bidirectional (masked diffusion),
    over per-layer cross-attention keys and values computed once per utterance (``cross_kv``)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.num_heads = decoder.layers[0].self_attn.num_heads

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def pretrained_only(self) -> list[nn.Module]:
        """What fine-tuning leaves as pretrained (the builder freezes it after choosing what trains):
        the learned positions, which a short corpus would unlearn beyond the lengths it reaches."""
        return [self.decoder.embed_positions]

    @property
    def num_layers(self) -> int:
        return len(self.decoder.layers)

    @property
    def max_positions(self) -> int:
        return self.decoder.embed_positions.weight.shape[0]

    def cross_kv(self, frames: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        H = self.num_heads
        return [
            (_heads(layer.encoder_attn.k_proj, frames, H), _heads(layer.encoder_attn.v_proj, frames, H))
            for layer in self.decoder.layers
        ]

    def forward(
        self,
        ids: torch.Tensor,
        key_mask: torch.Tensor,
        cross: list,
        frames_mask: torch.Tensor,
        causal: bool,
        start: int = 0,
        cache: list | None = None,
        positions: torch.Tensor | None = None,
        pattern: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, L, C) of ``ids`` at positions ``start``.. (or the given ``positions`` (L,));
        ``key_mask`` (B, S) marks real keys (the cached ones first); ``cache``: per-layer (k, v) of
        earlier positions, extended in place; ``pattern`` (L, S) bool: which keys each query may see
        (instead of ``causal``)."""
        dec, H = self.decoder, self.num_heads
        L = ids.shape[1]
        if positions is None:
            positions = torch.arange(start, start + L, device=ids.device)
        if int(positions.max()) >= self.max_positions:
            raise ValueError(
                f"{int(positions.max()) + 1} decoder positions asked for; Whisper's decoder has {self.max_positions}"
            )
        h = dec.embed_tokens(ids) + dec.embed_positions.weight[positions]
        self_mask = key_mask[:, None, None, :]
        if pattern is not None:
            self_mask = self_mask & pattern
        elif causal:
            S = key_mask.shape[1]
            self_mask = self_mask & torch.ones(L, S, dtype=torch.bool, device=ids.device).tril(S - L)
        cross_mask = frames_mask[:, None, None, :]
        for i, layer in enumerate(dec.layers):
            x = layer.self_attn_layer_norm(h)
            k, v = _heads(layer.self_attn.k_proj, x, H), _heads(layer.self_attn.v_proj, x, H)
            if cache is not None:
                if cache[i] is not None:
                    k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
                cache[i] = (k, v)
            h = h + _attend(layer.self_attn, x, k, v, self_mask)
            x = layer.encoder_attn_layer_norm(h)
            h = h + _attend(layer.encoder_attn, x, *cross[i], cross_mask)
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        return dec.layer_norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.decoder.embed_tokens.weight.T  # Whisper ties its output to the embeddings


def build_whisper_decoder_lm(cfg, tokenizer, dtype) -> WhisperDecoderLM:
    """The registry's LLM builder: the decoder of ``model.whisper``'s directory (or its random config)."""
    del tokenizer
    from whisper_llada.models.whisper_encoder import load_whisper_part

    return WhisperDecoderLM(load_whisper_part("decoder", cfg.whisper.path, cfg.whisper.config).to(dtype))
