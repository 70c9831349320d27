"""The one inference path: images in, `Detections` in original-image pixels out, through any `Backend`.

Training-time validation, export parity, bench accuracy, the gate, `scratchdet val` and `predict` all
call this, so every model format is pre- and post-processed by the same code:

    images (any depth/channels) -> preprocess.prepare (plain resize, RGB, float 0-255)
    -> backend.infer in chunks of at most backend.max_batch (decoding + NMS inside)
    -> Detections.to_image (scale back, clip) -> score and class filter
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scratchdet.models.detections import Backend, Detections
from scratchdet.models.inference.preprocess import prepare

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the package supports 3.10, and mypy reads 3.11


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds of one `detect` call per stage; `backend` includes the model's decoding and NMS."""

    preprocess: float
    backend: float
    postprocess: float

    @property
    def total(self) -> float:
        return self.preprocess + self.backend + self.postprocess


class Predictor:
    """Runs a backend on images. `conf`: minimum score kept (default 0: all the model returns, which is
    what evaluation wants); `classes`: 0-based class ids kept (all when None). A context manager: leaving
    it closes the backend."""

    def __init__(self, backend: Backend, conf: float = 0.0, classes: Sequence[int] | None = None) -> None:
        if not 0.0 <= conf <= 1.0:  # also rejects NaN
            raise ValueError(f"conf must be within [0, 1], got {conf}")
        if classes is not None:
            unknown = sorted(set(classes) - set(range(len(backend.class_names))))
            if unknown:
                raise ValueError(f"classes {unknown} are not ids of this model: 0..{len(backend.class_names) - 1} "
                                 f"({', '.join(backend.class_names)})")
        self.backend = backend
        self.conf = conf
        self.classes = None if classes is None else np.asarray(sorted(set(classes)), dtype=np.int64)
        self.last_times: StageTimes | None = None  # of the latest call only, so a stream never grows memory

    @property
    def class_names(self) -> list[str]:
        return self.backend.class_names

    @property
    def input_size(self) -> int:
        return self.backend.input_size

    def detect(self, images: np.ndarray | Sequence[np.ndarray], color: str = "bgr") -> list[Detections]:
        """Detections for one image or a list; `color` says whether 3/4-channel images are BGR or RGB."""
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            images = [images]
        started = time.perf_counter()
        batch, sizes = prepare(list(images), self.input_size, color)
        prepared = time.perf_counter()
        step = self.backend.max_batch
        raw = [d for start in range(0, len(batch), step) for d in self.backend.infer(batch[start : start + step])]
        inferred = time.perf_counter()
        results = [self._filter(d.to_image(width, height, self.input_size)) for d, (width, height) in zip(raw, sizes)]
        self.last_times = StageTimes((prepared - started) * 1e3, (inferred - prepared) * 1e3,
                                     (time.perf_counter() - inferred) * 1e3)
        return results

    def _filter(self, detections: Detections) -> Detections:
        keep = detections.scores >= self.conf
        if self.classes is not None:
            keep &= np.isin(detections.class_ids, self.classes)
        return detections.select(keep)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
