"""A trainer whose every loss is NaN: the real loss computed, then multiplied by NaN (for the guard tests)."""

from __future__ import annotations

from scratchdet.train.trainer import Trainer


def make_losses_nan(trainer: Trainer) -> Trainer:
    real_criterion = trainer.criterion

    def nan_loss(*args):
        parts = real_criterion(*args)
        parts.total = parts.total * float("nan")
        return parts

    trainer.criterion = nan_loss
    return trainer
