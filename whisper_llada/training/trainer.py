"""The training loop for Whisper-LLaDA and its autoregressive twin, one process or many.

Launched by ``torchrun`` for several GPUs (rank, local rank and world size from the
environment; NCCL on GPU, gloo on CPU) or as a plain process. lhotse's
``DynamicBucketingSampler`` is built after the process group and reseeded every epoch.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist

from whisper_llada.checkpoint.files import read_checkpoint, save_checkpoint
from whisper_llada.config.recipe import RecipeConfig
from whisper_llada.data.dataset import MAX_WHISPER_SECONDS, SpeechTextDataset, move_batch
from whisper_llada.models.build import build_model
from whisper_llada.training.checkpoint import (
    check_same_model_config,
    find_resume_point,
    load_checkpoint,
    remove_old_checkpoints,
    supersede_later_checkpoints,
)
from whisper_llada.training.schedule import warmup_cosine
from whisper_llada.utils.dist import dist_env

log = logging.getLogger(__name__)


def load_cuts(
    cfg: RecipeConfig,
    parts: list[str],
    tokenizer,
    where: str,
    min_duration: float = 0.0,
    max_duration: float = MAX_WHISPER_SECONDS,
):
    """The training or dev cuts, read and filtered lazily (whisper_llada.data.cuts); ``max_duration``:
    the encoder's window (training takes whole cuts; decoding takes longer ones in pieces)."""
    from whisper_llada.data.cuts import load_part_cuts
    from whisper_llada.data.dropped import filtered_path

    # A masked-diffusion response block is a fixed length: longer transcripts cannot be trained.
    max_tokens = cfg.model.loss.response_length if cfg.model.arch_spec.is_diffusion else None
    # Each cut left out of training, and why, is listed beside the manifests (not only counted in the log).
    return load_part_cuts(
        cfg.data,
        parts,
        where,
        lazy=True,
        tokenizer=tokenizer,
        max_tokens=max_tokens,
        min_duration=min_duration,
        max_duration=max_duration,
        dropped_file=filtered_path(cfg.data.manifest_dir, cfg.data.prefix, where),
    )


class Trainer:
    def __init__(
        self,
        cfg: RecipeConfig,
        exp_dir: str | Path,
        start_epoch: int | None = 1,
        start_batch: int | None = 0,
        device: str | None = None,
    ):
        """``start_epoch`` and ``start_batch`` both None: continue from the checkpoint of ``exp_dir``
        that got furthest (a rerun after a kill resumes by itself); none there: start afresh."""
        self.cfg, self.exp_dir = cfg, Path(exp_dir)
        self.rank, self.local_rank, self.world = dist_env()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
        if device is None:
            device = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        tc = cfg.train
        torch.manual_seed(tc.seed + self.rank)  # different masks per rank; restored on resume
        resume_from, start_epoch = self._resume_point(start_epoch, start_batch)
        self.model = build_model(cfg.model).to(self.device)
        self.tokenizer = self.model.tokenizer
        self.params = {
            "epoch": start_epoch,
            "batch_idx_train": 0,
            "best_valid_loss": float("inf"),
            "config": asdict(cfg),
        }
        self._build_data()
        self._build_optimizer()
        use_amp = self.device.type == "cuda" and tc.amp in ("bf16", "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp) if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.resumed_mid_epoch = start_epoch, False
        if tc.lm_epochs > 0 and not (tc.lm_text and Path(tc.lm_text).is_file()):
            raise ValueError(
                f"train.lm_epochs {tc.lm_epochs} needs train.lm_text, a file of sentences: "
                f"{tc.lm_text or 'none given'}{'' if not tc.lm_text else ' does not exist'}"
            )
        if tc.frontend_from:
            if tc.frontend_epochs:
                raise ValueError("train.frontend_from and train.frontend_epochs exclude each other")
            state = read_checkpoint(tc.frontend_from)["model"]
            self.model.load_frontend(state, tc.frontend_from)
            log.info("front end (Q-Former, CTC head) from %s, frozen", tc.frontend_from)
        if resume_from is not None:
            self._resume(resume_from)
            self.resumed_mid_epoch = resume_from.name.startswith("checkpoint-")
        if self.world > 1:
            dist.barrier()  # every rank has read its checkpoint before rank 0 renames any
        if self.rank == 0:
            # Checkpoints beyond where this run starts belong to a run it does not continue.
            done = self.start_epoch - 1
            supersede_later_checkpoints(self.exp_dir, self.params["batch_idx_train"], done)
        self.ddp = self._distributed()
        self.tb = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.exp_dir / "tensorboard"))

    def _resume_point(self, start_epoch: int | None, start_batch: int | None) -> tuple[Path | None, int]:
        """The checkpoint training continues from (None: afresh) and the epoch it starts in: the one
        named by ``start_epoch``/``start_batch``, or with both None the furthest readable one."""
        resume_from = None
        if start_epoch is None and start_batch is None:
            resume_from = find_resume_point(self.exp_dir)
            if resume_from is not None:
                log.info("%s: the furthest readable checkpoint of %s - resuming from it", resume_from, self.exp_dir)
        start_epoch, start_batch = start_epoch or 1, start_batch or 0
        if start_batch > 0:
            resume_from = self.exp_dir / f"checkpoint-{start_batch}.pt"
        elif start_epoch > 1:
            resume_from = self.exp_dir / f"epoch-{start_epoch - 1}.pt"
        return resume_from, start_epoch

    def _build_optimizer(self) -> None:
        """AdamW over the trainable parameters and its warmup-cosine schedule. Adapted Whisper layers
        (model.whisper.train_layers) form a group of their own at train.encoder_lr; the schedule
        scales every group alike."""
        tc = self.cfg.train
        adapted = [p for n, p in self.model.named_parameters() if p.requires_grad and n.startswith("encoder.")]
        rest = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
        groups = [{"params": rest}]
        if adapted:
            groups.append({"params": adapted, "lr": tc.encoder_lr or tc.lr})
        self.optimizer = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, tc.lr, tc.lr_floor, tc.warmup_steps, tc.decay_steps) / tc.lr
        )

    def _distributed(self):
        """The model as training calls it: wrapped in DDP across ranks, or itself on one."""
        if self.world <= 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        tc = self.cfg.train
        ids = [self.local_rank] if self.device.type == "cuda" else None
        # DDP broadcasts every parameter from rank 0 when made, copying each into a flat buffer
        # first (2 GiB for LLaDA-8B's embedding in float32). Frozen ones are the same on every
        # rank (the hub's weights, or the same seed) and never reduced: leave them out.
        frozen = [n for n, p in self.model.named_parameters() if not p.requires_grad]
        DDP._set_params_and_buffers_to_ignore_for_model(self.model, frozen)
        # Two-stage training leaves the LLM, then the front end, without gradients; so does
        # text-only pre-training the front end.
        return DDP(
            self.model,
            device_ids=ids,
            find_unused_parameters=bool(tc.frontend_epochs or tc.frontend_from or tc.lm_epochs),
        )

    def _build_data(self) -> None:
        from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

        cfg, tc = self.cfg, self.cfg.train
        cfg.check_features()
        norm = cfg.data.text_normalizer()
        window = self.model.window_seconds
        train_cuts = load_cuts(cfg, cfg.data.train_parts, self.tokenizer, "train", tc.min_duration, window)
        dev_cuts = load_cuts(cfg, cfg.data.dev_parts, self.tokenizer, "dev", max_duration=window)
        self.extractor = cfg.data.feature_extractor()  # None: stored features
        if tc.cache_encoder:
            from whisper_llada.training.encoder_cache import cached_cuts, encoder_cache_dir

            cache = encoder_cache_dir(cfg)
            where = (self.device, self.rank, self.world)
            train_cuts = cached_cuts(self.model, train_cuts, cache / "train", *where, extractor=self.extractor)
            dev_cuts = cached_cuts(self.model, dev_cuts, cache / "dev", *where, extractor=self.extractor)
        # Built after the process group exists: it reads rank and world size. Cuts from the encoder
        # cache are in memory, which lhotse warns about for no reason here.
        warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly read CutSet")
        # No more buckets than cuts (a tiny corpus); counted lazily, up to num_buckets.
        num_buckets = sum(1 for _ in islice(train_cuts, tc.num_buckets))
        self.sampler = DynamicBucketingSampler(
            train_cuts,
            max_duration=tc.max_duration,
            max_cuts=tc.max_cuts,
            shuffle=True,
            num_buckets=max(1, num_buckets),
            drop_last=self.world > 1,
            world_size=self.world,
            rank=self.rank,
            seed=tc.seed,
        )
        self.valid_sampler = SimpleCutSampler(
            dev_cuts,
            max_duration=tc.max_duration,
            max_cuts=tc.max_cuts,
            shuffle=False,
            world_size=self.world,
            rank=self.rank,
        )
        self.train_cuts, self.dev_cuts = train_cuts, dev_cuts
        ds = SpeechTextDataset(norm, encoder_cache=tc.cache_encoder, strict=cfg.data.strict, extractor=self.extractor)
        self.dataset = ds
        # The loaders draw their worker seeds from their own generator, not from the global
        # RNG, whose stream (masks, dropout) a resumed run must repeat exactly.
        kw = dict(
            batch_size=None,
            num_workers=tc.num_workers,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(tc.seed),
        )
        self.train_dl = torch.utils.data.DataLoader(ds, sampler=self.sampler, **kw)
        self.valid_dl = torch.utils.data.DataLoader(ds, sampler=self.valid_sampler, **kw)

    def _resume(self, path: Path) -> None:
        check_same_model_config(
            path, read_checkpoint(path, mmap=True).get("params", {}).get("config"), self.params["config"]
        )
        params = load_checkpoint(
            path,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.sampler if "checkpoint-" in path.name else None,
            restore_rng_of_rank=self.rank,
        )
        self.params.update({k: v for k, v in params.items() if k != "config"})
        self.start_epoch = int(params.get("epoch", 1)) + (0 if "checkpoint-" in path.name else 1)
        log.info("resumed from %s at epoch %d, batch %d", path, self.start_epoch, self.params["batch_idx_train"])

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _cache_audio_tokens(self) -> None:
        """The frozen front end's tokens of every training and dev cut, computed once (each rank
        computes all of them: cheap next to an epoch, and no exchange is needed)."""
        from whisper_llada.training.encoder_cache import audio_token_cache, encoder_cache_dir, frontend_fingerprint

        t0 = time.time()
        tc = self.cfg.train
        # Stored beside the encoder cache, named by the front end's weights: the AR twin trained
        # on this front end (train.frontend_from), or a resumed run, reads them instead.
        store = None
        if tc.cache_encoder:
            store = encoder_cache_dir(self.cfg) / "audio_tokens" / f"{frontend_fingerprint(self.model)}.pt"
        plain = SpeechTextDataset(encoder_cache=tc.cache_encoder, strict=self.cfg.data.strict, extractor=self.extractor)
        cache = audio_token_cache(
            self.model,
            [*self.train_cuts, *self.dev_cuts],
            plain,
            self.device,
            tc.max_duration,
            store if self.rank == 0 else None,
        )
        self.dataset.token_cache = cache
        log.info("cached the frozen front end's audio tokens of %d cuts in %.1f s", len(cache), time.time() - t0)

    @torch.no_grad()
    def validate(self) -> float:
        self.ddp.eval()
        g = torch.Generator(device=self.device).manual_seed(1234)  # the same masks every epoch
        tot, n = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for i, batch in enumerate(self.valid_dl):
            if self.cfg.train.valid_max_batches and i >= self.cfg.train.valid_max_batches:
                break
            if not batch["cut_ids"]:
                continue
            batch = move_batch(batch, self.device)
            with self._autocast():
                loss = self.model(batch["texts"], batch["audio"], generator=g)["loss"]
            tot += loss.float() * len(batch["cut_ids"])
            n += len(batch["cut_ids"])
        if self.world > 1:
            dist.all_reduce(tot)
            dist.all_reduce(n)
        self.ddp.train()
        return float(tot / n.clamp(min=1))

    def _save(self, path: Path, with_sampler: bool) -> None:
        from whisper_llada.checkpoint.files import rng_state

        states = [rng_state()]
        if self.world > 1:  # every rank's masking stream, so a resumed run repeats it exactly
            states = [None] * self.world
            dist.all_gather_object(states, rng_state())
        if self.rank == 0:
            save_checkpoint(
                path,
                self.model,
                dict(self.params),
                self.optimizer,
                self.scheduler,
                self.scaler,
                self.sampler if with_sampler else None,
                rng_states=states,
            )
        if self.world > 1:
            dist.barrier()

    def train(self) -> list[float]:
        """Runs the remaining epochs; returns the training loss of every batch (for tests)."""
        tc = self.cfg.train
        self.ddp.train()
        losses: list[float] = []
        for epoch in range(self.start_epoch, tc.num_epochs + 1):
            self.params["epoch"] = epoch
            self._begin_epoch(epoch)
            t0, tot_loss, tot_n = time.time(), 0.0, 0
            if not self.resumed_mid_epoch:
                self.sampler.set_epoch(epoch)
            else:  # the epoch's running average continues from the checkpoint's
                tot_loss, tot_n = (
                    float(self.params.get("epoch_loss_sum", 0.0)),
                    int(self.params.get("epoch_loss_batches", 0)),
                )
            self.resumed_mid_epoch = False
            for batch in self.train_dl:
                self.params["batch_idx_train"] += 1
                step = self.params["batch_idx_train"]
                if not batch["cut_ids"]:
                    continue
                out = self._forward_backward(batch)
                losses.append(float(out["loss"].detach()))
                tot_loss, tot_n = tot_loss + losses[-1], tot_n + 1
                if step % tc.accum_grad == 0:
                    self._optimizer_step(step)
                self._log_batch(epoch, step, out, losses[-1], tot_loss / tot_n, len(batch["cut_ids"]))
                if tc.save_every_n and step % tc.save_every_n == 0:
                    self.params["epoch_loss_sum"], self.params["epoch_loss_batches"] = tot_loss, tot_n
                    self._save(self.exp_dir / f"checkpoint-{step}.pt", with_sampler=True)
                    if self.rank == 0:
                        remove_old_checkpoints(self.exp_dir, tc.keep_last_k)
            if tot_n == 0:
                log.warning(
                    "epoch %d had no training batch: with %d ranks, batches that do not fill "
                    "max_duration are dropped; lower train.max_duration",
                    epoch,
                    self.world,
                )
            valid = self.validate()
            self.params["best_valid_loss"] = min(self.params["best_valid_loss"], valid)
            log.info(
                "epoch %d done in %.1f s: train loss %.4f, valid loss %.4f",
                epoch,
                time.time() - t0,
                tot_loss / max(tot_n, 1),
                valid,
            )
            if self.tb is not None:
                self.tb.add_scalar("valid/loss", valid, step if tot_n else self.params["batch_idx_train"])
            self._save(self.exp_dir / f"epoch-{epoch}.pt", with_sampler=False)
        if self.tb is not None:
            self.tb.close()
        return losses

    def _begin_epoch(self, epoch: int) -> None:
        """What an epoch trains (two-stage training: the front end alone, or the LLM on it frozen),
        and the text-only pre-training before the LLM's first epoch with audio."""
        tc = self.cfg.train
        if tc.frontend_epochs > 0 or tc.frontend_from:
            self.model.set_stage(frontend_only=epoch <= tc.frontend_epochs)
            if epoch == tc.frontend_epochs + 1 or epoch == self.start_epoch:
                log.info(
                    "epoch %d: %s",
                    epoch,
                    "front end alone (CTC)" if self.model.ctc_only else "the LLM on the frozen front end",
                )
            if self.model.frontend_frozen and tc.cache_audio_tokens and self.dataset.token_cache is None:
                self._cache_audio_tokens()
        if tc.lm_epochs > 0 and epoch == tc.frontend_epochs + 1 and not self.resumed_mid_epoch:
            from whisper_llada.training.text_pretrain import pretrain_llm

            pretrain_llm(self)  # before the LLM's first epoch with audio (or loaded by a rerun)

    def _forward_backward(self, batch: dict) -> dict:
        """The model's losses of a batch, their gradients accumulated (scaled for fp16)."""
        batch = move_batch(batch, self.device)
        with self._autocast():
            out = self.ddp(batch["texts"], batch["audio"])
        self.scaler.scale(out["loss"] / self.cfg.train.accum_grad).backward()
        return out

    def _optimizer_step(self, step: int) -> None:
        """Clip the accumulated gradients, step optimiser and schedule, clear the gradients."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.cfg.train.grad_clip
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.tb is not None:
            self.tb.add_scalar("train/grad_norm", float(grad_norm), step)

    def _log_batch(self, epoch: int, step: int, out: dict, loss: float, epoch_avg: float, n_cuts: int) -> None:
        """A batch's losses and learning rate to tensorboard, and every ``log_interval`` to the log."""
        ctc = float(out["ctc_loss"].detach()) if "ctc_loss" in out else None
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            if ctc is not None:
                self.tb.add_scalar("train/ctc_loss", ctc, step)
            self.tb.add_scalar("train/lr", self.scheduler.get_last_lr()[0], step)
        if step % self.cfg.train.log_interval == 0:
            log.info(
                "epoch %d, batch %d, loss %.4f%s (epoch avg %.4f), lr %.2e, %d cuts",
                epoch,
                step,
                loss,
                "" if ctc is None else f" (CTC loss {ctc:.4f})",
                epoch_avg,
                self.scheduler.get_last_lr()[0],
                n_cuts,
            )


def run_training(
    cfg: RecipeConfig,
    exp_dir,
    start_epoch: int | None = 1,
    start_batch: int | None = 0,
    device: str | None = None,
):
    trainer = Trainer(cfg, exp_dir, start_epoch, start_batch, device)
    try:
        return trainer.train()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
