"""The optimiser's parameter groups and the learning-rate schedule: linear warm-up, then step decay or cosine."""

from __future__ import annotations

import math

import torch

from scratchdet.train.config import TrainConfig


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
