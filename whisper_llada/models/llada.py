"""Native LLaDA: the masked-diffusion LLM with bidirectional attention.

Reads and writes hub-format directories (``config.json`` + safetensors, sharded or
not) with the hub's weight names, so no ``trust_remote_code`` is needed. Unlike the
hub's modelling code it honours a key-padding ``attention_mask``. LLaDA-8B's shape, block,
weight names and token ids: docs/models.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from whisper_llada.utils.checkpoint_io import (
    atomic_write_text,
    load_state_dict_strict,
    read_safetensors_dir,
    write_safetensors_dir,
)

log = logging.getLogger(__name__)

# Options of the hub config that change the computation; we support only the
# values LLaDA uses and refuse the rest instead of silently computing something else.
_REQUIRED_VALUES = {
    "alibi": False,
    "block_type": "llama",
    "activation_type": "silu",
    "layer_norm_type": "rms",
    "rope": True,
    "input_emb_norm": False,
    "scale_logits": False,
    "clip_qkv": None,
    "attention_layer_norm": False,
    "multi_query_attention": None,
    "multi_query_attention_false": None,
}


@dataclass
class LLaDAConfig:
    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None
    n_layers: int = 32
    mlp_hidden_size: int = 12288
    vocab_size: int = 126464
    embedding_size: int | None = None  # rows of wte / ff_out; defaults to vocab_size
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    max_sequence_length: int = 4096
    mask_token_id: int = 126336
    eos_token_id: int = 126081
    pad_token_id: int = 126081
    include_bias: bool = False
    weight_tying: bool = False
    init_std: float = 0.02
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def num_kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def padded_vocab(self) -> int:
        return self.embedding_size or self.vocab_size

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> LLaDAConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        for key, want in _REQUIRED_VALUES.items():
            if key in d and d[key] != want and not (want is None and d[key] in (False, None)):
                raise ValueError(f"{source}: LLaDA option {key}={d[key]!r} is not supported (expected {want!r})")
        kwargs = {k: v for k, v in d.items() if k in names}
        # The hub config names the eps "rms_norm_eps" in LLaDA and "layer_norm_eps" in OLMo.
        if "rms_norm_eps" not in d and "layer_norm_eps" in d:
            kwargs["rms_norm_eps"] = d["layer_norm_eps"]
        for req in ("d_model", "n_heads", "n_layers", "vocab_size"):
            if req not in d:
                raise ValueError(f"{source}: missing required LLaDA config field {req!r}")
        cfg = cls(**kwargs, extra={k: v for k, v in d.items() if k not in names})
        if cfg.d_model % cfg.n_heads or cfg.n_heads % cfg.num_kv_heads:
            raise ValueError(
                f"{source}: d_model {cfg.d_model}, n_heads {cfg.n_heads}, n_kv_heads {cfg.n_kv_heads} do not divide"
            )
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> LLaDAConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: LLaDA config.json not found")
        return cls.from_dict(json.loads(path.read_text()), source=str(path))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d.update(self.extra)
        d.setdefault("model_type", "llada")
        d.setdefault("architectures", ["LLaDAModelLM"])
        return d


class RMSNorm(nn.Module):
    """Weight-only RMSNorm, normalising in float32 as LLaDA does."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """Half-rotation RoPE computed in float32; cos/sin cached per length."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(
        self, seq_len: int, device: torch.device, position_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, hd) tables for positions 0..T-1, or (B, 1, T, hd) for per-row ``position_ids`` (B, T)."""
        if position_ids is None:
            pos = torch.arange(seq_len, device=device, dtype=torch.float32)
            freqs = torch.outer(pos, self.inv_freq.to(device))
        else:
            freqs = (position_ids.to(device, torch.float32)[..., None] * self.inv_freq.to(device))[:, None]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half rotation: dimension i pairs with i + head_dim/2; float32 as in LLaDA."""
    dtype = x.dtype
    x = x.float()
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(dtype)


class LLaDABlock(nn.Module):
    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        hd = cfg.d_model // cfg.n_heads
        bias = cfg.include_bias
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.num_kv_heads, hd
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * hd, bias=bias)
        self.k_proj = nn.Linear(cfg.d_model, self.n_kv * hd, bias=bias)
        self.v_proj = nn.Linear(cfg.d_model, self.n_kv * hd, bias=bias)
        self.attn_out = nn.Linear(cfg.d_model, cfg.d_model, bias=bias)
        self.ff_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden_size, bias=bias)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden_size, bias=bias)
        self.ff_out = nn.Linear(cfg.mlp_hidden_size, cfg.d_model, bias=bias)

    def forward(self, x, cos, sin, attn_bias, past: tuple | None = None, keep: int = 0):
        """One block; ``past`` = (k, v) of earlier positions that these queries also attend to.

        Returns x, or (x, (k, v) of the first ``keep`` positions) when ``keep`` > 0 (a cache).
        """
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kept = (k[:, :, :keep], v[:, :, :keep]) if keep else None
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if self.n_kv != self.n_heads:
            rep = self.n_heads // self.n_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        # No causal mask: LLaDA attends in both directions.
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, is_causal=False)
        x = x + self.attn_out(a.transpose(1, 2).reshape(B, T, -1))
        h = self.ff_norm(x)
        x = x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))
        return (x, kept) if keep else x


@dataclass
class LMOutput:
    logits: torch.Tensor
    # Per block (k, v) of the first ``keep_kv`` positions (after RoPE, before GQA repetition).
    past_key_values: list | None = None


class LLaDAModelLM(nn.Module):
    """LLaDA with the hub's module tree: ``model.transformer.{wte,blocks,ln_f,ff_out}``."""

    # forward takes past_key_values / keep_kv / prefix_length (whisper_llada.diffusion.denoiser).
    supports_prefix_cache = True

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.config = config
        tr = nn.Module()
        tr.wte = nn.Embedding(config.padded_vocab, config.d_model)
        tr.blocks = nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers))
        tr.ln_f = RMSNorm(config.d_model, config.rms_norm_eps)
        if not config.weight_tying:
            tr.ff_out = nn.Linear(config.d_model, config.padded_vocab, bias=config.include_bias)
        self.model = nn.Module()
        self.model.transformer = tr
        self.rotary = RotaryEmbedding(config.d_model // config.n_heads, config.rope_theta)
        self.gradient_checkpointing = False
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.config.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # --- interface shared with Hugging Face models -----------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def gradient_checkpointing_enable(self, **_: Any) -> None:
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing = False

    @property
    def device(self) -> torch.device:
        return self.model.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.transformer.wte.weight.dtype

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        position_ids: torch.Tensor | None = None,
        past_key_values: list | None = None,
        past_mask: torch.Tensor | None = None,
        keep_kv: int = 0,
        prefix_length: int = 0,
        **_: Any,
    ) -> LMOutput:
        """Logits (B, T, V), or of the last ``logits_to_keep`` positions only (0 = all).

        Decoding needs only the response positions; skipping the head elsewhere saves
        most of its cost with a 126k vocabulary. ``past_key_values`` (from ``keep_kv`` of an
        earlier call) are keys and values of positions before these, with their key-padding
        ``past_mask`` (B, P); the new positions attend to them and to themselves.
        ``prefix_length`` P > 0: the first P positions do not attend to the later ones (a
        prefix that never sees the response, so its keys and values can be cached exactly).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        tr = self.model.transformer
        x = tr.wte(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        P = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if P + T > self.config.max_sequence_length:
            raise ValueError(
                f"sequence of {P + T} tokens exceeds max_sequence_length {self.config.max_sequence_length}"
            )
        if position_ids is not None and position_ids.shape != (B, T):
            raise ValueError(f"position_ids {tuple(position_ids.shape)} do not match the input ({B}, {T})")
        if P and position_ids is None:
            position_ids = torch.arange(P, P + T, device=x.device).expand(B, -1)
        cos, sin = self.rotary.cos_sin(T, x.device, position_ids)
        attn_bias = self._attn_bias(B, T, x, attention_mask, past_mask if P else None, prefix_length)
        kept = [] if keep_kv else None
        for i, block in enumerate(tr.blocks):
            past = None if past_key_values is None else past_key_values[i]
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                out = checkpoint(block, x, cos, sin, attn_bias, past, keep_kv, use_reentrant=False)
            else:
                out = block(x, cos, sin, attn_bias, past, keep_kv)
            if keep_kv:
                x, kv = out
                kept.append(kv)
            else:
                x = out
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]
        x = tr.ln_f(x)
        head = tr.wte.weight if self.config.weight_tying else tr.ff_out.weight
        logits = F.linear(x, head, None if self.config.weight_tying else tr.ff_out.bias)
        return LMOutput(logits=logits, past_key_values=kept)

    @staticmethod
    def _attn_bias(B: int, T: int, x: torch.Tensor, attention_mask, past_mask, prefix_length: int):
        """Additive attention bias: padded keys (``past_mask`` then ``attention_mask``) hidden
        from every query, so a padded row computes exactly what it computes alone; with
        ``prefix_length`` P, the first P queries also do not see the keys after them."""
        if attention_mask is None and past_mask is None and not prefix_length:
            return None
        keys = []
        if past_mask is not None:
            keys.append(past_mask.to(torch.bool))
        keys.append(
            torch.ones(B, T, dtype=torch.bool, device=x.device)
            if attention_mask is None
            else attention_mask.to(torch.bool)
        )
        keep = torch.cat(keys, dim=1).view(B, 1, 1, -1)
        if prefix_length:
            S = keep.shape[-1]
            q = torch.arange(T, device=x.device)[:, None] + (S - T)
            k = torch.arange(S, device=x.device)[None, :]
            keep = keep & ~((q < prefix_length) & (k >= prefix_length))[None, None]
        bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
        return bias.masked_fill(~keep, torch.finfo(x.dtype).min)

    # --- hub format ----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: LLaDAConfig | dict, dtype: torch.dtype | None = None) -> LLaDAModelLM:
        if isinstance(config, dict):
            config = LLaDAConfig.from_dict(config)
        # Built at ``dtype`` directly: a float32 copy first would need twice a bfloat16 model's
        # host memory (32 GB at 8B) before the cast.
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype or default)
        try:
            model = cls(config)
        finally:
            torch.set_default_dtype(default)
        return model.to(dtype) if dtype is not None else model

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None) -> LLaDAModelLM:
        path = Path(path)
        config = LLaDAConfig.from_json(path / "config.json")
        with torch.device("meta"):
            model = cls(config)
        state = read_safetensors_dir(path)
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        load_state_dict_strict(model, state, source=str(path), assign=True)
        # Non-persistent buffers were created on the meta device: rebuild them.
        model.rotary = RotaryEmbedding(config.d_model // config.n_heads, config.rope_theta)
        log.info("loaded LLaDA from %s (%d layers, d_model %d)", path, config.n_layers, config.d_model)
        return model

    def save_pretrained(self, path: str | Path, max_shard_size: int = 5 * 1024**3) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / "config.json", json.dumps(self.config.to_dict(), indent=2))
        write_safetensors_dir(self.state_dict(), path, max_shard_size=max_shard_size)
