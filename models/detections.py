"""What a detector returns, whatever runs it: one `Detections` type, and the `Backend` protocol that every
model format (PyTorch, ONNX Runtime, TensorRT, OpenVINO) implements.

Class ids are 0-based indices into the model's class names everywhere; the background class exists only
inside the training loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scratchdet.models.config import PostprocessConfig

FRAMES = ("input", "image")  # network-input pixels (S x S), or pixels of the original image


@dataclass(frozen=True)
class Detections:
    """One image's detections, best score first.

    boxes [K, 4] float32 x1, y1, x2, y2 in the pixels of `frame`; scores [K] float32; class_ids [K] int64.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    frame: str = "input"

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"Detections.frame must be one of {FRAMES}, got '{self.frame}'")
        count = len(self.scores)
        if self.boxes.shape != (count, 4) or self.class_ids.shape != (count,):
            raise ValueError(f"Detections: boxes {self.boxes.shape}, scores {self.scores.shape} and class_ids "
                             f"{self.class_ids.shape} must be [K, 4], [K], [K]")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_arrays(cls, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    frame: str = "input") -> Detections:
        """From any numeric arrays: float32 boxes [K, 4] and scores, int64 class ids."""
        return cls(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1),
                   np.asarray(class_ids, np.int64).reshape(-1), frame)

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where the boolean mask (or index array) `keep` selects."""
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], self.frame)

    def to_image(self, width: float, height: float, input_size: int) -> Detections:
        """Input-pixel detections of a plain-resized image -> pixels of the original (width x height), clipped."""
        if self.frame != "input":
            raise ValueError("to_image: detections are already in original-image pixels")
        scale = np.array([width, height, width, height], dtype=np.float32) / input_size
        boxes = np.clip(self.boxes * scale, 0, np.array([width, height, width, height], dtype=np.float32))
        return Detections(boxes.astype(np.float32), self.scores, self.class_ids, "image")


class Backend(Protocol):
    """A loaded model of one format. `infer` takes float32 [B, 3, S, S] RGB 0-255 (B <= max_batch) and
    returns per image its detections in input pixels, after the model's own decoding and NMS."""

    name: str  # the runtime: "pytorch", "onnxruntime", "tensorrt", "openvino"
    provider: str  # where it runs: "cpu", "CPUExecutionProvider", a GPU name, ...
    precision: str  # "fp32", "fp16", "int8-ort", ...
    input_size: int
    class_names: list[str]
    max_batch: int
    postprocess: PostprocessConfig

    def infer(self, images: np.ndarray) -> list[Detections]: ...

    def close(self) -> None: ...
