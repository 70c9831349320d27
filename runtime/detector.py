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
from scratchdet.models.inference.formats import AUTO, open_backend
from scratchdet.models.inference.predictor import Predictor


class Detector(Predictor):
    """A Predictor opened from a model file (or given a backend).

    `conf`: minimum score kept (default: the model's deployment threshold); `classes`: 0-based class ids
    kept (all when None); `runtime`: "auto" (default: for .onnx, OpenVINO where bench measured it faster on
    this host, else ONNX Runtime), a runtime name, or None for the format's first; the other options as
    `open_backend`.
    """

    def __init__(self, model: str | Path | Backend, conf: float | None = None,
                 classes: Sequence[int] | None = None, *, runtime: str | None = AUTO, device: str | None = None,
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
