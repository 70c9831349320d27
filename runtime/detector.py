"""One Detector over every model format: checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine).

    with Detector("runs/bccd/export/model-int8-ort.onnx") as detector:
        (cells,) = detector.detect(cv2.imread("cells.jpg"))        # OpenCV images are BGR
        for box, score, class_id in zip(cells.boxes, cells.scores, cells.class_ids): ...

Class names, input size and post-processing settings come from the model itself (checkpoint, ONNX
metadata, engine sidecar). By default the Detector keeps detections scoring at least the model's
deployment threshold (`postprocess.deploy_score_threshold`, 0.25 unless exported otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scratchdet.models.detections import Backend
from scratchdet.models.predictor import Predictor

SUFFIXES = (".pt", ".onnx", ".engine")
RUNTIMES = {".pt": ("pytorch",), ".onnx": ("onnxruntime", "openvino"), ".engine": ("tensorrt",)}


def open_backend(path: str | Path, runtime: str | None = None, *, device: str | None = None,
                 threads: int | None = None, providers: list[str] | None = None, spinning: bool = True,
                 cuda_graph: bool = False, precision_hint: str = "f32") -> Backend:
    """The backend for a model file, by its suffix (and `runtime`, where a format has several).

    Options: device (PyTorch), threads, providers and spinning (ONNX Runtime), cuda_graph (TensorRT),
    precision_hint (OpenVINO: "f32", or "bf16" on CPUs with BF16).
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown model format '{path.suffix}'; expected one of {', '.join(SUFFIXES)}")
    runtime = runtime or RUNTIMES[path.suffix][0]
    if runtime not in RUNTIMES[path.suffix]:
        raise ValueError(f"{path}: runtime '{runtime}' does not run {path.suffix} files "
                         f"(choose {', '.join(RUNTIMES[path.suffix])})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix == ".pt":
        from scratchdet.models.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(path, device)
    if runtime == "openvino":
        from scratchdet.runtime.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, threads=threads, precision_hint=precision_hint)
    if path.suffix == ".onnx":
        from scratchdet.export.onnx_backend import OnnxBackend

        return OnnxBackend(path, threads=threads, providers=providers, spinning=spinning)
    from scratchdet.runtime.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, cuda_graph=cuda_graph)


class Detector(Predictor):
    """A Predictor opened from a model file (or given a backend).

    `conf`: minimum score kept (default: the model's deployment threshold); `classes`: 0-based class ids
    kept (all when None); the other options as `open_backend`.
    """

    def __init__(self, model: str | Path | Backend, conf: float | None = None,
                 classes: Sequence[int] | None = None, *, runtime: str | None = None, device: str | None = None,
                 threads: int | None = None, providers: list[str] | None = None, spinning: bool = True,
                 cuda_graph: bool = False, precision_hint: str = "f32") -> None:
        if isinstance(model, (str, Path)):
            model = open_backend(model, runtime, device=device, threads=threads, providers=providers,
                                 spinning=spinning, cuda_graph=cuda_graph, precision_hint=precision_hint)
        super().__init__(model, model.postprocess.deploy_score_threshold if conf is None else conf, classes)

    def __call__(self, source, iou: float | None = None, max_det: int | None = None, color: str = "bgr") -> list:
        """runtime.results.Results for an image path, folder, glob, image array, or a list of these."""
        from scratchdet.runtime.results import results_for

        return results_for(self, source, iou, max_det, color)
