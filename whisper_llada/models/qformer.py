"""Window-level Q-Former (as in SALMONN): a few learned queries read each window of encoder frames.

Module names follow BLIP-2's BERT Q-Former (``bert.encoder.layer.{i}.attention.self.query`` ...)
so the authors' released weights map onto it by a prefix rename.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from whisper_llada.config.model import QFormerConfig


class _Attention(nn.Module):
    """BERT attention: ``self.{query,key,value}`` then ``output.{dense,LayerNorm}`` (post-LN)."""

    def __init__(self, cfg: QFormerConfig, kv_width: int):
        super().__init__()
        h = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.self = nn.Module()
        self.self.query = nn.Linear(h, h)
        self.self.key = nn.Linear(kv_width, h)
        self.self.value = nn.Linear(kv_width, h)
        self.output = nn.Module()
        self.output.dense = nn.Linear(h, h)
        self.output.LayerNorm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        N, Q, H = x.shape
        hd = H // self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(N, -1, self.num_heads, hd).transpose(1, 2)

        q, k, v = heads(self.self.query(x)), heads(self.self.key(kv)), heads(self.self.value(kv))
        p = self.dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=p).transpose(1, 2).reshape(N, Q, H)
        out = F.dropout(self.output.dense(ctx), p=p, training=self.training)
        return self.output.LayerNorm(out + x)


class _QFormerLayer(nn.Module):
    def __init__(self, cfg: QFormerConfig, encoder_width: int):
        super().__init__()
        self.attention = _Attention(cfg, cfg.hidden_size)
        self.crossattention = _Attention(cfg, encoder_width)
        self.intermediate_query = nn.Module()
        self.intermediate_query.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output_query = nn.Module()
        self.output_query.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.output_query.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, x)
        x = self.crossattention(x, frames)
        h = self.output_query.dense(F.gelu(self.intermediate_query.dense(x)))
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.output_query.LayerNorm(h + x)


class WindowQFormer(nn.Module):
    """Encoder frames (B, T, C) -> audio tokens (B, windows * num_query, llm_dim) and their mask."""

    def __init__(self, cfg: QFormerConfig, encoder_width: int, llm_dim: int):
        super().__init__()
        self.cfg = cfg
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query, cfg.hidden_size).normal_(std=0.02))
        self.bert = nn.Module()
        self.bert.embeddings = nn.Module()
        self.bert.embeddings.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bert.encoder = nn.Module()
        self.bert.encoder.layer = nn.ModuleList(_QFormerLayer(cfg, encoder_width) for _ in range(cfg.num_layers))
        self.proj = nn.Linear(cfg.hidden_size, llm_dim)
        if cfg.proj_init_std is not None:
            nn.init.normal_(self.proj.weight, std=cfg.proj_init_std)
            nn.init.zeros_(self.proj.bias)

    def forward(self, frames: torch.Tensor, real_frames: torch.Tensor | None = None, total_frames: int | None = None):
        """``frames`` may hold only the leading frames the windows read (a cache), in which
        case ``total_frames`` gives the encoder's full output length."""
        B, T, C = frames.shape
        cfg = self.cfg
        total = total_frames or T
        if total < cfg.kernel:
            raise ValueError(f"encoder output has {total} frames, fewer than one window ({cfg.kernel})")
        if real_frames is None:
            real_frames = torch.full((B,), total, dtype=torch.long, device=frames.device)
        # Counted where the lengths are (a meta-device run gives them on the CPU); untrimmed, W is
        # known without reading them (no device sync).
        n_win = cfg.windows_for(real_frames, total)
        W = int(n_win.max()) if cfg.trim_to_audio else cfg.num_windows(total)
        n_win = n_win.to(frames.device)
        need = (W - 1) * cfg.stride + cfg.kernel
        if T < need:
            raise ValueError(f"the Q-Former reads {need} encoder frames but got {T}")
        # Only the frames the kept windows need are read.
        used = frames[:, :need]
        win = used.unfold(1, cfg.kernel, cfg.stride)[:, :W]  # (B, W, C, kernel)
        win = win.permute(0, 1, 3, 2).reshape(B * W, cfg.kernel, C)
        x = self.bert.embeddings.LayerNorm(self.query_tokens.expand(B * W, -1, -1))
        x = F.dropout(x, p=cfg.dropout, training=self.training)
        win = win.to(x.dtype)
        for layer in self.bert.encoder.layer:
            x = layer(x, win)
        out = self.proj(x).view(B, W * cfg.num_query, -1)
        keep = torch.arange(W, device=frames.device)[None, :] < n_win[:, None]
        mask = keep.repeat_interleave(cfg.num_query, dim=1)
        return out, mask


def encoder_frames(num_feature_frames: torch.Tensor) -> torch.Tensor:
    """Whisper's two convolutions (the second with stride 2) halve the frame count, rounding up."""
    return torch.div(num_feature_frames + 1, 2, rounding_mode="floor")
