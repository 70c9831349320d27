"""Do two runs of the same ONNX model (host vs an emulated ARM core) give the same detections?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from scratchdet.models.inference.detections import Detections

FP32_BOX_TOLERANCE_PX = 1e-3  # float32 rounding of other kernels, in input pixels
FP32_SCORE_TOLERANCE = 1e-5


def parity_problems(host: dict[str, np.ndarray], other: dict[str, np.ndarray], exact: bool) -> list[str]:
    """What differs, per image: detection counts, class order, then boxes and scores beyond tolerance
    (or at all, when `exact`); empty when the runs agree."""
    problems = []
    for image, (a, b) in enumerate(zip(host["num_dets"][:, 0], other["num_dets"][:, 0])):
        if a != b:
            problems.append(f"image {image}: {a} vs {b} detections")
            continue
        if not np.array_equal(host["det_classes"][image, :a], other["det_classes"][image, :a]):
            problems.append(f"image {image}: classes differ in order")
            continue
        box = float(np.abs(host["det_boxes"][image, :a] - other["det_boxes"][image, :a]).max(initial=0))
        score = float(np.abs(host["det_scores"][image, :a] - other["det_scores"][image, :a]).max(initial=0))
        box_limit, score_limit = (0.0, 0.0) if exact else (FP32_BOX_TOLERANCE_PX, FP32_SCORE_TOLERANCE)
        if box > box_limit or score > score_limit:
            problems.append(f"image {image}: max box diff {box:.3g} px, max score diff {score:.3g}")
    return problems


def max_differences(host: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> tuple[float, float]:
    """Largest box and score differences over the valid rows of every image."""
    box = score = 0.0
    for image, count in enumerate(host["num_dets"][:, 0]):
        rows = slice(0, min(count, other["num_dets"][image, 0]))
        boxes = np.abs(host["det_boxes"][image, rows] - other["det_boxes"][image, rows])
        scores = np.abs(host["det_scores"][image, rows] - other["det_scores"][image, rows])
        box, score = max(box, float(boxes.max(initial=0))), max(score, float(scores.max(initial=0)))
    return box, score


def near_match_fraction(host: dict[str, np.ndarray], other: dict[str, np.ndarray], box_tolerance: float = 1.0,
                        score_tolerance: float = 0.02) -> float:
    """Share of host detections with a partner in `other` (same image and class, box within
    `box_tolerance` px, score within `score_tolerance`), pairing each at most once."""
    matched = total = 0
    for image, count in enumerate(host["num_dets"][:, 0]):
        rows = slice(0, other["num_dets"][image, 0])
        boxes, scores = other["det_boxes"][image, rows], other["det_scores"][image, rows]
        classes, used = other["det_classes"][image, rows], np.zeros(len(scores), dtype=bool)
        for i in range(count):
            close = ((classes == host["det_classes"][image, i]) & ~used
                     & (np.abs(boxes - host["det_boxes"][image, i]).max(axis=1) <= box_tolerance)
                     & (np.abs(scores - host["det_scores"][image, i]) <= score_tolerance))
            if close.any():
                used[np.argmax(close)] = True
                matched += 1
        total += count
    return matched / max(total, 1)


def with_quantized_outputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of a Q/DQ model whose every QuantizeLinear output is also a graph output, in graph order.

    Those uint8 tensors are exactly what ONNX Runtime's fused INT8 kernels (QLinearConv, QLinearAdd) read and
    write, so comparing them between two machines finds the first kernel whose results differ.
    """
    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    names = [node.output[0] for node in debug.graph.node if node.op_type == "QuantizeLinear"]
    if not names:
        raise ValueError("the model has no QuantizeLinear nodes: not an INT8 Q/DQ model")
    debug.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    return debug, names


@dataclass(frozen=True)
class TensorDifference:
    name: str
    differing: int  # elements that differ
    size: int
    max_difference: int  # in quantisation steps


def tensor_differences(host: dict[str, np.ndarray], other: dict[str, np.ndarray],
                       names: list[str]) -> list[TensorDifference]:
    """Per named integer tensor: how many elements differ between the two runs, and by how many steps."""
    differences = []
    for name in names:
        steps = np.abs(host[name].astype(np.int32) - other[name].astype(np.int32))
        differences.append(TensorDifference(name, int((steps > 0).sum()), steps.size, int(steps.max(initial=0))))
    return differences


def found_again(reference: list[Detections], candidate: list[Detections], min_score: float = 0.25,
                min_iou: float = 0.7, score_tolerance: float = 0.1) -> tuple[int, int]:
    """How many confident reference detections (score >= `min_score`) a candidate run finds again: same image
    and class, IoU >= `min_iou`, score within `score_tolerance`; each candidate detection pairs at most once,
    with the highest-IoU partner. Returns (found, total)."""
    found = total = 0
    for ref, other in zip(reference, candidate):
        used = np.zeros(len(other.scores), dtype=bool)
        for box, score, cls in zip(ref.boxes, ref.scores, ref.class_ids):
            if score < min_score:
                continue
            total += 1
            eligible = (other.class_ids == cls) & ~used & (np.abs(other.scores - score) <= score_tolerance)
            if not eligible.any():
                continue
            overlaps = np.where(eligible, box_iou(box, other.boxes), -1.0)
            best = int(overlaps.argmax())
            if overlaps[best] >= min_iou:
                used[best] = True
                found += 1
    return found, total


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of `boxes` [N, 4]."""
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)
