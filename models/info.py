"""Model size figures: parameters, GFLOPs (torch.utils.flop_counter), feature maps, prior count."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from scratchdet.models.ssd import SSD


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backbone: str
    input_size: int
    num_classes: int
    parameters: int
    gflops: float  # multiply-adds count as 2 FLOPs, network only (no decode/NMS), batch 1
    feature_sizes: list[tuple[int, int]]
    num_priors: int


def count_gflops(model: torch.nn.Module, input_size: int) -> float:
    """FLOPs of one forward pass at batch 1, in billions."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def model_info(model: SSD) -> ModelInfo:
    config = model.config
    return ModelInfo(
        name=config.name,
        backbone=config.backbone,
        input_size=config.input_size,
        num_classes=config.num_classes,
        parameters=sum(p.numel() for p in model.parameters()),
        gflops=count_gflops(model, config.input_size),
        feature_sizes=model.feature_sizes,
        num_priors=int(model.priors.shape[0]),
    )
