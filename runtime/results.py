"""What a Detector call returns: one `Results` per image, which can draw, save and serialise itself.

    results = Detector("model.onnx")("cells.jpg")           # a path, a BGR array, or a list of them
    results[0].save("cells-detected.jpg"); print(results[0].to_json())

Boxes are x1, y1, x2, y2 in pixels of the original image. The JSON schema is board_runner's
(`detections_document`), so files written here and on a board read the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from scratchdet.models.boxes import nms
from scratchdet.models.files import write_bytes
from scratchdet.runtime.board_runner import detections_document

TXT_FORMAT = "class_id x1 y1 x2 y2 score (0-based class id, corners in pixels of the original image)"


def colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    hue = (class_id * 47) % 180
    blue, green, red = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(blue), int(green), int(red)


def default_line_width(shape: tuple[int, ...]) -> int:
    """Box line width growing with the image (ultralytics' rule): 2 px up to ~830 px, 3 at 1000, 6 at 2000."""
    return max(round((shape[0] + shape[1]) / 2 * 0.003), 2)


def draw(image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, labels: list[str],
         line_width: int | None = None) -> np.ndarray:
    """A copy of a BGR image with boxes, then labels on a filled background kept inside the image.

    Labels are drawn after every box, so no later box paints over an earlier label; the font
    scales with the line width."""
    canvas = image.copy()
    width = line_width or default_line_width(canvas.shape)
    corners = np.round(np.asarray(boxes).reshape(-1, 4)).astype(int).tolist()
    for (x1, y1, x2, y2), class_id in zip(corners, class_ids):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour(int(class_id)), width, cv2.LINE_AA)
    # font from the image's size, not the line width: ultralytics' width / 3 gives 15-px-high labels on a
    # 160-px image, hiding what they label
    scale = max(min(canvas.shape[:2]) / 1000, 0.35) if line_width is None else line_width / 3
    thickness = max(round(scale * 2), 1)
    height, image_width = canvas.shape[:2]
    for (x1, y1, _, _), class_id, label in zip(corners, class_ids, labels):
        (w, h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        box_h = h + baseline + 2
        top = y1 - box_h if y1 - box_h >= 0 else min(y1, height - box_h)  # above the box, else inside it
        left = min(max(x1, 0), max(image_width - w - 2, 0))
        background = colour(int(class_id))
        cv2.rectangle(canvas, (left, top), (left + w + 2, top + box_h), background, -1)
        text = (0, 0, 0) if sum(background) > 382 else (255, 255, 255)
        cv2.putText(canvas, label, (left + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, text, thickness,
                    cv2.LINE_AA)
    return canvas


def tighten(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float | None = None,
            max_det: int | None = None) -> np.ndarray:
    """Indices kept by a second, per-class NMS at `iou` (models.boxes.nms) and a cap of `max_det`, best
    score first.

    The model's own NMS already ran (in the ONNX/engine graph, or the PyTorch postprocess) with the
    thresholds it was exported with, so this can only remove more: an `iou` above the model's changes
    nothing, and `max_det` above the model's K keeps all."""
    order = np.argsort(-scores, kind="stable") if iou is None else nms(boxes, scores, class_ids, iou)
    return order[:max_det] if max_det is not None else order


@dataclass
class Results:
    """One image's detections with its source image, what can be done with them, and the timing.

    `speed`: milliseconds per image of preprocess / inference / postprocess (a batch's time divided by
    its images)."""

    path: str
    image: np.ndarray  # the original image as given (BGR for files read by OpenCV)
    boxes: np.ndarray  # [K, 4] x1, y1, x2, y2 in original-image pixels
    scores: np.ndarray  # [K]
    class_ids: np.ndarray  # [K] 0-based indices into `names`
    names: list[str]
    speed: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        return [self.names[int(c)] for c in self.class_ids]

    def plot(self, line_width: int | None = None) -> np.ndarray:
        """The image (BGR) with boxes and "name score" labels drawn."""
        image = self.image
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if image.dtype != np.uint8:
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1e-9))
        labels = [f"{name} {score:.2f}" for name, score in zip(self.class_names, self.scores)]
        return draw(image, self.boxes, self.class_ids, labels, line_width)

    def save(self, path: str | Path, line_width: int | None = None) -> Path:
        """Write the annotated image (format from the suffix); returns the path."""
        path = Path(path)
        try:
            encoded, data = cv2.imencode(path.suffix, self.plot(line_width))
        except cv2.error:  # OpenCV raises for an unknown suffix
            encoded = False
        if not encoded:
            raise OSError(f"{path}: OpenCV could not encode the image (unknown suffix '{path.suffix}')")
        return write_bytes(path, data.tobytes())

    def to_dict(self) -> dict:
        """board_runner's schema: {"image", "width", "height", "detections": [...]}."""
        height, width = self.image.shape[:2]
        return detections_document(self.path, width, height, self.boxes, self.scores, self.class_ids, self.names)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_txt(self) -> str:
        """One line per detection: class_id x1 y1 x2 y2 score (see TXT_FORMAT)."""
        return "".join(f"{int(c)} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f} {s:.5f}\n"
                       for b, s, c in zip(self.boxes.reshape(-1, 4), self.scores, self.class_ids))


def read_image(path: str | Path) -> np.ndarray:
    """An image file as OpenCV reads it (BGR, any depth); ValueError naming the file if unreadable."""
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # e.g. a header announcing more pixels than OpenCV's limit
        raise ValueError(f"{path}: OpenCV cannot read the image ({str(error).strip().splitlines()[-1]})") from None
    if image is None:
        raise ValueError(f"{path}: cannot read the image (corrupt or not an image)")
    return image


def detect_results(detector, images: list[np.ndarray], paths: list[str], iou: float | None = None,
                   max_det: int | None = None, color: str = "bgr") -> list[Results]:
    """Run `detector` (a runtime Detector) on a batch and wrap each image's detections."""
    found = detector.detect(images, color=color)
    times, count = detector.last_times, max(len(images), 1)
    speed = {"preprocess": times.preprocess / count, "inference": times.backend / count,
             "postprocess": times.postprocess / count}
    results = []
    for image, path, det in zip(images, paths, found):
        keep = tighten(det.boxes, det.scores, det.class_ids, iou, max_det)
        results.append(Results(path, image, det.boxes[keep], det.scores[keep], det.class_ids[keep],
                               detector.class_names, dict(speed)))
    return results
