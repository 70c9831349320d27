"""The training loop: SGD from scratch with warmup and decay, DDP under torchrun, exact resume.

Reads top to bottom: setup -> data -> model -> optimiser and schedule -> (resume) -> epochs of steps,
each epoch ending with evaluation, a checkpoint and the plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

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
from scratchdet.models.ssd import SSD
from scratchdet.progress import progress as progress_bar
from scratchdet.train.config import TrainConfig
from scratchdet.train.data.load import load_dataset
from scratchdet.train.dataset import DetectionDataset, collate
from scratchdet.train.diagnostics import GradientMonitor, gradient_norm
from scratchdet.train.ema import ModelEMA
from scratchdet.train.evaluate import validate
from scratchdet.train.loss import MultiBoxLoss
from scratchdet.train.plots import write_plots

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged: too many consecutive NaN/inf losses, or weights that are no longer finite."""


class RunFolderError(ValueError):
    """A run folder that holds another run, used without --resume or --exist-ok."""


# What a run writes into its folder, and what later stages derive from it there: a new run in the same
# folder (--exist-ok) removes them, so old plots, exports or bundles never sit beside new weights.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "config.yaml", "results.csv", "loss.png", "lr.png", "grad_norm.png",
             "grad_fluctuation.png", "map.png")
DERIVED = ("export", "engines", "bench", "bundle", "bundle.tar.gz")


def prepare_run_folder(out: str | Path, resume: bool = False, exist_ok: bool = False, rank: int = 0) -> Path:
    """Check that `out` may take this run: refuse a folder holding another run unless resuming it, or
    clear that run's files with `exist_ok` (rank 0 only; other ranks only check).

    Raises:
        RunFolderError: `out` holds another run (files named) and neither flag is given, or `resume`
            without out/last.pt.
    """
    out = Path(out)
    found = [name for name in (*RUN_FILES, *DERIVED) if (out / name).exists()]
    if resume:
        if not (out / "last.pt").is_file():
            raise RunFolderError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
        return out
    if found and not exist_ok:
        raise RunFolderError(f"{out}: holds another run ({', '.join(found)}); use --resume to continue it, "
                             "--exist-ok to replace it, or another --out")
    if found and rank == 0:
        log.warning("%s: --exist-ok: removing the previous run's %s", out, ", ".join(found))
        for name in found:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when run by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv weights only: decaying BN scales and biases only fights the normalisation."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_length(config: TrainConfig, total: int) -> int:
    return min(config.warmup_iters, max(total // 5, 1))  # short runs keep most steps at full LR


def lr_factor(config: TrainConfig, iteration: int, total: int) -> float:
    """LR multiplier at `iteration`: 1. linear warmup, 2. step decay at milestones, or 3. cosine."""
    warmup = warmup_length(config, total)
    if iteration < warmup:
        return config.warmup_ratio + (1 - config.warmup_ratio) * iteration / warmup
    if config.schedule == "step":
        passed = sum(iteration >= m * total for m in config.milestones)
        return config.gamma**passed
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * progress))


def params_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_run_config(path: Path, model_config: ModelConfig, config: TrainConfig, data: str, world: int) -> None:
    """The resolved config of a run: every default filled in, command-line overrides applied."""
    values = {"model": to_dict(model_config), "train": to_dict(config), "data": data, "world_size": world}
    write_text(path, yaml.safe_dump(values, sort_keys=False))


class Trainer:
    """One training run writing to `out`: last.pt, best.pt, metrics.jsonl and the plots."""

    def __init__(self, model_config: ModelConfig, config: TrainConfig, data: str | Path, out: str | Path) -> None:
        self.rank, self.world, self.device = setup_distributed()
        self.config, self.out, self.data = config, Path(out), str(data)
        torch.manual_seed(config.seed)
        self.train_set = load_dataset(data, "train")
        self.val_set = load_dataset(data, "val")
        classes = len(self.train_set.class_names) + 1
        if model_config.num_classes != classes:
            log.info("num_classes set to %d from the dataset (%d classes + background)", classes, classes - 1)
            model_config = replace(model_config, num_classes=classes)
        self.model_config = model_config
        self.model = SSD(model_config).to(self.device)
        if config.background_prior is not None:
            self.model.head.init_background_prior(config.background_prior)
        if config.channels_last:
            # Module.to(memory_format=) is documented (torch.nn.Module.to) but missing from torch's overloads.
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.criterion = MultiBoxLoss(self.model.priors, self.model.box_coder).to(self.device)
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, config.weight_decay),
                                         lr=config.learning_rate(), momentum=config.momentum)
        self.dataset = DetectionDataset(self.train_set, model_config.input_size, augment=True, seed=config.seed,
                                        fill=model_config.mean, expand_max=config.expand_max)
        self.sampler: torch.utils.data.DistributedSampler[int] = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=config.seed, drop_last=True)
        per_rank = max(config.batch_size // self.world, 1)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, per_rank, sampler=self.sampler, num_workers=config.workers, collate_fn=collate,
            drop_last=True, pin_memory=self.device.type == "cuda")
        if len(self.loader) == 0:
            raise ValueError(f"{data}: {len(self.dataset)} training images give no full batch of {per_rank}")
        self.total_iterations = config.epochs * len(self.loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(config, it, self.total_iterations))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.network: torch.nn.Module = self.model
        if self.world > 1:
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

    @property
    def use_amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_payload(self, epoch: int) -> dict:
        return {
            "model_config": to_dict(self.model_config), "train_config": to_dict(self.config),
            "class_names": self.train_set.class_names, "model": self.eval_model.state_dict(),
            **({"train_model": self.model.state_dict(), "ema_updates": self.ema.updates} if self.ema else {}),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": epoch, "iteration": self.iteration,
            "best_map": self.best_map, "grad_history": self.monitor.state(),
            "rng": {"torch": torch.get_rng_state()},
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
        self.scaler.load_state_dict(data["scaler"])
        # checkpoints count epochs from 1 (the epoch just finished), the loop index from 0
        self.start_epoch, self.iteration, self.best_map = data["epoch"], data["iteration"], data["best_map"]
        self.monitor = GradientMonitor(self.config.grad_window, data["grad_history"])
        torch.set_rng_state(data["rng"]["torch"])
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
            append_line(self.out / "metrics.jsonl", json.dumps(record))

    def step(self, images: torch.Tensor, boxes: list, labels: list) -> dict | None:
        """One optimisation step; returns its metrics, or None when the loss was not finite."""
        images = images.to(self.device, non_blocking=True)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        boxes = [b.to(self.device) for b in boxes]
        labels = [lab.to(self.device) for lab in labels]
        with torch.autocast(self.device.type, enabled=self.use_amp):
            offsets, logits = self.network(images)
        parts = self.criterion(offsets.float(), logits.float(), boxes, labels)
        finite = torch.tensor(float(torch.isfinite(parts.total)), device=self.device)
        if self.world > 1:  # every rank must skip together, or DDP's all-reduce would hang
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        self.optimizer.zero_grad(set_to_none=True)
        if finite.item() < 1:
            return None
        self.scaler.scale(parts.total).backward()
        self.scaler.unscale_(self.optimizer)
        norm = gradient_norm([p for p in self.model.parameters()])
        if not math.isfinite(norm) and not self.use_amp:  # AMP's scaler skips such steps itself
            self.optimizer.zero_grad(set_to_none=True)
            return None
        clip = self.config.warmup_clip
        if clip is not None and self.iteration < warmup_length(self.config, self.total_iterations):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.model)
        return {"loss": parts.total.item(), "box_loss": parts.box.item(), "cls_loss": parts.cls.item(),
                "grad_norm": norm, "fluctuation": self.monitor.update(norm), "positives": parts.num_positives}

    def train_epoch(self, epoch: int) -> tuple[float, float]:
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
            if metrics is None:
                self.nonfinite_streak += 1
                log.warning("non-finite loss or gradient at iteration %d, step skipped", self.iteration)
                if self.nonfinite_streak >= self.config.max_nonfinite:
                    raise NonFiniteLossError(f"{self.nonfinite_streak} consecutive non-finite losses at iteration "
                                             f"{self.iteration}: lower the LR (now {lr:.4g}) or check the data")
                continue
            self.nonfinite_streak = 0
            losses.append(metrics["loss"])
            self.log_metrics({"type": "step", "epoch": epoch + 1, "iteration": self.iteration, "lr": lr, **metrics})
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{lr:.4f}")
        images_per_second = len(self.loader) * self.config.batch_size / (time.perf_counter() - started)
        return float(np.mean(losses)) if losses else float("nan"), images_per_second

    def evaluate_and_save(self, epoch: int, loss: float, images_per_second: float, elapsed: float) -> None:
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:  # nothing is written: last.pt and best.pt keep the previous finite weights
            raise NonFiniteLossError(f"{self.out}: after epoch {epoch + 1} (iteration {self.iteration}) "
                                     f"{len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]}); training "
                                     f"diverged. Lower the LR (now {self.optimizer.param_groups[0]['lr']:.4g})")
        record = {"type": "epoch", "epoch": epoch + 1, "train_loss": loss, "images_per_s": images_per_second,
                  "elapsed_s": elapsed}
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
        write_plots(self.out)

    def fit(self) -> Path:
        """Train the remaining epochs; returns the run folder."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_run_config(self.out / "config.yaml", self.model_config, self.config, self.data, self.world)
        started = time.perf_counter()
        for epoch in range(self.start_epoch, self.config.epochs):
            loss, speed = self.train_epoch(epoch)
            self._sync_buffers()
            if self.rank == 0:
                self.evaluate_and_save(epoch, loss, speed, time.perf_counter() - started)
            if self.world > 1:
                dist.barrier()
        self._check_ranks_agree()
        return self.out

    def _sync_buffers(self) -> None:
        """BN running statistics from rank 0 to all: each rank's last forward updated them with its own
        batch (SyncBatchNorm, which would share them, refuses CPU tensors)."""
        if self.world > 1:
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    def _check_ranks_agree(self) -> None:
        """Under DDP every rank must end with the same weights; record the digests, fail if not."""
        if self.world == 1:
            return
        digests: list[str] = [""] * self.world
        dist.all_gather_object(digests, params_digest(self.model))
        self.log_metrics({"type": "ranks", "epoch": self.config.epochs, "param_sha256": digests})
        if len(set(digests)) != 1:
            raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
