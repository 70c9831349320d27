"""Parity of an exported model with its PyTorch source: same detections within stated tolerances.

Tolerances, and why: the ONNX graph runs the folded network in ONNX Runtime's kernels, so raw outputs
differ from PyTorch by float rounding (about 1e-5 relative). Scores must agree within 1e-4 (absolute)
and boxes within 0.1 input pixels plus 1e-4 of the coordinate's size (an untrained model predicts boxes
thousands of pixels wide, where float32 rounding alone exceeds 0.1 px): far below anything visible,
far above rounding. Detection
counts must be equal; a score sitting within rounding of the threshold could in principle flip one
detection, and the report then says which image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scratchdet.export.fold_bn import fold_batchnorm
from scratchdet.export.onnx_runner import RawDetections, run_onnx
from scratchdet.models.postprocess import NMSConfig, postprocess
from scratchdet.models.ssd import SSD
from scratchdet.train.data.records import DetectionSet
from scratchdet.train.dataset import DetectionDataset
from scratchdet.train.evaluate import ImageDetections

SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE_PX = 0.1
BOX_TOLERANCE_RELATIVE = 1e-4


@dataclass
class ParityReport:
    images: int
    detections: int
    count_mismatches: list[int] = field(default_factory=list)  # image indices
    unmatched: int = 0
    max_box_diff_px: float = 0.0
    max_score_diff: float = 0.0
    boxes_out_of_tolerance: int = 0

    @property
    def ok(self) -> bool:
        return (not self.count_mismatches and self.unmatched == 0 and self.boxes_out_of_tolerance == 0
                and self.max_score_diff <= SCORE_TOLERANCE)

    def summary(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (f"parity {verdict}: {self.images} images, {self.detections} detections, count mismatches "
                f"{self.count_mismatches}, unmatched {self.unmatched}, max box diff {self.max_box_diff_px:.2e} px "
                f"({self.boxes_out_of_tolerance} beyond {BOX_TOLERANCE_PX} px + {BOX_TOLERANCE_RELATIVE:g} x size), "
                f"max score diff {self.max_score_diff:.2e} (tol {SCORE_TOLERANCE})")


def torch_detections(model: SSD, images: np.ndarray, nms: NMSConfig) -> list[RawDetections]:
    """The PyTorch reference: the model with models.postprocess, boxes in input pixels."""
    with torch.no_grad():
        offsets, logits = model.eval()(torch.from_numpy(images))
    size = model.config.input_size
    return [RawDetections(d.boxes.numpy() * size, d.scores.numpy(), d.labels.numpy() - 1)
            for d in postprocess(offsets, logits, model.priors, model.box_coder, nms)]


def compare(reference: list[RawDetections], candidate: list[RawDetections]) -> ParityReport:
    """Match each reference detection to a candidate of the same class one-to-one (closest box)."""
    report = ParityReport(len(reference), sum(len(r.scores) for r in reference))
    for index, (a, b) in enumerate(zip(reference, candidate)):
        if len(a.scores) != len(b.scores):
            report.count_mismatches.append(index)
        used = np.zeros(len(b.scores), dtype=bool)
        for box, score, cls in zip(a.boxes, a.scores, a.classes):
            options = np.where((b.classes == cls) & ~used)[0]
            if len(options) == 0:
                report.unmatched += 1
                continue
            distance = np.abs(b.boxes[options] - box).max(axis=1)
            best = options[int(distance.argmin())]
            used[best] = True
            report.max_box_diff_px = max(report.max_box_diff_px, float(distance.min()))
            allowed = BOX_TOLERANCE_PX + BOX_TOLERANCE_RELATIVE * np.abs(box).max()
            report.boxes_out_of_tolerance += int(distance.min() > allowed)
            report.max_score_diff = max(report.max_score_diff, float(abs(b.scores[best] - score)))
    return report


def verify_onnx(model: SSD, session, images: np.ndarray, nms: NMSConfig) -> ParityReport:
    """PyTorch (BN folded, with its own decode + NMS) vs the ONNX model on the same images.

    The folded model is the reference so that this compares runtimes only; folding itself is checked
    against the unfolded model at export (max abs diff of raw outputs), where BN statistics far from 1
    can amplify float rounding enough to move a softmax score by 1e-4.
    """
    return compare(torch_detections(fold_batchnorm(model), images, nms), run_onnx(session, images))


def dataset_images(data: DetectionSet, input_size: int, count: int | None = None) -> np.ndarray:
    """The first `count` images of a split, resized as in evaluation: float32 [N, 3, S, S] RGB 0-255."""
    dataset = DetectionDataset(data, input_size, augment=False)
    indices = range(len(dataset) if count is None else min(count, len(dataset)))
    return np.stack([dataset[i][0].numpy() for i in indices])


def onnx_predictions(session, data: DetectionSet, input_size: int, batch_size: int = 8) -> list[ImageDetections]:
    """ONNX detections for every image of `data`, in original-image pixels, for train.evaluate."""
    dataset = DetectionDataset(data, input_size, augment=False)
    results = []
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        images = np.stack([dataset[i][0].numpy() for i in indices])
        for index, dets in zip(indices, run_onnx(session, images)):
            record = data.records[index]
            scale = np.array([record.width, record.height] * 2, dtype=np.float32) / input_size
            results.append(ImageDetections(dets.boxes * scale, dets.scores, dets.classes.astype(np.int64) + 1))
    return results
