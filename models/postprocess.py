"""Decoding and per-class NMS in PyTorch: the reference the exported ONNX graph is checked against.

The algorithm is the one the ONNX graph runs: softmax, per class the `pre_nms_topk` best priors
(which bounds the cost when every score passes the threshold, e.g. an untrained model), score
threshold, NMS per class, then the `max_det` best detections of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scratchdet.models.box_coder import BoxCoder


@dataclass(frozen=True)
class NMSConfig:
    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    pre_nms_topk: int = 200
    max_det: int = 200


@dataclass
class Detections:
    """One image's detections: boxes [K, 4] x1, y1, x2, y2, scores [K], labels [K] (1-based classes)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix [N, M] of boxes a [N, 4] and b [M, 4], both x1, y1, x2, y2."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1e-12)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, best score first (ONNX NonMaxSuppression semantics)."""
    order = torch.argsort(scores, descending=True, stable=True)
    overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= ~overlaps[i, i + 1 :]
    return order[keep]


def postprocess(
    offsets: torch.Tensor,
    logits: torch.Tensor,
    priors: torch.Tensor,
    box_coder: BoxCoder,
    config: NMSConfig,
) -> list[Detections]:
    """Detections per image from raw head outputs; boxes x1, y1, x2, y2 normalised to [0, 1]."""
    boxes = box_coder.decode(offsets, priors)  # [N, P, 4]
    scores = torch.softmax(logits, dim=-1)[..., 1:].transpose(1, 2)  # [N, C-1, P]
    k = min(config.pre_nms_topk, scores.shape[-1])
    # A stable sort breaks ties towards the lower index, as ONNX TopK specifies; torch.topk does not say.
    top_scores, top_index = (t[..., :k] for t in torch.sort(scores, dim=-1, descending=True, stable=True))
    results = []
    for image in range(boxes.shape[0]):
        kept_boxes, kept_scores, kept_labels = [], [], []
        for cls in range(scores.shape[1]):
            cls_scores, index = top_scores[image, cls], top_index[image, cls]
            passing = cls_scores > config.score_threshold
            cls_boxes, cls_scores = boxes[image, index[passing]], cls_scores[passing]
            keep = nms(cls_boxes, cls_scores, config.iou_threshold)
            kept_boxes.append(cls_boxes[keep])
            kept_scores.append(cls_scores[keep])
            kept_labels.append(torch.full((len(keep),), cls + 1, dtype=torch.int64))
        all_scores = torch.cat(kept_scores)
        best = torch.argsort(all_scores, descending=True, stable=True)[: config.max_det]
        results.append(
            Detections(torch.cat(kept_boxes)[best], all_scores[best], torch.cat(kept_labels)[best])
        )
    return results
