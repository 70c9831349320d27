"""Box geometry in numpy, the one copy every stage uses: IoU, greedy per-class NMS, and the detection matcher
with its table of tolerances (one per comparison the project makes).

Boxes are always [N, 4] x1, y1, x2, y2 (corners, x1 <= x2, y1 <= y2) in pixels; a box with no area has IoU 0
with everything. The PyTorch NMS (models/postprocess.py) and the ONNX NMS graph (export/nms_graph.py) run
the same rule on other substrates and are tested against `nms` here (tests/models/test_boxes.py).

Numpy only: a board without torch imports this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchdet.models.detections import Detections


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of boxes a [N, 4] and b [M, 4], both x1, y1, x2, y2."""
    a, b = np.asarray(a).reshape(-1, 4), np.asarray(b).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices greedy per-class NMS keeps, best score first (ties: lower index first).

    A box is dropped when a kept box of its class, scoring higher (or equal and earlier), overlaps it by
    IoU strictly greater than `iou_threshold`, as ONNX NonMaxSuppression and models/postprocess.py decide.
    boxes [K, 4] x1, y1, x2, y2; scores [K]; class_ids [K]."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlaps = pairwise_iou(boxes, boxes)
    kept: list[int] = []
    for index in order.tolist():
        same = [k for k in kept if class_ids[k] == class_ids[index]]
        if not same or overlaps[index, same].max() <= iou_threshold:
            kept.append(index)
    return np.array(kept, dtype=np.int64)


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate run may be from its reference run.

    Detection level (`match`): a candidate detection partners a reference one when it has the same class,
    a score within `score`, and a box with IoU >= `iou` or every corner within `box_px` + `box_relative`
    times the reference box's largest coordinate. Only reference detections scoring >= `min_score` count.
    Run level: |mAP@0.5 difference| <= `map50`; share of reference detections matched >= `matched`.
    None: that comparison is not made for this kind."""

    score: float | None = None
    box_px: float = 0.0
    box_relative: float = 0.0
    iou: float | None = None
    min_score: float = 0.0
    map50: float | None = None
    matched: float | None = None


# Every tolerance of the project, by the comparison it judges. Why each value: the module docstrings of
# export/verify.py (export-fp32), benchmarks/portability.py (arm-*, openvino-int8), benchmarks/gpu_check.py
# (gpu-*) and benchmarks/gate.py (export-*, baseline: map50 as mmdeploy's regression test).
TOLERANCES: dict[str, Tolerance] = {
    # ONNX Runtime vs PyTorch (BN folded), same weights: float rounding only; checkpoint mAP gap for the gate
    "export-fp32": Tolerance(score=1e-4, box_px=0.1, box_relative=1e-4, map50=0.001),
    "export-fp16": Tolerance(map50=0.005),
    "export-int8": Tolerance(map50=0.01),
    "baseline": Tolerance(map50=0.002),  # a format's mAP against the committed baseline's
    # the same ONNX on an emulated ARM core vs the host: FP32 kernels round differently, INT8 ones near-match
    "arm-fp32": Tolerance(score=1e-5, box_px=1e-3),
    "arm-int8": Tolerance(score=0.02, box_px=1.0, matched=0.9),
    # OpenVINO vs ONNX Runtime on the same INT8 model: confident detections found again
    "openvino-int8": Tolerance(score=0.1, iou=0.7, min_score=0.25),
    # TensorRT engines vs ONNX Runtime FP32; 1 px: boxes clipped to the image edge can have no area
    "gpu-fp32": Tolerance(score=0.001, box_px=1.0, iou=0.99, map50=0.005, matched=0.99),
    "gpu-fp16": Tolerance(score=0.01, box_px=1.0, iou=0.95, map50=0.01, matched=0.95),
    "gpu-int8": Tolerance(score=0.05, box_px=1.0, iou=0.80, map50=0.03, matched=0.80),
}


def tolerance(kind: str) -> Tolerance:
    """TOLERANCES[kind], with an error naming the kinds there are."""
    if kind not in TOLERANCES:
        raise KeyError(f"no tolerance '{kind}'; the kinds are {sorted(TOLERANCES)}")
    return TOLERANCES[kind]


def match(reference: Detections, candidate: Detections, tol: Tolerance) -> np.ndarray:
    """Per reference detection, the index of its partner in `candidate` (-1: none, or it scores below
    `tol.min_score`).

    Reference detections are taken in their order (best first), each pairing with the eligible, not yet
    paired candidate of highest IoU (ties: the nearer box, then the lower index); a candidate pairs once."""
    if tol.score is None:
        raise ValueError(f"{tol} compares no detections (its score tolerance is None)")
    partners = np.full(len(reference.scores), -1, dtype=np.int64)
    if not len(reference.scores) or not len(candidate.scores):
        return partners
    overlaps = pairwise_iou(reference.boxes, candidate.boxes)
    used = np.zeros(len(candidate.scores), dtype=bool)
    for i, (box, score, class_id) in enumerate(zip(reference.boxes, reference.scores, reference.class_ids)):
        if score < tol.min_score:
            continue
        distance = np.abs(candidate.boxes - box).max(axis=1)
        close = distance <= tol.box_px + tol.box_relative * float(np.abs(box).max())
        if tol.iou is not None:
            close |= overlaps[i] >= tol.iou
        eligible = (candidate.class_ids == class_id) & ~used & close & (np.abs(candidate.scores - score) <= tol.score)
        if eligible.any():
            options = np.flatnonzero(eligible)
            best = options[np.lexsort((options, distance[options], -overlaps[i, options]))[0]]
            partners[i] = best
            used[best] = True
    return partners


def matched_count(reference: list[Detections], candidate: list[Detections], tol: Tolerance) -> tuple[int, int]:
    """(reference detections with a partner, reference detections counted) over images in the same order."""
    if len(reference) != len(candidate):
        raise ValueError(f"match: {len(reference)} reference images but {len(candidate)} candidate images")
    found = total = 0
    for ref, cand in zip(reference, candidate):
        total += int((ref.scores >= tol.min_score).sum())
        found += int((match(ref, cand, tol) >= 0).sum())
    return found, total
