"""The detection loss: prior assignment (train/assign.py), a box loss and a classification loss.

SSD's MultiBox loss (Sec. 2.2) is the paper's recipe: max-IoU matching, Smooth-L1 on the encoded offsets and
softmax cross-entropy with 3:1 hard-negative mining. The alternatives, chosen in TrainConfig: GIoU, DIoU or CIoU
on the decoded boxes, softmax focal loss over every prior, ATSS assignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scratchdet.models.box_coder import BoxCoder
from scratchdet.train.assign import atss_match, match
from scratchdet.train.config import TrainConfig


def iou_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-box 1 - IoU + penalty of boxes [M, 4] (x1, y1, x2, y2): "giou" (Rezatofighi et al., CVPR 2019),
    "diou" or "ciou" (Zheng et al., AAAI 2020); 0 for identical boxes, up to 2 (GIoU, DIoU) far apart."""
    eps = 1e-7
    size_p, size_t = (predicted[:, 2:] - predicted[:, :2]).clamp(min=0), (target[:, 2:] - target[:, :2]).clamp(min=0)
    overlap = (torch.min(predicted[:, 2:], target[:, 2:]) - torch.max(predicted[:, :2], target[:, :2])).clamp(min=0)
    inter = overlap.prod(dim=1)
    union = size_p.prod(dim=1) + size_t.prod(dim=1) - inter + eps
    iou = inter / union
    enclosing = torch.max(predicted[:, 2:], target[:, 2:]) - torch.min(predicted[:, :2], target[:, :2])  # [M, 2]
    if kind == "giou":
        area = enclosing.prod(dim=1) + eps
        return 1 - iou + (area - union) / area
    centre_p, centre_t = (predicted[:, :2] + predicted[:, 2:]) / 2, (target[:, :2] + target[:, 2:]) / 2
    loss = 1 - iou + ((centre_p - centre_t) ** 2).sum(dim=1) / ((enclosing**2).sum(dim=1) + eps)
    if kind == "diou":
        return loss
    if kind != "ciou":
        raise ValueError(f"iou_loss: kind '{kind}': choose giou, diou or ciou")
    aspect = 4 / math.pi**2 * (torch.atan(size_t[:, 0] / (size_t[:, 1] + eps))
                               - torch.atan(size_p[:, 0] / (size_p[:, 1] + eps))) ** 2
    with torch.no_grad():  # the trade-off weight is not differentiated (CIoU paper, Eq. 11)
        weight = aspect / (1 - iou + aspect + eps)
    return loss + weight * aspect


def softmax_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    """Focal loss (Lin et al., ICCV 2017) on the softmax the exported model applies: -a_t (1 - p_t)^gamma log p_t
    per prior, for logits [..., C] and class targets [...] (0 = background, weighted 1 - alpha)."""
    log_p = F.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    weight = torch.where(targets > 0, alpha, 1 - alpha)
    return -weight * (1 - log_p.exp()) ** gamma * log_p


@dataclass
class LossParts:
    total: torch.Tensor
    box: torch.Tensor
    cls: torch.Tensor
    num_positives: int


class MultiBoxLoss(torch.nn.Module):
    """Loss of one batch; `config` picks assignment, box and class loss (the defaults are SSD's).

    `level_sizes` (priors per detection level, in order) is needed by ATSS only.
    """

    priors: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, priors: torch.Tensor, box_coder: BoxCoder, config: TrainConfig | None = None,
                 level_sizes: list[int] | None = None, iou_threshold: float = 0.5) -> None:
        super().__init__()
        self.config = config or TrainConfig()
        if self.config.assigner == "atss" and level_sizes is None:
            raise ValueError("train.assigner atss needs the number of priors per level (level_sizes)")
        self.register_buffer("priors", priors, persistent=False)
        self.box_coder = box_coder
        self.level_sizes = level_sizes or [len(priors)]
        self.iou_threshold = iou_threshold

    def assign(self, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Matched boxes [N, P, 4] (x1, y1, x2, y2 normalised) and class targets [N, P] for a batch."""
        if self.config.assigner == "atss":
            matched = [atss_match(b, lab, self.priors, self.level_sizes, self.config.atss_topk)
                       for b, lab in zip(boxes, labels)]
        else:
            matched = [match(b, lab, self.priors, self.iou_threshold) for b, lab in zip(boxes, labels)]
        return torch.stack([m[0] for m in matched]), torch.stack([m[1] for m in matched])

    def targets(self, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded regression targets [N, P, 4] and class targets [N, P] for a batch."""
        matched, classes = self.assign(boxes, labels)
        return self.box_coder.encode(matched, self.priors), classes

    def forward(self, offsets: torch.Tensor, logits: torch.Tensor, boxes: list[torch.Tensor],
                labels: list[torch.Tensor]) -> LossParts:
        """offsets [N, P, 4], logits [N, P, C]; boxes/labels per image (normalised x1, y1, x2, y2)."""
        with torch.no_grad():
            matched, class_targets = self.assign(boxes, labels)
        positive = class_targets > 0  # [N, P]
        num_positives = int(positive.sum())
        box_loss = self._box_loss(offsets, matched, positive)
        if self.config.class_loss == "focal":
            cls_loss = softmax_focal_loss(logits, class_targets, self.config.focal_gamma,
                                          self.config.focal_alpha).sum()
        else:
            ce = F.cross_entropy(logits.flatten(0, 1), class_targets.flatten(), reduction="none")
            ce = ce.view_as(class_targets)
            cls_loss = ce[positive | self._hard_negatives(ce.detach(), positive)].sum()
        normaliser = max(num_positives, 1)
        box_loss, cls_loss = self.config.box_loss_weight * box_loss / normaliser, cls_loss / normaliser
        return LossParts(box_loss + cls_loss, box_loss, cls_loss, num_positives)

    def _box_loss(self, offsets: torch.Tensor, matched: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Summed over the positive priors: Smooth-L1 on encoded offsets, or an IoU loss on decoded boxes."""
        priors = self.priors.expand_as(offsets)[positive]  # [M, 4]
        if self.config.box_loss == "smooth_l1":
            targets = self.box_coder.encode(matched[positive], priors)
            return F.smooth_l1_loss(offsets[positive], targets, reduction="sum")
        decoded = self.box_coder.decode(offsets[positive], priors)
        return iou_loss(decoded, matched[positive], self.config.box_loss).sum()

    def _hard_negatives(self, ce: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """The highest-loss background priors, `negative_ratio` per positive in each image."""
        background_loss = ce.masked_fill(positive, -1.0)
        order = background_loss.argsort(dim=1, descending=True)
        rank = order.argsort(dim=1)
        num_negative = self.config.negative_ratio * positive.sum(dim=1, keepdim=True)
        return rank < num_negative
