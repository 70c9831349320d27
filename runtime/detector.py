"""One Detector over every model format: checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine).

    detector = Detector("runs/bccd/export/model-int8-ort.onnx")
    results = detector.detect([cv2.imread("cells.jpg")])          # OpenCV images are BGR
    for box, score, name in zip(results[0].boxes, results[0].scores, results[0].class_names): ...

Class names and input size come from the model itself (checkpoint, ONNX metadata, engine sidecar).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scratchdet.runtime.preprocess import prepare, to_original

SUFFIXES = (".pt", ".onnx", ".engine")


@dataclass
class Result:
    """One image's detections: boxes [K, 4] x1, y1, x2, y2 in original-image pixels, best first."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray  # 0-based indices into the model's class names
    class_names: list[str]


@dataclass
class Timing:
    """Milliseconds per stage of each call. `network` is the backend's run: for ONNX and TensorRT it
    includes the in-graph decoding and NMS; the PyTorch backend reports its decode + NMS as postprocess."""

    preprocess: list[float] = field(default_factory=list)
    network: list[float] = field(default_factory=list)
    postprocess: list[float] = field(default_factory=list)

    def clear(self) -> None:
        self.preprocess.clear()
        self.network.clear()
        self.postprocess.clear()


def open_backend(path: str | Path, **options):
    """The backend for a model file, by its suffix."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown model format '{path.suffix}'; expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix == ".pt":
        from scratchdet.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(path, device=options.get("device"))
    if path.suffix == ".onnx":
        from scratchdet.runtime.backends.onnx_backend import OnnxBackend

        return OnnxBackend(path, threads=options.get("threads"), providers=options.get("providers"),
                           spinning=options.get("spinning", True))
    from scratchdet.runtime.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, cuda_graph=options.get("cuda_graph", False))


class Detector:
    def __init__(self, model, conf: float = 0.25, classes: list[int] | None = None, **options) -> None:
        """`model`: a model file, or a backend object (infer, class_names, input_size, name, precision).
        `conf`: minimum score kept; `classes`: 0-based class ids kept (all when None);
        options: device (PyTorch), threads, providers and spinning (ONNX Runtime), cuda_graph (TensorRT)."""
        self.backend = model if hasattr(model, "infer") else open_backend(model, **options)
        self.class_names: list[str] = self.backend.class_names
        self.input_size: int = self.backend.input_size
        self.conf, self.classes = conf, classes
        self.timing = Timing()

    def detect(self, images: np.ndarray | list[np.ndarray], color: str = "bgr") -> list[Result]:
        """Detections for one image or a list; `color` says whether 3/4-channel images are BGR or RGB."""
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            images = [images]
        started = time.perf_counter()
        batch, sizes = prepare(list(images), self.input_size, color)
        prepared = time.perf_counter()
        raw = self.backend.infer(batch)
        inferred = time.perf_counter()
        results = [self._result(r, size) for r, size in zip(raw, sizes)]
        backend_post = getattr(self.backend, "postprocess_ms", 0.0)
        self.timing.preprocess.append((prepared - started) * 1e3)
        self.timing.network.append((inferred - prepared) * 1e3 - backend_post)
        self.timing.postprocess.append((time.perf_counter() - inferred) * 1e3 + backend_post)
        return results

    def _result(self, raw, size: np.ndarray) -> Result:
        keep = raw.scores >= self.conf
        if self.classes is not None:
            keep &= np.isin(raw.classes, self.classes)
        ids = raw.classes[keep].astype(np.int64)
        return Result(to_original(raw.boxes[keep], size, self.input_size), raw.scores[keep], ids,
                      [self.class_names[i] for i in ids])
