"""Backbones with their extra layers: each returns the detection source maps, largest first.

Root-ResNet (ScratchDet, CVPR 2019, Sec. 4 and Fig. 4; github.com/KimSoybean/ScratchDet
mmdetection/backbones/ssd_root34_300.py): ResNet stages behind a "root" stem of three stride-1 3x3
convs instead of the 7x7 stride-2 conv, and residual extra blocks instead of SSD's plain extra convs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from scratchdet.models.config import ModelConfig
from scratchdet.models.layers import BasicBlock, conv_bn, resnet_stage, scaled

RESNET_CHANNELS = (64, 128, 256, 512)


class ResNetBackbone(nn.Module):
    """ResNet-18/34 with the original or the root stem, plus residual extra blocks."""

    def __init__(self, config: ModelConfig, depths: tuple[int, ...], root_stem: bool) -> None:
        super().__init__()
        bn, width = config.bn_backbone, config.width
        stem_channels = scaled(64, width)
        if root_stem:
            # Stride 1 keeps small objects' detail; the paper's 2x2 max-pool then halves once (300 -> 150).
            self.stem = nn.Sequential(
                conv_bn(3, stem_channels, bn=bn),
                conv_bn(stem_channels, stem_channels, bn=bn),
                conv_bn(stem_channels, stem_channels, bn=bn),
                nn.MaxPool2d(2, 2),
            )
        else:
            self.stem = nn.Sequential(
                conv_bn(3, stem_channels, 7, 2, bn=bn), nn.MaxPool2d(3, 2, padding=1)
            )
        channels = [scaled(c, width) for c in RESNET_CHANNELS]
        in_channels = [stem_channels, *channels[:-1]]
        self.stages = nn.ModuleList(
            resnet_stage(cin, cout, depth, 1 if i == 0 else 2, bn)
            for i, (cin, cout, depth) in enumerate(zip(in_channels, channels, depths))
        )
        self.source_stages = config.source_stages
        extra = scaled(config.extra_channels, width)
        self.extras = nn.ModuleList()
        previous = channels[-1]
        for _ in range(config.extra_blocks):
            self.extras.append(BasicBlock(previous, extra, stride=2, bn=bn))
            previous = extra
        if config.last_conv:
            self.extras.append(conv_bn(previous, extra, 3, 1, padding=0, bn=bn))
        self.out_channels = [channels[s - 1] for s in config.source_stages]
        self.out_channels += [extra] * len(self.extras)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.stem(x)
        for index, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if index in self.source_stages:
                features.append(x)
        for layer in self.extras:
            x = layer(x)
            features.append(x)
        return features


# VGG16 conv layers up to conv4_3 ('M' max-pool, 'C' ceil-mode max-pool: 75 -> 38), as in SSD.
VGG16_TO_CONV4_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512)
# SSD's extra layers conv8..conv11: (1x1 channels, 3x3 channels, stride, padding).
SSD_EXTRAS = ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0))


class VGGBackbone(nn.Module):
    """SSD300-VGG16 with BN after every conv (the paper's ablation base), no L2Norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        bn, width = config.bn_backbone, config.width
        layers: list[nn.Module] = []
        previous = 3
        for item in VGG16_TO_CONV4_3:
            if item in ("M", "C"):
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
            else:
                layers.append(conv_bn(previous, scaled(int(item), width), bn=bn))
                previous = scaled(int(item), width)
        self.to_conv4_3 = nn.Sequential(*layers)
        conv5, fc = scaled(512, width), scaled(1024, width)
        self.to_fc7 = nn.Sequential(
            nn.MaxPool2d(2, 2),
            conv_bn(previous, conv5, bn=bn),
            conv_bn(conv5, conv5, bn=bn),
            conv_bn(conv5, conv5, bn=bn),
            nn.MaxPool2d(3, 1, padding=1),
            conv_bn(conv5, fc, 3, dilation=6, bn=bn),  # fc6 as a dilated conv
            conv_bn(fc, fc, 1, bn=bn),  # fc7
        )
        self.extras = nn.ModuleList()
        previous = fc
        self.out_channels = [conv5, fc]
        for squeeze, out, stride, padding in SSD_EXTRAS[: config.extra_blocks]:
            squeeze, out = scaled(squeeze, width), scaled(out, width)
            self.extras.append(
                nn.Sequential(
                    conv_bn(previous, squeeze, 1, bn=bn),
                    conv_bn(squeeze, out, 3, stride, padding=padding, bn=bn),
                )
            )
            self.out_channels.append(out)
            previous = out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.to_conv4_3(x)]
        features.append(self.to_fc7(features[0]))
        for layer in self.extras:
            features.append(layer(features[-1]))
        return features


Backbone = ResNetBackbone | VGGBackbone

BACKBONES: dict[str, Callable[[ModelConfig], Backbone]] = {
    "root_resnet18": partial(ResNetBackbone, depths=(2, 2, 2, 2), root_stem=True),
    "root_resnet34": partial(ResNetBackbone, depths=(3, 4, 6, 3), root_stem=True),
    "resnet18": partial(ResNetBackbone, depths=(2, 2, 2, 2), root_stem=False),
    "resnet34": partial(ResNetBackbone, depths=(3, 4, 6, 3), root_stem=False),
    "vgg16_bn": VGGBackbone,
}


def build_backbone(config: ModelConfig) -> Backbone:
    """The backbone named by `config.backbone`, with Kaiming-initialised convs."""
    if config.backbone not in BACKBONES:
        raise ValueError(
            f"unknown backbone '{config.backbone}' in config '{config.name}'; "
            f"choose one of: {', '.join(sorted(BACKBONES))}"
        )
    backbone = BACKBONES[config.backbone](config)
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return backbone
