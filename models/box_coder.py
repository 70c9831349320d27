"""Centre-size box coding with variances (SSD; caffe bbox_util CENTER_SIZE, variances 0.1/0.2)."""

from __future__ import annotations

import math

import torch

# exp() of a larger log-scale would overflow float16 and produces absurd boxes anyway
# (as torchvision's BoxCoder.decode_single clamps it).
MAX_LOG_SCALE = math.log(1000.0 / 16)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=-1)


class BoxCoder:
    """Encodes boxes against priors into regression targets and back."""

    def __init__(self, variances: tuple[float, float] = (0.1, 0.2)) -> None:
        self.center_variance, self.size_variance = variances

    def encode(self, boxes_xyxy: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Targets [..., 4] for boxes [..., 4] (x1, y1, x2, y2 normalised) and priors (cx, cy, w, h)."""
        boxes = xyxy_to_cxcywh(boxes_xyxy)
        centre = (boxes[..., :2] - priors[..., :2]) / (priors[..., 2:] * self.center_variance)
        size = torch.log(boxes[..., 2:].clamp(min=1e-6) / priors[..., 2:]) / self.size_variance
        return torch.cat([centre, size], dim=-1)

    def decode(self, offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Boxes x1, y1, x2, y2 (normalised) from offsets [..., 4] and priors [..., 4] (cx, cy, w, h)."""
        centre = priors[..., :2] + offsets[..., :2] * self.center_variance * priors[..., 2:]
        log_scale = (offsets[..., 2:] * self.size_variance).clamp(max=MAX_LOG_SCALE)
        size = priors[..., 2:] * torch.exp(log_scale)
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)
