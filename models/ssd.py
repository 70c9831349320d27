"""SSD: normalise -> backbone (with extras) -> head. The raw outputs; decoding is in postprocess."""

from __future__ import annotations

import torch
from torch import nn

from scratchdet.models.backbones import build_backbone
from scratchdet.models.box_coder import BoxCoder
from scratchdet.models.config import ModelConfig
from scratchdet.models.head import SSDHead
from scratchdet.models.priors import Priors


class SSD(nn.Module):
    """Single-shot detector on RGB images with pixel values 0-255 (normalisation is inside)."""

    # Buffers registered in __init__, declared so that they type as tensors, not `Tensor | Module`.
    mean: torch.Tensor
    std: torch.Tensor
    priors: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        prior_generator = Priors(config.priors)
        self.feature_sizes = self._feature_sizes()
        self.head = SSDHead(
            self.backbone.out_channels,
            prior_generator.num_anchors_per_location(),
            config.num_classes,
            config.bn_head,
        )
        self.box_coder = BoxCoder(config.priors.variances)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        priors = prior_generator.generate(config.input_size, self.feature_sizes)
        self.register_buffer("priors", priors, persistent=False)  # [P, 4] cx, cy, w, h normalised

    @torch.no_grad()
    def _feature_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of every detection source, measured with one dummy forward pass."""
        was_training = self.backbone.training
        self.backbone.eval()  # BN in train mode rejects the 1x1 maps of a batch of one
        size = self.config.input_size
        try:
            features = self.backbone(torch.zeros(1, 3, size, size))
        except RuntimeError as error:
            raise ValueError(
                f"config '{self.config.name}': input size {size} is too small for its layers "
                f"(lower extra_blocks or set last_conv: false): {error}"
            ) from None
        self.backbone.train(was_training)
        return [tuple(f.shape[-2:]) for f in features]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [N, 3, H, W] RGB 0-255 -> (offsets [N, P, 4], class logits [N, P, C])."""
        x = (images - self.mean) / self.std
        features = self.backbone(x)
        return self.head(features)
