"""Which prior learns which ground-truth box: SSD's max-IoU matching or ATSS's adaptive threshold.

Both take one image's boxes [G, 4] (x1, y1, x2, y2 normalised), labels [G] (0-based) and the priors [P, 4]
(cx, cy, w, h normalised), and return the matched box of every prior [P, 4] (x1, y1, x2, y2) with its label
[P] (0 = background, the one place the background class is made).
"""

from __future__ import annotations

import torch

from scratchdet.models.box_coder import cxcywh_to_xyxy
from scratchdet.models.postprocess import box_iou


def _background(priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros_like(priors), torch.zeros(len(priors), dtype=torch.long, device=priors.device)


def match(
    boxes_xyxy: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor, iou_threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD matching (Sec. 2.2): every box's best prior, plus every prior with IoU >= `iou_threshold`."""
    if len(boxes_xyxy) == 0:
        return _background(priors)
    iou = box_iou(boxes_xyxy, cxcywh_to_xyxy(priors))  # [G, P]
    best_iou, best_box = iou.max(dim=0)  # per prior
    best_prior = iou.argmax(dim=1)  # per box
    # A box whose best prior is also another box's best keeps it in index order, as in SSD's code.
    for box, prior in enumerate(best_prior.tolist()):
        best_box[prior] = box
        best_iou[prior] = 2.0
    matched_labels = labels[best_box] + 1
    matched_labels[best_iou < iou_threshold] = 0
    return boxes_xyxy[best_box], matched_labels


def atss_match(
    boxes_xyxy: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor, level_sizes: list[int], topk: int = 9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive training sample selection (Zhang et al., CVPR 2020, Algorithm 1).

    Per box: on every level the `topk` priors whose centres lie closest to the box centre are candidates;
    the IoU threshold is the candidates' mean IoU plus its standard deviation; a candidate whose IoU
    reaches it and whose centre lies inside the box is positive. A prior positive for several boxes takes
    the one it overlaps most. `level_sizes` counts the priors of each level, in the priors' order.
    """
    if sum(level_sizes) != len(priors):
        raise ValueError(f"atss_match: level sizes {level_sizes} sum to {sum(level_sizes)}, "
                         f"but there are {len(priors)} priors")
    if len(boxes_xyxy) == 0:
        return _background(priors)
    iou = box_iou(boxes_xyxy, cxcywh_to_xyxy(priors))  # [G, P]
    box_centres = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2
    distance = torch.cdist(box_centres, priors[:, :2])  # [G, P]
    candidates, start = [], 0
    for size in level_sizes:
        nearest = distance[:, start : start + size].topk(min(topk, size), dim=1, largest=False).indices
        candidates.append(nearest + start)
        start += size
    candidate = torch.cat(candidates, dim=1)  # [G, K] prior indices
    candidate_iou = iou.gather(1, candidate)  # [G, K]
    threshold = candidate_iou.mean(dim=1, keepdim=True) + candidate_iou.std(dim=1, keepdim=True)
    centres = priors[candidate, :2]  # [G, K, 2]
    inside = ((centres > boxes_xyxy[:, None, :2]) & (centres < boxes_xyxy[:, None, 2:])).all(dim=-1)
    positive = (candidate_iou >= threshold) & inside
    assigned = torch.full_like(iou, -1.0).scatter_(1, candidate, torch.where(positive, candidate_iou, -1.0))
    best_iou, best_box = assigned.max(dim=0)  # per prior
    matched_labels = labels[best_box] + 1
    matched_labels[best_iou < 0] = 0
    return boxes_xyxy[best_box], matched_labels
