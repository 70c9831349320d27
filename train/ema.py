"""Exponential moving average of the weights (ultralytics' ModelEMA), used for evaluation and export.

The average includes the BatchNorm running statistics, so the averaged model is self-consistent. The decay
ramps up as `decay * (1 - exp(-updates / tau))`: early weights, far from any minimum, are forgotten fast.
"""

from __future__ import annotations

import copy
import math
from typing import Generic, TypeVar

import torch

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class ModelEMA(Generic[ModuleT]):
    """A copy of `model` whose floating-point state follows the training weights' moving average."""

    def __init__(self, model: ModuleT, decay: float, tau: float, updates: int = 0) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        if tau <= 0:
            raise ValueError(f"train.ema_tau must be positive, got {tau}")
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Average in the model's current weights and buffers (integer buffers are copied)."""
        self.updates += 1
        decay = self.current_decay()
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(current[name].detach(), alpha=1 - decay)
            else:
                value.copy_(current[name])
