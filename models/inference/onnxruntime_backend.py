"""ONNX models (.onnx, any precision) through ONNX Runtime: session creation and the ONNX backend.

It lives in models/inference/ because every stage runs ONNX files through it: training-time checks (train/),
export parity (export/), predict and val (runtime/) and the benchmarks (docs/design.md#the-house).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from scratchdet.models.contract import load_checked, postprocess_config, unpack_outputs
from scratchdet.models.detections import Detections

log = logging.getLogger(__name__)

# Preference order; only those the installed onnxruntime offers are used.
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
MAX_BATCH = 64  # the batch axis is dynamic; this only bounds one call's memory


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("onnxruntime is needed to run ONNX models: pip install onnxruntime") from error
    return onnxruntime


def create_session(model: str | Path | bytes, threads: int | None = None, providers: list[str] | None = None,
                   spinning: bool = True):
    """An onnxruntime InferenceSession with full graph optimisation and the given intra-op threads.

    `spinning=False` stops idle worker threads from busy-waiting after a run: needed when several
    sessions are timed interleaved, or one session's spinning threads steal the next one's cores.
    """
    ort = import_onnxruntime()
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)  # bytes: a model already read, not read again
    return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])


def available_providers(requested: list[str] | None = None) -> list[str]:
    """The requested providers (or our preference order) that this onnxruntime build has."""
    installed = import_onnxruntime().get_available_providers()
    if requested:
        missing = [p for p in requested if p not in installed]
        if missing:
            raise ValueError(f"ONNX Runtime providers {missing} are not installed (installed: {installed})")
        return requested
    return [p for p in PROVIDERS if p in installed]


def run_session(session, images: np.ndarray) -> list[Detections]:
    """images float32 [B, 3, H, W] RGB 0-255 -> detections per image (input pixels)."""
    names = [o.name for o in session.get_outputs()]
    return unpack_outputs(dict(zip(names, session.run(names, {"images": images}))), images.shape[-1])


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 spinning: bool = True, checked: tuple[onnx.ModelProto, dict[str, Any]] | None = None) -> None:
        """`checked`: `load_checked(path)` already done by the caller; the session is made from that model, so the
        file is read once either way."""
        model, metadata = load_checked(path) if checked is None else checked
        self.path = Path(path)
        self.metadata = metadata
        self.class_names: list[str] = metadata["class_names"]
        self.input_size: int = metadata["input_size"]
        self.precision: str = metadata["precision"]
        self.postprocess = postprocess_config(metadata, path)
        self.max_batch = MAX_BATCH
        self.session = create_session(model.SerializeToString(), threads, available_providers(providers), spinning)
        self.provider = self.session.get_providers()[0]
        log.info("%s: %s on %s", path, self.precision, self.provider)

    def infer(self, images: np.ndarray) -> list[Detections]:
        return run_session(self.session, images)

    def close(self) -> None:
        self.session = None
