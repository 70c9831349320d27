"""Decoding and per-class NMS in PyTorch, vectorised over images and classes: the PyTorch backend's
post-processing and the reference the exported ONNX graph is checked against.

The algorithm is the one the ONNX graph runs (export/nms_graph.py): softmax, per class the
`pre_nms_topk` best priors (which bounds the cost when every score passes the threshold, e.g. an
untrained model), score threshold (strictly greater, as ONNX NonMaxSuppression), greedy NMS per class
(IoU strictly greater suppresses), then the `max_det` best detections of the image, ties ordered by
class and then by rank, as ONNX TopK orders equal values (lower index first).
"""

from __future__ import annotations

import torch

from scratchdet.models.box_coder import BoxCoder
from scratchdet.models.config import PostprocessConfig
from scratchdet.models.detections import Detections


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix [..., N, M] of boxes a [..., N, 4] and b [..., M, 4], both x1, y1, x2, y2."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    top_left = torch.max(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = torch.min(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp(min=1e-12)


def greedy_nms_mask(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Which boxes greedy NMS keeps, for boxes [..., K, 4] already sorted best first; valid [..., K] bool.

    Greedy NMS keeps box j unless a kept box before it overlaps it by more than the threshold. That
    recurrence has one solution; iterating `keep = not suppressed by any kept box` from all-kept reaches
    it, since after t rounds the first t boxes are final. Each round is one tensor operation, and the
    rounds needed are the length of the longest suppression chain (a handful), not K.
    """
    k = boxes.shape[-2]
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(diagonal=1)  # [i, j]: i before j
    suppresses = (box_iou(boxes, boxes) > iou_threshold) & earlier & valid[..., :, None]
    keep = valid.clone()
    for _ in range(k):
        updated = valid & ~(suppresses & keep[..., :, None]).any(dim=-2)
        if torch.equal(updated, keep):
            break
        keep = updated
    return keep


def postprocess(
    offsets: torch.Tensor,
    logits: torch.Tensor,
    priors: torch.Tensor,
    box_coder: BoxCoder,
    config: PostprocessConfig,
    input_size: int,
) -> list[Detections]:
    """Detections per image (input pixels) from raw head outputs offsets [N, P, 4] and logits [N, P, C+1]."""
    boxes = box_coder.decode(offsets, priors) * input_size  # [N, P, 4] x1, y1, x2, y2
    scores = torch.softmax(logits, dim=-1)[..., 1:].transpose(1, 2)  # [N, C, P], background dropped
    n, c, p = scores.shape
    k = min(config.pre_nms_topk, p)
    # A stable sort breaks ties towards the lower index, as ONNX TopK specifies; torch.topk does not say.
    top_scores, top_index = (t[..., :k] for t in torch.sort(scores, dim=-1, descending=True, stable=True))
    top_boxes = torch.gather(boxes[:, None].expand(n, c, p, 4), 2, top_index[..., None].expand(n, c, k, 4))
    valid = top_scores > config.score_threshold  # [N, C, k]
    keep = greedy_nms_mask(top_boxes, valid, config.iou_threshold)
    flat_scores = torch.where(keep, top_scores, torch.zeros_like(top_scores)).reshape(n, c * k)
    flat_boxes = top_boxes.reshape(n, c * k, 4)
    class_ids = torch.arange(c, device=scores.device).repeat_interleave(k)
    results = []
    for image in range(n):
        kept = keep[image].reshape(-1).nonzero().squeeze(1)
        order = torch.argsort(flat_scores[image, kept], descending=True, stable=True)[: config.max_det]
        chosen = kept[order]
        results.append(Detections.from_arrays(flat_boxes[image, chosen].cpu().numpy(),
                                              flat_scores[image, chosen].cpu().numpy(),
                                              class_ids[chosen].cpu().numpy()))
    return results
