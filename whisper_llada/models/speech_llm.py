"""The audio-conditioned LLM shared by Whisper-LLaDA, its autoregressive twins and any other LLM backend.

Frozen Whisper encoder (``FrozenWhisperFrontEnd``) and the LLM, read through an audio layout
(``models.audio_layout``). The Q-Former layout's parts live here: window-level Q-Former -> audio
tokens, placed after the chat prompt as ``[prompt][audio tokens]``, rows left-padded so every
response starts at the same position. Subclasses give the training ``loss`` and the decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from whisper_llada.checkpoint.files import load_model_state
from whisper_llada.config.model import ModelConfig
from whisper_llada.data.audio import TOKENS, Audio
from whisper_llada.data.tokenizer import TextTokenizer
from whisper_llada.models.audio_layout import audio_layout
from whisper_llada.models.ctc_compress import ctc_compress
from whisper_llada.models.frontend import FrozenWhisperFrontEnd
from whisper_llada.models.qformer import WindowQFormer


def left_align(embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None):
    """Move each row's padding (mask False) to the left, keeping the order of real positions.

    Returns (embeds, mask), or (embeds, mask, positions) when ``positions`` is given.
    """
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    embeds = torch.gather(embeds, 1, order[..., None].expand(-1, -1, embeds.shape[-1]))
    if positions is None:
        return embeds, torch.gather(mask, 1, order)
    return embeds, torch.gather(mask, 1, order), torch.gather(positions, 1, order)


class SpeechLLM(FrozenWhisperFrontEnd):
    def __init__(
        self,
        cfg: ModelConfig,
        encoder: nn.Module,
        qformer: WindowQFormer | None,
        llm: nn.Module,
        tokenizer: TextTokenizer,
    ):
        super().__init__(cfg, encoder)
        self.qformer = qformer
        self.llm = llm
        self.tokenizer = tokenizer
        # How the LLM reads the audio (no weights of its own: the Q-Former, if any, is ``qformer``).
        self.layout = audio_layout(cfg.arch_spec.layout)
        self.register_buffer(
            "prompt_ids", torch.tensor(tokenizer.prompt_ids(cfg.prompt), dtype=torch.long), persistent=False
        )
        # Auxiliary CTC over the audio tokens; the mask id, never a target, is the blank.
        self.ctc_head = nn.Linear(qformer.proj.out_features, tokenizer.vocab_size) if cfg.loss.ctc_weight > 0 else None
        # Two-stage training (set_stage): the front end alone with CTC, or the LLM on a frozen front end.
        self.ctc_only = False
        self.frontend_frozen = False

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frontend_frozen:
            self.qformer.eval()
        return self

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    def audio_tokens(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """The Q-Former's audio tokens (B, A, D) and mask (B, A) of features or cached encoder frames."""
        frames, real = self.encoder_output(audio)
        # ``real`` stays where it is: the Q-Former reads the window count there (the memory plan
        # keeps the lengths on the CPU while its frames are on the meta device).
        tokens, mask = self.qformer(frames, real, total_frames=self.encoder.config.max_source_positions)
        return tokens.to(self.embed_tokens(self.prompt_ids[:1]).dtype), mask

    def compress(self, audio: torch.Tensor, audio_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio tokens the LLM reads: as they are, or CTC-compressed (``model.ctc_compress``)."""
        if not self.cfg.ctc_compress:
            return audio, audio_mask
        with torch.no_grad():
            labels = self.ctc_head(audio).argmax(-1)
        return ctc_compress(audio, audio_mask, labels, self.tokenizer.mask_id)

    def build_prefix(self, audio: torch.Tensor, audio_mask: torch.Tensor):
        """The LLM's prefix per row, left-padded: (B, P, D) embeddings, (B, P) mask and (B, P)
        position ids, or None for the model's own sequential positions.

        ``positions: sequential`` (the paper): ``[prompt][audio]``. ``aligned``: ``[audio][prompt]``
        with the prompt at positions 0.., audio token k at position n_prompt + k; the response,
        continuing from the prompt, puts its token i at the position of audio token i.
        """
        B, A = audio_mask.shape
        prompt = self.embed_tokens(self.prompt_ids)[None].expand(B, -1, -1)
        n_p = prompt.shape[1]
        ones = torch.ones(B, n_p, dtype=torch.bool, device=audio.device)
        if self.cfg.positions == "sequential":
            embeds, mask = left_align(torch.cat([prompt, audio], dim=1), torch.cat([ones, audio_mask], dim=1))
            return embeds, mask, None
        # Real audio tokens come first in each row (the Q-Former and compression pack them left).
        pos = torch.cat([n_p + torch.arange(A, device=audio.device), torch.arange(n_p, device=audio.device)])
        mask = torch.cat([audio_mask, ones], dim=1)
        pos = pos[None].expand(B, -1).masked_fill(~mask, 0)
        return left_align(torch.cat([audio, prompt], dim=1), mask, pos)

    def llm_audio(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio tokens the LLM reads and their mask: made by the front end (``compress``
        included), or as the audio-token cache holds them."""
        if audio.kind == TOKENS:
            return audio.data.to(self.embed_tokens(self.prompt_ids[:1]).dtype), audio.mask
        return self.compress(*self.audio_tokens(audio))

    def prefix(self, audio: Audio):
        """What the LLM reads of the audio, as its layout lays it out: (embeddings, mask, position
        ids or None); a cross-attention layout's "embeddings" are the encoder's frames."""
        return self.layout.prefix(self, audio)

    def batch_prefix(self, batch: dict):
        """Prefix of a decoding batch: of its ``"audio"``, or its ``"prefix"``, this method's own output
        computed earlier."""
        if batch.get("prefix") is not None:
            return batch["prefix"]
        return self.prefix(batch["audio"].to(self.device))

    def encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        out = []
        for text in texts:
            ids = self.tokenizer.encode(text)
            if not ids:
                raise ValueError(f"empty transcript {text!r}")
            out.append(ids)
        return out

    def text_prefix(self, batch_size: int):
        """``build_prefix`` with no audio: the prompt alone, as text-only pre-training reads it."""
        like = self.embed_tokens(self.prompt_ids[:1])
        none = torch.zeros(batch_size, 0, dtype=torch.bool, device=like.device)
        return self.build_prefix(like.new_zeros(batch_size, 0, like.shape[-1]), none)

    def forward(self, texts: Sequence[str], audio: Audio | None, generator: torch.Generator | None = None) -> dict:
        """Training loss for a batch: its audio (features, cached encoder frames, or the cached
        audio tokens of a frozen front end) and transcripts; ``audio`` None: the LLM's loss on the
        texts alone (text-only pre-training). The layout reads the audio (``QFormerPrefix.forward``)."""
        return self.layout.forward(self, texts, audio, generator)

    def set_stage(self, frontend_only: bool) -> None:
        """Two-stage training: the front end alone with CTC, or the LLM on the frozen front end."""
        if self.ctc_head is None:
            raise ValueError("two-stage training (train.frontend_epochs) needs model.loss.ctc_weight > 0")
        # Frozen by running it without gradients, not by requires_grad, which decides what a
        # checkpoint holds.
        self.ctc_only, self.frontend_frozen = frontend_only, not frontend_only
        self.train(self.training)

    FRONTEND = ("qformer.", "ctc_head.")

    def load_frontend(self, state: dict, source: str) -> None:
        """The Q-Former, CTC head and adapted encoder layers from another model's checkpoint state
        (same shapes)."""
        theirs = sorted({k.split(".")[2] for k in state if k.startswith("encoder.layers.")})
        ours = [str(i) for i in range(self.frozen_layers, len(self.encoder.layers))]
        if theirs != ours:
            raise ValueError(
                f"{source}: its front end adapts encoder layers {theirs or 'none'}, this model {ours or 'none'}; "
                "give both configs the same whisper.train_layers"
            )
        load_model_state(self, state, source, prefixes=self.frontend_prefixes())

    def frontend_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the front end: the Q-Former, the CTC head, adapted encoder layers."""
        return (*self.FRONTEND, *self.adapted_prefixes())

    def ctc_loss(self, audio: torch.Tensor, audio_mask: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        import torch.nn.functional as F

        logp = F.log_softmax(self.ctc_head(audio).float(), dim=-1).transpose(0, 1)
        ids = self.encode_texts(texts)
        targets = torch.tensor([i for row in ids for i in row], device=audio.device)
        return F.ctc_loss(
            logp,
            targets,
            audio_mask.sum(1),
            torch.tensor([len(r) for r in ids], device=audio.device),
            blank=self.tokenizer.mask_id,
            reduction="mean",
            zero_infinity=True,
        )

    def loss(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        prefix_positions: torch.Tensor | None,
        texts: Sequence[str],
        generator: torch.Generator | None,
    ) -> dict:
        raise NotImplementedError
