"""ONNX models (.onnx, any precision) through ONNX Runtime, providers chosen from what is installed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scratchdet.export.contract import load_checked
from scratchdet.export.onnx_runner import RawDetections, create_session, run_onnx

log = logging.getLogger(__name__)

# Preference order; only those the installed onnxruntime offers are used.
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers(requested: list[str] | None = None) -> list[str]:
    """The requested providers (or our preference order) that this onnxruntime build has."""
    import onnxruntime as ort

    installed = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in installed]
        if missing:
            raise ValueError(f"ONNX Runtime providers {missing} are not installed (installed: {installed})")
        return requested
    return [p for p in PROVIDERS if p in installed]


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 spinning: bool = True) -> None:
        _, metadata = load_checked(path)
        self.metadata = metadata
        self.class_names: list[str] = metadata["class_names"]
        self.input_size: int = metadata["input_size"]
        self.precision: str = metadata["precision"]
        self.session = create_session(path, threads, available_providers(providers), spinning)
        self.provider = self.session.get_providers()[0]
        log.info("%s: %s on %s", path, self.precision, self.provider)

    def infer(self, batch: np.ndarray) -> list[RawDetections]:
        return run_onnx(self.session, batch)
