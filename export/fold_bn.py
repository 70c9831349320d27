"""Fold BatchNorm into the convolution before it: a pure function returning a new, BN-free model.

In eval mode BN is an affine map per channel, so conv -> BN equals one conv with scaled weights and a
bias (torch.nn.utils.fusion.fuse_conv_bn_eval). Every BN of the shipped architectures directly follows
a conv inside an nn.Sequential (backbone, shortcuts, extras, head); a fork that puts a BN elsewhere
gets an error naming it rather than a silently unfused graph.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fold_batchnorm(model: ModuleT) -> ModuleT:
    """A copy of `model` (in eval mode) with every conv -> BatchNorm2d pair fused into one conv.

    Raises:
        ValueError: a BatchNorm2d that does not follow a Conv2d in a Sequential, named by its path.
    """
    folded = copy.deepcopy(model).eval()
    for sequential in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        layers = list(sequential.children())
        for i in range(1, len(layers)):
            conv, bn = layers[i - 1], layers[i]
            if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                sequential[i - 1] = fuse_conv_bn_eval(conv, bn)
                sequential[i] = nn.Identity()
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fold_batchnorm: BatchNorm not preceded by a Conv2d, cannot fold: {', '.join(left)}")
    return folded


def max_output_difference(a: nn.Module, b: nn.Module, images: torch.Tensor) -> float:
    """Largest absolute difference over all outputs of two models on the same input."""
    with torch.no_grad():
        outputs_a, outputs_b = a.eval()(images), b.eval()(images)
    return max(float((x - y).abs().max()) for x, y in zip(outputs_a, outputs_b))
