"""Do two runs of the same ONNX model (host vs an emulated ARM core) give the same detections?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from scratchdet.models.boxes import Tolerance, matched_count, tolerance
from scratchdet.models.contract import unpack_outputs
from scratchdet.models.detections import Detections


def parity_problems(host: dict[str, np.ndarray], other: dict[str, np.ndarray], exact: bool) -> list[str]:
    """What differs, per image: detection counts, class order, then boxes and scores beyond the "arm-fp32"
    tolerance (or at all, when `exact`), row by row; empty when the runs agree."""
    fp32 = tolerance("arm-fp32")
    box_limit, score_limit = (0.0, 0.0) if exact else (fp32.box_px, fp32.score or 0.0)
    problems = []
    for image, (a, b) in enumerate(zip(host["num_dets"][:, 0], other["num_dets"][:, 0])):
        if a != b:
            problems.append(f"image {image}: {a} vs {b} detections")
            continue
        order = np.arange(a) if exact else _tie_order(host, other, image, a, score_limit)
        if not np.array_equal(host["det_classes"][image, :a], other["det_classes"][image, order]):
            problems.append(f"image {image}: classes differ in order")
            continue
        box = float(np.abs(host["det_boxes"][image, :a] - other["det_boxes"][image, order]).max(initial=0))
        score = float(np.abs(host["det_scores"][image, :a] - other["det_scores"][image, order]).max(initial=0))
        if box > box_limit or score > score_limit:
            problems.append(f"image {image}: max box diff {box:.3g} px, max score diff {score:.3g}")
    return problems


def _tie_order(host: dict[str, np.ndarray], other: dict[str, np.ndarray], image: int, count: int,
               score_limit: float) -> np.ndarray:
    """Other's rows matched to host's: detections whose scores tie within the tolerance may come out in either
    order (the NMS tail's TopK breaks float ties by the platform's rounding), so each host row takes the nearest
    unused box of its class among other's rows scoring within the limit, else the row at its own index."""
    order, used = np.arange(count), set()
    for row in range(count):
        candidates = [j for j in range(count) if j not in used
                      and other["det_classes"][image, j] == host["det_classes"][image, row]
                      and abs(other["det_scores"][image, j] - host["det_scores"][image, row]) <= score_limit]
        if candidates:
            distance = [np.abs(other["det_boxes"][image, j] - host["det_boxes"][image, row]).max() for j in candidates]
            order[row] = candidates[int(np.argmin(distance))]
            used.add(int(order[row]))
    return order


def max_differences(host: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> tuple[float, float]:
    """Largest box and score differences over the valid rows of every image."""
    box = score = 0.0
    for image, count in enumerate(host["num_dets"][:, 0]):
        rows = slice(0, min(count, other["num_dets"][image, 0]))
        boxes = np.abs(host["det_boxes"][image, rows] - other["det_boxes"][image, rows])
        scores = np.abs(host["det_scores"][image, rows] - other["det_scores"][image, rows])
        box, score = max(box, float(boxes.max(initial=0))), max(score, float(scores.max(initial=0)))
    return box, score


def near_match_fraction(host: dict[str, np.ndarray], other: dict[str, np.ndarray],
                        tol: Tolerance | None = None) -> float:
    """Share of host detections (raw outputs) with a partner in `other` under `tol` (default "arm-int8":
    same image and class, box within 1 px, score within 0.02), pairing each at most once."""
    found, total = matched_count(unpack_outputs(host), unpack_outputs(other), tol or tolerance("arm-int8"))
    return found / max(total, 1)


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


def found_again(reference: list[Detections], candidate: list[Detections],
                tol: Tolerance | None = None) -> tuple[int, int]:
    """(found, total): how many confident reference detections a candidate run finds again under `tol`
    (default "openvino-int8": score >= 0.25, same image and class, IoU >= 0.7, score within 0.1)."""
    return matched_count(reference, candidate, tol or tolerance("openvino-int8"))
