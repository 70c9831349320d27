"""Parity of an exported model with its PyTorch source: same detections within stated tolerances.

Tolerances (models/boxes.py TOLERANCES["export-fp32"]), and why: the ONNX graph runs the folded network
in ONNX Runtime's kernels, so raw outputs differ from PyTorch by float rounding (about 1e-5 relative).
Scores must agree within 1e-4 (absolute) and boxes within 0.1 input pixels plus 1e-4 of the coordinate's
size (an untrained model predicts boxes thousands of pixels wide, where float32 rounding alone exceeds
0.1 px): far below anything visible, far above rounding. Detections pair through `boxes.match`, so a
detection farther than that from every candidate is unmatched.

Exact ties: runtimes may order equal scores differently in the NMS tail's TopK, so where two
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
import onnx
import torch

from scratchdet.models.boxes import TOLERANCES, Tolerance, match
from scratchdet.models.contract import check_contract
from scratchdet.models.detections import Backend, Detections
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend
from scratchdet.models.inference.torch_backend import TorchBackend
from scratchdet.models.ssd import SSD

EXPORT_FP32 = TOLERANCES["export-fp32"]


@dataclass
class ParityReport:
    images: int
    detections: int  # in the reference
    tolerance: Tolerance = EXPORT_FP32
    count_mismatches: list[int] = field(default_factory=list)  # images whose counts differ by untied detections
    unmatched: int = 0  # untied detections without a partner within the tolerance, on either side
    tied: int = 0  # detections of tied scores left unmatched: allowed (see the module docstring)
    max_box_diff_px: float = 0.0  # over the matched pairs
    max_score_diff: float = 0.0

    @property
    def ok(self) -> bool:
        return self.detections > 0 and not self.count_mismatches and self.unmatched == 0

    def summary(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        empty = " (the reference detects nothing: nothing was compared)" if self.detections == 0 else ""
        t = self.tolerance
        return (f"parity {verdict}: {self.images} images, {self.detections} detections{empty}, count mismatches "
                f"{self.count_mismatches}, unmatched {self.unmatched} (beyond {t.box_px} px + {t.box_relative:g} "
                f"x size or score {t.score}), tied {self.tied}, max box diff {self.max_box_diff_px:.2e} px, "
                f"max score diff {self.max_score_diff:.2e}")


def _is_tied(class_scores: np.ndarray | None, score: float, score_tolerance: float) -> bool:
    """Whether `score` occurs twice or more among one class's candidate scores [P]."""
    if class_scores is None:
        return False
    return int((np.abs(class_scores - score) <= score_tolerance).sum()) >= 2


def compare_image(a: Detections, b: Detections, report: ParityReport, index: int,
                  scores: np.ndarray | None = None) -> None:
    """Pair a's detections with b's (`boxes.match` at the report's tolerance); `scores` [P, C] are the
    reference's candidate scores of this image, to recognise ties (None: no tie is allowed)."""
    score_tolerance = report.tolerance.score or 0.0
    partners = match(a, b, report.tolerance)
    paired = partners[partners >= 0]
    if len(paired):
        report.max_box_diff_px = max(report.max_box_diff_px,
                                     float(np.abs(b.boxes[paired] - a.boxes[partners >= 0]).max()))
        report.max_score_diff = max(report.max_score_diff,
                                    float(np.abs(b.scores[paired] - a.scores[partners >= 0]).max()))
    used = np.zeros(len(b), dtype=bool)
    used[paired] = True
    loose = 0  # untied detections without a partner, on either side
    for score, cls in [*zip(a.scores[partners < 0], a.class_ids[partners < 0]),
                       *zip(b.scores[~used], b.class_ids[~used])]:
        tied = _is_tied(None if scores is None else scores[:, cls], float(score), score_tolerance)
        report.tied += int(tied)
        loose += int(not tied)
    report.unmatched += loose
    if len(a) != len(b) and loose:
        report.count_mismatches.append(index)


def compare(reference: list[Detections], candidate: list[Detections], scores: np.ndarray | None = None,
            tolerance: Tolerance = EXPORT_FP32) -> ParityReport:
    """Parity of two detection lists of the same images; `scores` [N, P, C]: see compare_image."""
    report = ParityReport(len(reference), sum(len(r) for r in reference), tolerance)
    for index, (a, b) in enumerate(zip(reference, candidate)):
        compare_image(a, b, report, index, None if scores is None else scores[index])
    return report


@torch.no_grad()
def candidate_scores(model: SSD, images: np.ndarray) -> np.ndarray:
    """Every prior's class scores [N, P, C] (softmax, background dropped): where ties can occur."""
    _, logits = model.eval()(torch.from_numpy(images))
    return torch.softmax(logits, dim=-1)[..., 1:].numpy()


def verify_backend(folded: SSD, class_names: list[str], candidate: Backend, images: np.ndarray) -> ParityReport:
    """PyTorch (`folded`: the BN-folded model, with its own decode + NMS) vs `candidate` on the same batch
    [N, 3, S, S].

    The folded model is the reference so that this compares runtimes only; folding itself is checked
    against the unfolded model at export (max abs diff of raw outputs), where BN statistics far from 1
    can amplify float rounding enough to move a softmax score by 1e-4. The caller folds (export_onnx's
    report carries the model it folded): one fold per export.
    """
    reference = TorchBackend(folded, class_names, "cpu")
    reference.postprocess = candidate.postprocess  # the candidate's settings are what its graph runs
    step = candidate.max_batch
    got = [d for i in range(0, len(images), step) for d in candidate.infer(images[i : i + step])]
    return compare(reference.infer(images), got, candidate_scores(folded, images))


def verify_onnx(folded: SSD, class_names: list[str], path: str | Path, images: np.ndarray,
                graph: onnx.ModelProto | None = None) -> ParityReport:
    """verify_backend with the ONNX model at `path` on ONNX Runtime (CPU); `graph`: the file's model, already
    loaded (export_onnx's report.graph), so the file is not read again."""
    checked = None if graph is None else (graph, check_contract(graph, path))
    backend = OnnxBackend(path, providers=["CPUExecutionProvider"], checked=checked)
    try:
        return verify_backend(folded, class_names, backend, images)
    finally:
        backend.close()
