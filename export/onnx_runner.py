"""Run an exported ONNX model with ONNX Runtime and unpack its fixed-size outputs per image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RawDetections:
    """One image's detections in input pixels: boxes [K, 4] x1, y1, x2, y2, scores [K], classes [K] 0-based."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def create_session(path: str | Path, threads: int | None = None, providers: list[str] | None = None,
                   spinning: bool = True):
    """An onnxruntime InferenceSession with full graph optimisation and the given intra-op threads.

    `spinning=False` stops idle worker threads from busy-waiting after a run: needed when several
    sessions are timed interleaved, or one session's spinning threads steal the next one's cores.
    """
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ImportError("onnxruntime is needed to run ONNX models: pip install onnxruntime") from error
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def unpack(outputs: dict[str, np.ndarray]) -> list[RawDetections]:
    """Split num_dets/det_* outputs into per-image arrays of their valid rows."""
    results = []
    for i, count in enumerate(outputs["num_dets"][:, 0]):
        results.append(RawDetections(outputs["det_boxes"][i, :count], outputs["det_scores"][i, :count],
                                     outputs["det_classes"][i, :count]))
    return results


def run_onnx(session, images: np.ndarray) -> list[RawDetections]:
    """images float32 [B, 3, H, W] RGB 0-255 -> detections per image."""
    names = [o.name for o in session.get_outputs()]
    return unpack(dict(zip(names, session.run(names, {"images": images}))))
