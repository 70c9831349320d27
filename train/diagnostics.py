"""Gradient diagnostics of the paper's Figure 3: gradient L2 norm and its fluctuation per step.

The paper does not define "fluctuation"; we use the coefficient of variation (standard deviation
divided by mean) of the gradient norm over the last `window` steps. Only finite norms enter the window:
one inf from an fp16 overflow step would make the fluctuation NaN for `window` steps.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch


def gradient_norm(parameters: list[torch.nn.Parameter]) -> float:
    """L2 norm of the whole gradient (all parameters as one vector)."""
    norms = [p.grad.detach().norm(2) for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm(2)) if norms else 0.0


class GradientMonitor:
    def __init__(self, window: int, history: list[float] | None = None) -> None:
        self.values: deque[float] = deque((v for v in history or [] if math.isfinite(v)), maxlen=window)

    def update(self, norm: float) -> float:
        """Record a step's gradient norm; returns the fluctuation over the window (a non-finite norm is
        not recorded: the window's fluctuation is returned unchanged)."""
        if math.isfinite(norm):
            self.values.append(norm)
        values = np.array(self.values)
        return float(values.std() / values.mean()) if len(values) > 1 and values.mean() > 0 else 0.0

    def state(self) -> list[float]:
        return list(self.values)
