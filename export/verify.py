"""Parity of an exported model with its PyTorch source: same detections within stated tolerances.

Tolerances, and why: the ONNX graph runs the folded network in ONNX Runtime's kernels, so raw outputs
differ from PyTorch by float rounding (about 1e-5 relative). Scores must agree within 1e-4 (absolute)
and boxes within 0.1 input pixels plus 1e-4 of the coordinate's size (an untrained model predicts boxes
thousands of pixels wide, where float32 rounding alone exceeds 0.1 px): far below anything visible,
far above rounding.

Exact ties: ONNX leaves the order of equal scores in NonMaxSuppression unspecified, so where two
candidates of a class score the same (within the score tolerance), the runtimes may keep different
boxes of the tie. Random weights produce such ties often (saturated softmax). A detection whose
score is tied among its class's candidates may therefore be unmatched or differ in box; it is counted
as `tied` and allowed. Every untied detection must match, and the reference must have detections at
all (a model that detects nothing, e.g. NaN weights, proves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scratchdet.export.fold_bn import fold_batchnorm
from scratchdet.models.inference.detections import Backend, Detections
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend
from scratchdet.models.inference.torch_backend import TorchBackend
from scratchdet.models.ssd import SSD

SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE_PX = 0.1
BOX_TOLERANCE_RELATIVE = 1e-4


@dataclass
class ParityReport:
    images: int
    detections: int  # in the reference
    count_mismatches: list[int] = field(default_factory=list)  # images whose counts differ by untied detections
    unmatched: int = 0  # untied detections without a partner
    tied: int = 0  # detections of tied scores left unmatched or moved: allowed (see the module docstring)
    max_box_diff_px: float = 0.0
    max_score_diff: float = 0.0
    boxes_out_of_tolerance: int = 0

    @property
    def ok(self) -> bool:
        return (self.detections > 0 and not self.count_mismatches and self.unmatched == 0
                and self.boxes_out_of_tolerance == 0 and self.max_score_diff <= SCORE_TOLERANCE)

    def summary(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        empty = " (the reference detects nothing: nothing was compared)" if self.detections == 0 else ""
        return (f"parity {verdict}: {self.images} images, {self.detections} detections{empty}, count mismatches "
                f"{self.count_mismatches}, unmatched {self.unmatched}, tied {self.tied}, max box diff "
                f"{self.max_box_diff_px:.2e} px ({self.boxes_out_of_tolerance} beyond {BOX_TOLERANCE_PX} px + "
                f"{BOX_TOLERANCE_RELATIVE:g} x size), max score diff {self.max_score_diff:.2e} "
                f"(tol {SCORE_TOLERANCE})")


def _is_tied(class_scores: np.ndarray | None, score: float) -> bool:
    """Whether `score` occurs twice or more among one class's candidate scores [P]."""
    if class_scores is None:
        return False
    return int((np.abs(class_scores - score) <= SCORE_TOLERANCE).sum()) >= 2


def compare_image(a: Detections, b: Detections, report: ParityReport, index: int,
                  scores: np.ndarray | None = None) -> None:
    """Match each of a's detections to one of b's of the same class (closest box); `scores` [P, C] are the
    reference's candidate scores of this image, to recognise ties (None: no tie is allowed)."""
    used = np.zeros(len(b), dtype=bool)
    loose = 0  # untied detections without a partner, on either side
    for box, score, cls in zip(a.boxes, a.scores, a.class_ids):
        tied = _is_tied(None if scores is None else scores[:, cls], float(score))
        options = np.where((b.class_ids == cls) & ~used)[0]
        distance = np.abs(b.boxes[options] - box).max(axis=1) if len(options) else np.empty(0)
        allowed = BOX_TOLERANCE_PX + BOX_TOLERANCE_RELATIVE * np.abs(box).max()
        if len(options) == 0 or (tied and distance.min() > allowed):
            report.tied += int(tied)
            loose += int(not tied)
            continue
        best = options[int(distance.argmin())]
        used[best] = True
        report.max_box_diff_px = max(report.max_box_diff_px, float(distance.min()))
        report.boxes_out_of_tolerance += int(distance.min() > allowed)
        report.max_score_diff = max(report.max_score_diff, float(abs(b.scores[best] - score)))
    for score, cls in zip(b.scores[~used], b.class_ids[~used]):
        tied = _is_tied(None if scores is None else scores[:, cls], float(score))
        report.tied += int(tied)
        loose += int(not tied)
    report.unmatched += loose
    if len(a) != len(b) and loose:
        report.count_mismatches.append(index)


def compare(reference: list[Detections], candidate: list[Detections],
            scores: np.ndarray | None = None) -> ParityReport:
    """Parity of two detection lists of the same images; `scores` [N, P, C]: see compare_image."""
    report = ParityReport(len(reference), sum(len(r) for r in reference))
    for index, (a, b) in enumerate(zip(reference, candidate)):
        compare_image(a, b, report, index, None if scores is None else scores[index])
    return report


@torch.no_grad()
def candidate_scores(model: SSD, images: np.ndarray) -> np.ndarray:
    """Every prior's class scores [N, P, C] (softmax, background dropped): where ties can occur."""
    _, logits = model.eval()(torch.from_numpy(images))
    return torch.softmax(logits, dim=-1)[..., 1:].numpy()


def verify_backend(model: SSD, class_names: list[str], candidate: Backend, images: np.ndarray) -> ParityReport:
    """PyTorch (BN folded, with its own decode + NMS) vs `candidate` on the same batch [N, 3, S, S].

    The folded model is the reference so that this compares runtimes only; folding itself is checked
    against the unfolded model at export (max abs diff of raw outputs), where BN statistics far from 1
    can amplify float rounding enough to move a softmax score by 1e-4.
    """
    folded = fold_batchnorm(model)
    reference = TorchBackend(folded, class_names, "cpu")
    reference.postprocess = candidate.postprocess  # the candidate's settings are what its graph runs
    step = candidate.max_batch
    got = [d for i in range(0, len(images), step) for d in candidate.infer(images[i : i + step])]
    return compare(reference.infer(images), got, candidate_scores(folded, images))


def verify_onnx(model: SSD, class_names: list[str], path: str | Path, images: np.ndarray) -> ParityReport:
    """verify_backend with the ONNX model at `path` on ONNX Runtime (CPU)."""
    backend = OnnxBackend(path, providers=["CPUExecutionProvider"])
    try:
        return verify_backend(model, class_names, backend, images)
    finally:
        backend.close()
