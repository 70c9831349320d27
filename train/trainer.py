"""The training loop: SGD from scratch with warmup and decay, DDP under torchrun, exact resume.

Reads top to bottom: setup -> data -> model -> optimiser and schedule -> (resume) -> epochs of steps,
each epoch ending with evaluation, a checkpoint and the plots. Its parts live beside it: device.py (process
group, device, workers, autocast mode), schedule.py (parameter groups, LR), resume.py (generators, scaler),
run_folder.py (which folder may take a run).
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from scratchdet.models.checkpoint import (
    CheckpointError,
    config_differences,
    nonfinite_tensors,
    read_checkpoint,
    save_checkpoint,
)
from scratchdet.models.config import ModelConfig, from_dict, to_dict
from scratchdet.models.files import append_line, write_text
from scratchdet.models.inference.predictor import Predictor
from scratchdet.models.inference.torch_backend import TorchBackend
from scratchdet.models.priors import Priors
from scratchdet.models.ssd import SSD
from scratchdet.progress import progress as progress_bar
from scratchdet.train.config import TrainConfig
from scratchdet.train.data.load import load_dataset
from scratchdet.train.dataset import DetectionDataset, collate
from scratchdet.train.device import (
    amp_mode,
    configure_backends,
    keep_freed_memory,
    loader_workers,
    params_digest,
    setup_distributed,
)
from scratchdet.train.diagnostics import GradientMonitor, gradient_norm
from scratchdet.train.ema import ModelEMA
from scratchdet.train.evaluate import validate
from scratchdet.train.fit_priors import fitted_model_config
from scratchdet.train.loss import MultiBoxLoss
from scratchdet.train.plots import read_metrics, write_plots, write_results_csv
from scratchdet.train.resume import restore_rng, resume_scaler, rng_state
from scratchdet.train.run_folder import drop_previous_run, write_run_config
from scratchdet.train.schedule import lr_factor, parameter_groups, warmup_length

log = logging.getLogger(__name__)


def cpu_times() -> tuple[float, float]:
    """User and sys CPU seconds of this process (all threads) and its reaped children (loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


class NonFiniteLossError(RuntimeError):
    """Training diverged: too many consecutive NaN/inf losses, or weights that are no longer finite."""


@dataclass(frozen=True)
class SkippedStep:
    """A step that changed no weight: non-finite loss or gradient, or an fp16 overflow the scaler skipped."""

    reason: str  # "loss", "gradient" or "fp16 overflow"
    loss_scale: float | None = None  # the GradScaler's scale after its update (fp16 only)


class Trainer:
    """One training run writing to `out`: last.pt, best.pt, metrics.jsonl and the plots."""

    def __init__(self, model_config: ModelConfig, config: TrainConfig, data: str | Path, out: str | Path) -> None:
        self.rank, self.world, self.device = setup_distributed(config.ddp_timeout_s)
        self.config, self.out, self.data = config, Path(out), str(data)
        self.previous_run: Path | None = None  # a replaced run's holder (--exist-ok), kept until the first checkpoint
        self.distributed = dist.is_available() and dist.is_initialized()
        configure_backends(config, self.device)
        if self.device.type == "cpu" and keep_freed_memory():
            log.info("CPU training: glibc malloc keeps freed memory (no per-step page faults; see keep_freed_memory)")
        self.amp = amp_mode(config, self.device)
        torch.manual_seed(config.seed)
        self.train_set = load_dataset(data, "train")
        self.val_set = load_dataset(data, "val")
        classes = len(self.train_set.class_names) + 1
        if model_config.num_classes != classes:
            log.info("num_classes set to %d from the dataset (%d classes + background)", classes, classes - 1)
            model_config = replace(model_config, num_classes=classes)
        if config.fit_priors:  # before the model is built: its priors, and every checkpoint's config, are these
            model_config = fitted_model_config(model_config, self.train_set)
        self.model_config = model_config
        self.model = SSD(model_config).to(self.device)
        if config.background_prior is not None:
            self.model.head.init_background_prior(config.background_prior)
        if config.channels_last:
            # Module.to(memory_format=) is documented (torch.nn.Module.to) but missing from torch's overloads.
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        level_sizes = Priors(model_config.priors).level_sizes(self.model.feature_sizes)
        self.criterion = MultiBoxLoss(self.model.priors, self.model.box_coder, config, level_sizes).to(self.device)
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, config.weight_decay),
                                         lr=config.learning_rate(), momentum=config.momentum)
        self.dataset = DetectionDataset(self.train_set, model_config.input_size, augment=True, seed=config.seed,
                                        fill=model_config.mean, expand_max=config.expand_max,
                                        mosaic=config.mosaic)
        self.sampler: torch.utils.data.DistributedSampler[int] = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=config.seed, drop_last=True)
        per_rank = max(config.batch_size // self.world, 1)
        workers = loader_workers(config.workers, self.device)
        if config.workers is None:
            log.info("train.workers not set: %d data-loading processes per rank on %s", workers, self.device)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, per_rank, sampler=self.sampler, num_workers=workers, collate_fn=collate,
            drop_last=True, pin_memory=self.device.type == "cuda")
        if len(self.loader) == 0:
            raise ValueError(f"{data}: {len(self.dataset)} training images give no full batch of {per_rank}")
        self.total_iterations = config.epochs * len(self.loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(config, it, self.total_iterations))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")  # bf16 needs none
        self.network: torch.nn.Module = self.model
        if self.distributed:
            if self.device.type == "cuda":  # SyncBatchNorm refuses CPU tensors
                self.network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.network = torch.nn.parallel.DistributedDataParallel(self.network)
        self.monitor = GradientMonitor(config.grad_window)
        self.ema = ModelEMA(self.model, config.ema_decay, config.ema_tau) if config.ema_decay else None
        self.start_epoch, self.iteration, self.best_map = 0, 0, -1.0
        self.nonfinite_streak = 0  # consecutive skipped steps, across epoch ends

    @property
    def eval_model(self) -> SSD:
        """The weights evaluated and saved as "model": the EMA when there is one."""
        return self.ema.module if self.ema else self.model

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_payload(self, epoch: int) -> dict:
        return {
            "model_config": to_dict(self.model_config), "train_config": to_dict(self.config),
            "class_names": self.train_set.class_names, "model": self.eval_model.state_dict(),
            **({"train_model": self.model.state_dict(), "ema_updates": self.ema.updates} if self.ema else {}),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": epoch, "iteration": self.iteration,
            "best_map": self.best_map, "grad_history": self.monitor.state(), "rng": rng_state(),
        }

    def resume(self) -> None:
        """Continue from out/last.pt: same model config required, every state restored."""
        path = self.out / "last.pt"
        data = read_checkpoint(path)
        if data.get("class_names") != self.train_set.class_names:
            raise CheckpointError(f"{path}: cannot resume, the run was trained on classes {data.get('class_names')} "
                                  f"but {self.train_set.root} has {self.train_set.class_names}; start a new run "
                                  "(another --out) for another dataset")
        found = from_dict(ModelConfig, data["model_config"], f"{path} (model_config)")
        differences = config_differences(self.model_config, found)
        if differences:
            raise CheckpointError(f"{path}: cannot resume, model config differs (expected vs found): "
                                  + "; ".join(differences))
        changed = [f"{k}: {v!r} -> {to_dict(self.config)[k]!r}" for k, v in data["train_config"].items()
                   if to_dict(self.config).get(k) != v]
        if changed:
            log.warning("resuming with a changed training config: %s", "; ".join(changed))
        if self.ema:
            if "train_model" not in data:
                raise CheckpointError(f"{path}: cannot resume with train.ema_decay, the run had no EMA")
            self.model.load_state_dict(data["train_model"])
            self.ema.module.load_state_dict(data["model"])
            self.ema.updates = data["ema_updates"]
        else:
            self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        resume_scaler(self.scaler, data.get("scaler") or {}, path)
        # checkpoints count epochs from 1 (the epoch just finished), the loop index from 0
        self.start_epoch, self.iteration, self.best_map = data["epoch"], data["iteration"], data["best_map"]
        self.monitor = GradientMonitor(self.config.grad_window, data["grad_history"])
        restore_rng(data["rng"], path)
        self._truncate_metrics(self.start_epoch)
        log.info("resumed from %s after epoch %d (iteration %d)", path, data["epoch"], self.iteration)

    def _truncate_metrics(self, finished: int) -> None:
        """Drop the metric lines of the epoch that was cut short (numbered from 1); it is trained again."""
        path = self.out / "metrics.jsonl"
        if self.rank == 0 and path.is_file():
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("epoch", 0) <= finished]
            write_text(path, "".join(line + "\n" for line in keep))

    # -- the loop ----------------------------------------------------------------------------------
    def log_metrics(self, record: dict) -> None:
        if self.rank == 0:
            append_line(self.out / "metrics.jsonl", json.dumps(record, allow_nan=False))  # strict JSON: no NaN/Infinity

    def step(self, images: torch.Tensor, boxes: list, labels: list) -> dict | SkippedStep:
        """One optimisation step; returns its metrics, or why it changed no weight."""
        # non_blocking: with the loader's pinned memory the copies overlap the previous step's kernels
        images = images.to(self.device, non_blocking=True)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        boxes = [b.to(self.device, non_blocking=True) for b in boxes]
        labels = [lab.to(self.device, non_blocking=True) for lab in labels]
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp != "off"):
            offsets, logits = self.network(images)
        parts = self.criterion(offsets.float(), logits.float(), boxes, labels)
        finite = torch.tensor(float(torch.isfinite(parts.total)), device=self.device)
        if self.distributed:  # every rank must skip together, or DDP's all-reduce would hang
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        self.optimizer.zero_grad(set_to_none=True)
        if finite.item() < 1:
            return SkippedStep("loss")
        self.scaler.scale(parts.total).backward()
        self.scaler.unscale_(self.optimizer)
        norm = gradient_norm([p for p in self.model.parameters()])
        if not math.isfinite(norm):  # kept out of the monitor and metrics.jsonl (it would be inf there)
            if not self.scaler.is_enabled():
                self.optimizer.zero_grad(set_to_none=True)
                return SkippedStep("gradient")
            self.scaler.step(self.optimizer)  # finds the inf, skips the update; update() lowers the scale
            self.scaler.update()
            return SkippedStep("fp16 overflow", self.scaler.get_scale())
        clip = self.config.warmup_clip
        if clip is not None and self.iteration < warmup_length(self.config, self.total_iterations):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.model)
        return {"loss": parts.total.item(), "box_loss": parts.box.item(), "cls_loss": parts.cls.item(),
                "grad_norm": norm, "fluctuation": self.monitor.update(norm), "positives": parts.num_positives}

    def train_epoch(self, epoch: int) -> tuple[float | None, float]:
        """One pass over the training split; returns (mean loss, images per second)."""
        self.network.train()
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        losses, started = [], time.perf_counter()
        bar = progress_bar(self.loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", disable=self.rank != 0,
                   leave=False)
        for images, boxes, labels, _ in bar:
            lr = self.optimizer.param_groups[0]["lr"]
            metrics = self.step(images, boxes, labels)
            self.scheduler.step()
            self.iteration += 1
            if isinstance(metrics, SkippedStep):
                self._skipped(metrics, epoch, lr)
                continue
            self.nonfinite_streak = 0
            losses.append(metrics["loss"])
            self.log_metrics({"type": "step", "epoch": epoch + 1, "iteration": self.iteration, "lr": lr, **metrics})
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{lr:.4f}")
        images_per_second = len(self.loader) * self.config.batch_size / (time.perf_counter() - started)
        return (float(np.mean(losses)) if losses else None), images_per_second

    def _skipped(self, skipped: SkippedStep, epoch: int, lr: float) -> None:
        """Record a step that changed no weight; stop after max_nonfinite of them in a row."""
        self.nonfinite_streak += 1
        if skipped.reason == "fp16 overflow":  # expected while the scaler finds its scale
            log.info("fp16 overflow at iteration %d, step skipped, loss scale now %g", self.iteration,
                     skipped.loss_scale)
        else:
            log.warning("non-finite %s at iteration %d, step skipped", skipped.reason, self.iteration)
        self.log_metrics({"type": "skipped", "epoch": epoch + 1, "iteration": self.iteration, "lr": lr,
                          "reason": skipped.reason, "loss_scale": skipped.loss_scale})
        if self.nonfinite_streak >= self.config.max_nonfinite:
            raise NonFiniteLossError(f"{self.nonfinite_streak} consecutive non-finite losses at iteration "
                                     f"{self.iteration} (the last: {skipped.reason}): lower the LR (now {lr:.4g}) "
                                     "or check the data")

    def evaluate_and_save(self, epoch: int, loss: float | None, images_per_second: float, elapsed: float,
                          cpu: tuple[float, float] = (0.0, 0.0)) -> None:
        """Validate (every eval_every epochs), append the epoch's record, write last.pt, best.pt and the plots.

        `cpu`: user and sys seconds the epoch's training took (this process and its reaped loader workers).
        """
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:  # nothing is written: last.pt and best.pt keep the previous finite weights
            raise NonFiniteLossError(f"{self.out}: after epoch {epoch + 1} (iteration {self.iteration}) "
                                     f"{len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]}); training "
                                     f"diverged. Lower the LR (now {self.optimizer.param_groups[0]['lr']:.4g})")
        record = {"type": "epoch", "epoch": epoch + 1, "train_loss": loss, "images_per_s": images_per_second,
                  "elapsed_s": elapsed, "cpu_user_s": cpu[0], "cpu_sys_s": cpu[1]}
        last = epoch + 1 == self.config.epochs
        if (epoch + 1) % self.config.eval_every == 0 or last:
            result = validate(Predictor(TorchBackend(self.eval_model, self.train_set.class_names)), self.val_set)
            record.update(map50=result.map50, map50_11point=result.map50_11point, coco_ap=result.coco_ap)
            log.info("epoch %d: %s", epoch + 1, result.summary())
            if result.map50 > self.best_map:
                self.best_map = result.map50
                save_checkpoint(self.out / "best.pt", {**self.checkpoint_payload(epoch + 1), "eval": record})
        self.log_metrics(record)
        save_checkpoint(self.out / "last.pt", self.checkpoint_payload(epoch + 1))
        if self.previous_run is not None:  # --exist-ok: the replaced run goes once this one has a checkpoint
            drop_previous_run(self.previous_run)
            self.previous_run = None
        if self.config.plots:
            write_plots(self.out)
        else:
            write_results_csv(self.out, read_metrics(self.out / "metrics.jsonl"))

    def fit(self) -> Path:
        """Train the remaining epochs; returns the run folder."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_run_config(self.out / "config.yaml", self.model_config, self.config, self.data, self.world)
        started = time.perf_counter()
        for epoch in range(self.start_epoch, self.config.epochs):
            before = cpu_times()
            loss, speed = self.train_epoch(epoch)
            cpu = tuple(after - start for after, start in zip(cpu_times(), before))
            self._sync_buffers()
            if self.rank == 0:
                self.evaluate_and_save(epoch, loss, speed, time.perf_counter() - started, (cpu[0], cpu[1]))
            if self.distributed:  # the others wait here while rank 0 validates (ddp_timeout_s)
                dist.barrier()
        self._check_ranks_agree()
        return self.out

    def _sync_buffers(self) -> None:
        """BN running statistics from rank 0 to all: each rank's last forward updated them with its own
        batch (SyncBatchNorm, which would share them, refuses CPU tensors)."""
        if self.distributed:
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    def _check_ranks_agree(self) -> None:
        """Under DDP every rank must end with the same weights; record the digests, fail if not."""
        if not self.distributed:
            return
        digests: list[str] = [""] * self.world
        dist.all_gather_object(digests, params_digest(self.model))
        self.log_metrics({"type": "ranks", "epoch": self.config.epochs, "param_sha256": digests})
        if len(set(digests)) != 1:
            raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
