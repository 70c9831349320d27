"""MultiBox loss (SSD Sec. 2.2): prior matching, Smooth-L1 + softmax CE with 3:1 hard-negative mining."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scratchdet.models.box_coder import BoxCoder, cxcywh_to_xyxy
from scratchdet.models.postprocess import box_iou


def match(
    boxes_xyxy: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor, iou_threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign each prior a ground truth: every box's best prior, plus every prior with IoU >= threshold.

    Args:
        boxes_xyxy: [G, 4] normalised; labels: [G] 0-based; priors: [P, 4] cx, cy, w, h.
    Returns:
        matched boxes [P, 4] (x1, y1, x2, y2) and labels [P] (0 = background).
    """
    if len(boxes_xyxy) == 0:
        return torch.zeros_like(priors), torch.zeros(len(priors), dtype=torch.long, device=priors.device)
    iou = box_iou(boxes_xyxy, cxcywh_to_xyxy(priors))  # [G, P]
    best_iou, best_box = iou.max(dim=0)  # per prior
    best_prior = iou.argmax(dim=1)  # per box
    # A box whose best prior is also another box's best keeps it in index order, as in SSD's code.
    for box, prior in enumerate(best_prior.tolist()):
        best_box[prior] = box
        best_iou[prior] = 2.0
    matched_labels = labels[best_box] + 1  # the one place the background class (0) exists
    matched_labels[best_iou < iou_threshold] = 0
    return boxes_xyxy[best_box], matched_labels


@dataclass
class LossParts:
    total: torch.Tensor
    box: torch.Tensor
    cls: torch.Tensor
    num_positives: int


class MultiBoxLoss(torch.nn.Module):
    priors: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, priors: torch.Tensor, box_coder: BoxCoder, iou_threshold: float = 0.5,
                 negative_ratio: float = 3.0) -> None:
        super().__init__()
        self.register_buffer("priors", priors, persistent=False)
        self.box_coder = box_coder
        self.iou_threshold = iou_threshold
        self.negative_ratio = negative_ratio

    def targets(self, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Regression targets [N, P, 4] and class targets [N, P] for a batch."""
        matched = [match(b, lab, self.priors, self.iou_threshold) for b, lab in zip(boxes, labels)]
        matched_boxes = torch.stack([m[0] for m in matched])
        return self.box_coder.encode(matched_boxes, self.priors), torch.stack([m[1] for m in matched])

    def forward(self, offsets: torch.Tensor, logits: torch.Tensor, boxes: list[torch.Tensor],
                labels: list[torch.Tensor]) -> LossParts:
        """offsets [N, P, 4], logits [N, P, C]; boxes/labels per image (normalised x1, y1, x2, y2)."""
        with torch.no_grad():
            box_targets, class_targets = self.targets(boxes, labels)
        positive = class_targets > 0  # [N, P]
        num_positives = int(positive.sum())
        box_loss = F.smooth_l1_loss(offsets[positive], box_targets[positive], reduction="sum")
        ce = F.cross_entropy(logits.flatten(0, 1), class_targets.flatten(), reduction="none").view_as(class_targets)
        negative = self._hard_negatives(ce.detach(), positive)
        cls_loss = ce[positive | negative].sum()
        normaliser = max(num_positives, 1)
        box_loss, cls_loss = box_loss / normaliser, cls_loss / normaliser
        return LossParts(box_loss + cls_loss, box_loss, cls_loss, num_positives)

    def _hard_negatives(self, ce: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """The highest-loss background priors, `negative_ratio` per positive in each image."""
        background_loss = ce.masked_fill(positive, -1.0)
        order = background_loss.argsort(dim=1, descending=True)
        rank = order.argsort(dim=1)
        num_negative = self.negative_ratio * positive.sum(dim=1, keepdim=True)
        return rank < num_negative
