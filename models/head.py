"""SSD detection head: per level a 3x3 box-regression conv and a 3x3 classification conv.

ScratchDet (Sec. 3.1, Table 1) puts BatchNorm after each head conv, which is what lets SSD train from
scratch with a large learning rate; `bn=False` gives the plain SSD head for the paper's ablation.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _head_conv(in_channels: int, out_channels: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(out_channels))  # no ReLU: these are the raw outputs
    return nn.Sequential(*layers)


class SSDScoringHead(nn.Module):
    """One conv per level predicting `values` numbers per anchor; outputs concatenated over levels."""

    def __init__(self, in_channels: list[int], anchors: list[int], values: int, bn: bool) -> None:
        super().__init__()
        self.values = values
        self.convs = nn.ModuleList(
            _head_conv(channels, count * values, bn) for channels, count in zip(in_channels, anchors)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for feature, conv in zip(features, self.convs):
            x = conv(feature)  # (N, A*K, H, W)
            n, _, h, w = x.shape
            x = x.view(n, -1, self.values, h, w).permute(0, 3, 4, 1, 2)  # (N, H, W, A, K)
            outputs.append(x.reshape(n, -1, self.values))  # (N, HWA, K)
        return torch.cat(outputs, dim=1)


class SSDHead(nn.Module):
    """Box offsets [N, P, 4] and class logits [N, P, num_classes] (class 0 is background)."""

    def __init__(self, in_channels: list[int], anchors: list[int], num_classes: int, bn: bool) -> None:
        super().__init__()
        self.regression = SSDScoringHead(in_channels, anchors, 4, bn)
        self.classification = SSDScoringHead(in_channels, anchors, num_classes, bn)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @torch.no_grad()
    def init_background_prior(self, probability: float) -> None:
        """Start every prior at softmax P(background) = `probability` (RetinaNet's prior, Lin et al. 2017).

        The bias is the last one before the logits: the BatchNorm shift (beta) when the head has BN (the
        conv before it has no bias, and a conv bias would be cancelled by the normalisation anyway).
        """
        if not 0 < probability < 1:
            raise ValueError(f"background prior must be in (0, 1), got {probability}")
        classes = self.classification.values
        logit = math.log(probability * (classes - 1) / (1 - probability))  # foreground logits stay 0
        for conv in self.classification.convs:
            # _head_conv's last parameter is its last layer's bias (the conv's, or the BatchNorm's); read
            # as a parameter it types as a tensor, where `conv[-1]` of a ModuleList item types as Module.
            bias = list(conv.parameters())[-1].view(-1, classes)  # (anchors, classes): channel a*K + k
            bias.zero_()
            bias[:, 0] = logit

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.regression(features), self.classification(features)
