"""Text-only pre-training of the LLM before it first hears audio (``train.lm_text``, ``lm_epochs``):
the model's own loss (masked diffusion, or next-token for the AR twin) on sentences alone.

The paper's LLaDA knows English before it is fine-tuned; a small LLM trained from scratch in a recipe
learns its language here. The LLM's weights go to ``lm-pretrain.pt``, which a rerun reads back.
"""

from __future__ import annotations

import gzip
import logging
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist

from whisper_llada.data.dataset import cut_text
from whisper_llada.training.schedule import warmup_cosine

log = logging.getLogger(__name__)

LLM = ("llm.",)  # state-dict prefix of what pre-training changes


def held_out_texts(data) -> set[str]:
    """The normalised transcripts of the dev and test parts, which the LM text must not hold."""
    from lhotse import load_manifest_lazy

    norm, out = data.text_normalizer(), set()
    for part in [*data.dev_parts, *data.test_parts]:
        path = data.cuts_path(part)
        if not path.is_file():
            log.warning("%s: no manifest of %s, so its transcripts cannot be kept out of the LM text", path, part)
            continue
        out.update(norm(cut_text(c)) for c in load_manifest_lazy(path))
    return out


def read_lm_text(path: str | Path, normalize, exclude: set[str], tokenizer, max_tokens: int) -> dict[str, int]:
    """Each usable sentence of ``path`` (one a line, ``.gz`` allowed) and its number of tokens: normalised
    as the transcripts are; held-out transcripts and sentences longer than ``max_tokens`` with EOS left out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"train.lm_text {path}: no such file (the embedded recipe's stage 0 writes download/lm/fortunes-lm-norm.txt)"
        )
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        lines = [normalize(line.strip()) for line in f if line.strip()]
    held = sum(1 for t in lines if t in exclude)
    lengths = {t: len(tokenizer.encode(t)) for t in lines if t and t not in exclude}
    kept = {t: n for t, n in lengths.items() if 0 < n < max_tokens}
    log.info(
        "%s: %d sentences, %d left out as dev or test transcripts, %d as too long or repeated; %d tokens",
        path,
        len(lines),
        held,
        len(lines) - held - len(kept),
        sum(kept.values()),
    )
    if not kept:
        raise ValueError(f"train.lm_text {path}: no usable sentence")
    return kept


def lm_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Sentence indices in batches of similar length (sorted within pools of 50 batches), in random order."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool, batches = batch_size * 50, []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lengths.__getitem__)
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pretrain_llm(trainer) -> None:
    """Pre-train ``trainer``'s LLM on ``train.lm_text`` for ``train.lm_epochs`` (its own AdamW, warmup
    and cosine decay), or load the result of an earlier run from ``{exp_dir}/lm-pretrain.pt``."""
    from whisper_llada.checkpoint.files import load_model_state, read_checkpoint
    from whisper_llada.utils.checkpoint_io import atomic_torch_save

    cfg, tc, model = trainer.cfg, trainer.cfg.train, trainer.model
    out = trainer.exp_dir / "lm-pretrain.pt"
    if out.is_file():
        load_model_state(model, read_checkpoint(out)["model"], str(out), prefixes=LLM)
        log.info("the LLM's text-only pre-training from %s", out)
        return
    sents = read_lm_text(
        tc.lm_text,
        cfg.data.text_normalizer(),
        held_out_texts(cfg.data),
        model.tokenizer,
        cfg.model.loss.response_length,
    )
    texts, lengths = list(sents), list(sents.values())
    dev = sorted({t for t in (trainer.dataset.normalize(cut_text(c)) for c in trainer.dev_cuts) if t})
    params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(LLM)]
    lr = tc.lm_lr or tc.lr
    per_epoch = len(lm_batches(lengths, tc.lm_batch_size, 0)) // trainer.world
    total = max(1, per_epoch * tc.lm_epochs)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=tc.weight_decay)
    warmup = min(tc.warmup_steps, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, lr, tc.lr_floor, warmup, total) / lr)
    log.info(
        "text-only pre-training of the LLM: %d sentences, %d epochs of %d batches, peak lr %.2e",
        len(texts),
        tc.lm_epochs,
        per_epoch,
        lr,
    )
    step, dev_loss = 0, None
    trainer.ddp.train()
    for epoch in range(1, tc.lm_epochs + 1):
        t0, tot = time.time(), 0.0
        batches = lm_batches(lengths, tc.lm_batch_size, tc.seed + epoch)
        for b in batches[trainer.rank :: trainer.world][:per_epoch]:  # every rank the same count
            with trainer._autocast():
                loss = trainer.ddp([texts[i] for i in b], None)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            step, tot = step + 1, tot + float(loss.detach())
            if trainer.tb is not None:
                trainer.tb.add_scalar("lm_pretrain/loss", float(loss.detach()), step)
            if step % tc.log_interval == 0:
                log.info("LM epoch %d, batch %d, loss %.4f, lr %.2e", epoch, step, float(loss), sched.get_last_lr()[0])
        dev_loss = text_loss(trainer, dev, tc.lm_batch_size)
        log.info(
            "LM epoch %d done in %.1f s: train loss %.4f, dev-transcript loss %.4f",
            epoch,
            time.time() - t0,
            tot / max(per_epoch, 1),
            dev_loss,
        )
    if trainer.rank == 0:
        state = {k: v.detach().cpu() for k, v in model.trainable_state_dict().items() if k.startswith(LLM)}
        info = {"lm_text": str(tc.lm_text), "sentences": len(texts), "epochs": tc.lm_epochs, "dev_loss": dev_loss}
        atomic_torch_save({"model": state, "params": info}, out)
    if trainer.world > 1:
        dist.barrier()


@torch.no_grad()
def text_loss(trainer, texts: list[str], batch_size: int) -> float:
    """The LLM's loss on ``texts`` alone (the same masks every call), averaged over sentences."""
    if not texts:
        return float("nan")
    trainer.ddp.eval()
    g = torch.Generator(device=trainer.device).manual_seed(1234)
    tot = 0.0
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        with trainer._autocast():
            tot += float(trainer.model(chunk, None, generator=g)["loss"]) * len(chunk)
    trainer.ddp.train()
    return tot / len(texts)
