"""How a speech LM's LLM reads the audio, plugged into the model by the registry's ``layout``: the
Q-Former's audio tokens as a prefix of the text (the paper), or cross-attention to the encoder's frames.

A layout holds no weights (the model keeps the Q-Former and the LLM, so checkpoints keep their
keys); it decides the model's prefix and training pass, and for a masked-diffusion model the
denoiser that the loss, the samplers and scoring call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from whisper_llada.data.audio import TOKENS, Audio
from whisper_llada.diffusion.cross_attention import BlockCacheDenoiser, CrossAttentionDenoiser
from whisper_llada.diffusion.denoiser import Denoiser, make_denoiser


class QFormerPrefix:
    """The paper's layout: ``[prompt][audio tokens]`` before the response, read through the LLM's
    ``inputs_embeds`` (``SpeechLLM.build_prefix``); text-only pre-training reads the prompt alone."""

    name = "prefix"
    block_diffusion = False  # model.llm.block_size needs a denoiser that builds block diffusion

    def prefix(self, model, audio: Audio):
        return model.build_prefix(*model.llm_audio(audio))

    def forward(self, model, texts: Sequence[str], audio: Audio | None, generator=None) -> dict:
        """The training loss of a batch (``SpeechLLM.forward``): with the auxiliary CTC loss and the
        two training stages of the front end."""
        if audio is None:
            return model.loss(*model.text_prefix(len(texts)), texts, generator)
        if audio.kind == TOKENS:
            if not model.frontend_frozen:
                raise ValueError(
                    "cached audio tokens stand for a frozen front end (train.frontend_epochs or frontend_from)"
                )
            return model.loss(*self.prefix(model, audio), texts, generator)
        with torch.no_grad() if model.frontend_frozen else nullcontext():
            tokens, tokens_mask = model.audio_tokens(audio)
        if model.ctc_only:
            ctc = model.ctc_loss(tokens, tokens_mask, texts)
            return {"loss": ctc, "ctc_loss": ctc, "num_utts": len(texts)}
        out = model.loss(*model.build_prefix(*model.compress(tokens, tokens_mask)), texts, generator)
        if model.ctc_head is not None and not model.frontend_frozen:
            out["ctc_loss"] = model.ctc_loss(tokens, tokens_mask, texts)
            out["loss"] = out["loss"] + model.cfg.loss.ctc_weight * out["ctc_loss"]
        return out

    def denoiser(self, model, cfg=None) -> Denoiser:
        """Recomputing, or with the prefix cache a decode setting asks for (``cache``, ``cache_refresh``)."""
        if cfg is None:
            return make_denoiser(model.llm, prefix_attends_response=model.cfg.prefix_attends_response, cache="none")
        return make_denoiser(
            model.llm,
            prefix_attends_response=model.cfg.prefix_attends_response,
            cache=cfg.cache,
            refresh=cfg.cache_refresh,
        )

    def training_logits(self, model, prefix, prefix_mask, response, prefix_positions, masked, target=None):
        """The whole response block's logits (B, L, V)."""
        del masked, target
        return model.logits(prefix, prefix_mask, response, prefix_positions)

    def canvas_lengths(self, model, batch: dict, prefix_mask: torch.Tensor, cfg) -> torch.Tensor:
        """Per-row canvas for ``gen_len: auto``: the number of CTC-compressed audio tokens (about one
        per text token) when the model reads them, else the duration times the training
        transcripts' token rate (the lang stage's ``token_rate.json``); plus ``len_margin``."""
        cap = model.cfg.loss.response_length
        if model.cfg.ctc_compress:
            n_audio = prefix_mask.sum(1) - len(model.prompt_ids)
            est = n_audio.float() * cfg.len_scale
        else:
            rate = token_rate(model.cfg, cfg)
            est = torch.tensor(batch["durations"], dtype=torch.float32, device=prefix_mask.device) * rate
        return (est.ceil().long() + cfg.len_margin).clamp(min=2, max=cap)

    def next_token_loss(self, model, prefix, texts: Sequence[str]) -> torch.Tensor:
        raise ValueError(
            f"{model.cfg.arch}: model.loss.ar_weight is the next-token loss of a cross-attention decoder "
            "(whisper_decoder_mdm); this model reads a prefix"
        )


class EncoderCrossAttention:
    """Every LLM layer attends to the encoder's frames (Whisper's own decoder): the model's "prefix" is
    the frames and their key-padding mask; the prompt is the LLM's own first tokens."""

    name = "cross_attention"
    block_diffusion = True

    def frames(self, model, audio: Audio | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's frames (B, T, C) the LLM attends to and their key-padding mask (B, T)."""
        if audio is None:
            raise ValueError(
                f"{model.cfg.arch} cannot pre-train on text alone (train.lm_epochs): it has no audio-free input"
            )
        frames, real = model.encoder_output(audio)
        return frames, Audio.frames(frames, real).mask

    def prefix(self, model, audio: Audio | None):
        return (*self.frames(model, audio), None)

    def forward(self, model, texts: Sequence[str], audio: Audio | None, generator=None) -> dict:
        return model.loss(*self.prefix(model, audio), texts, generator)

    def denoiser(self, model, cfg=None) -> Denoiser:
        """Recomputing the response every call (training, scoring, ``cache: none``); a block-diffusion
        model decodes with the exact block cache (``cache`` auto or exact)."""
        b = model.cfg.llm.block_size
        if cfg is not None and cfg.cache == "approximate":
            raise ValueError(
                f"{model.cfg.arch}: cache approximate has nothing to approximate (the audio never attends to "
                "the response); use auto"
            )
        if b is not None and cfg is not None and cfg.cache in ("auto", "exact"):
            return BlockCacheDenoiser(model.llm, model.prompt_ids, b, model.mask_id)
        return CrossAttentionDenoiser(model.llm, model.prompt_ids, b)

    def training_logits(self, model, prefix, prefix_mask, response, prefix_positions, masked, target=None):
        """The ``masked`` positions' logits only (n, V): the output layer over Whisper's 51,865 ids is
        most of a pass. A block-diffusion model reads the blocks before each block from ``target``."""
        del prefix_positions
        den = self.denoiser(model)
        state = den.prefill(prefix, prefix_mask)
        return den.selected_logits(state, response, torch.ones_like(masked), None, masked, clean=target)

    def canvas_lengths(self, model, batch: dict, prefix_mask: torch.Tensor, cfg) -> torch.Tensor:
        raise ValueError(f"{model.cfg.arch}: gen_len auto is not available yet; give gen_len a number")

    def next_token_logits(self, model, frames, mask, seqs: Sequence[Sequence[int]]):
        """Teacher forcing of each row's tokens + EOS after the prompt: the logits that predict them
        (n, V), the n targets, and the row of each."""
        eos, P, dev = model.tokenizer.eos_id, len(model.prompt_ids), model.device
        rows = [model.prompt_ids.tolist() + list(ids) + [eos] for ids in seqs]
        L = max(map(len, rows))
        ids = torch.tensor([r + [eos] * (L - len(r)) for r in rows], device=dev)
        real = torch.tensor([[j < len(r) for j in range(L)] for r in rows], device=dev)
        hidden = model.llm(ids, real, model.llm.cross_kv(frames), mask, causal=True)[:, P - 1 : -1]
        valid = real[:, P:]
        row = torch.arange(len(rows), device=dev)[:, None].expand_as(valid)[valid]
        return model.llm.logits(hidden[valid]), ids[:, P:][valid], row

    def next_token_loss(self, model, prefix, texts: Sequence[str]) -> torch.Tensor:
        """The decoder run causally on the batch: the next-token loss it was pretrained with."""
        import torch.nn.functional as F

        frames, mask, _ = prefix
        logits, target, _ = self.next_token_logits(model, frames, mask, model.encode_texts(texts))
        return F.cross_entropy(logits.float(), target)


def token_rate(model_cfg, cfg) -> float:
    """Tokens per second of speech that bounds the training transcripts (``gen_len: auto``)."""
    path = Path(cfg.token_rate) if cfg.token_rate else None
    if path is None and model_cfg.tokenizer.type == "sentencepiece" and model_cfg.tokenizer.path:
        path = Path(model_cfg.tokenizer.path).parent / "token_rate.json"
    if path is None:
        raise ValueError(
            "gen_len auto without CTC-compressed audio tokens needs a token rate: set the decode "
            "setting's token_rate to a token_rate.json (the lang stage writes one for BPE)"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the token rate that gen_len auto needs is missing; the lang stage "
            "(local/prepare_lang.py) writes it beside bpe.model"
        )
    try:
        return float(json.loads(path.read_text())["tokens_per_second"])
    except (ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a token-rate file ({e}); rerun the lang stage to rewrite it") from e


LAYOUTS = {layout.name: layout for layout in (QFormerPrefix(), EncoderCrossAttention())}


def audio_layout(name: str):
    """The layout a registry entry names (``Arch.layout``)."""
    if name not in LAYOUTS:
        raise ValueError(f"audio layout {name!r}: expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[name]
