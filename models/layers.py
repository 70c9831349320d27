"""Building blocks shared by the backbones: conv-BN-ReLU and the ResNet BasicBlock."""

from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channels after a width multiplier, at least 8."""
    return max(8, round(channels * width))


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | None = None,
    dilation: int = 1,
    bn: bool = True,
    relu: bool = True,
) -> nn.Sequential:
    """Conv (no bias when followed by BN), optional BatchNorm, optional ReLU."""
    if padding is None:
        padding = dilation * (kernel_size // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=not bn)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(out_channels))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet BasicBlock, post-activation as in torchvision; 1x1 conv + BN shortcut when shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bn: bool = True) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, out_channels, 3, stride, bn=bn)
        self.conv2 = conv_bn(out_channels, out_channels, 3, 1, bn=bn, relu=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn(in_channels, out_channels, 1, stride, padding=0, bn=bn, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def resnet_stage(in_channels: int, out_channels: int, blocks: int, stride: int, bn: bool) -> nn.Sequential:
    """`blocks` BasicBlocks; only the first one strides."""
    layers = [BasicBlock(in_channels, out_channels, stride, bn)]
    layers += [BasicBlock(out_channels, out_channels, 1, bn) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
