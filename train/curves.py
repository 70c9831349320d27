"""Validation beyond AP: precision, recall and F1 at a chosen confidence, PR curves per class and a
confusion matrix, computed from detections and ground truth (any model format: only arrays come in).

Matching is VOC's at IoU 0.5: per class, detections in descending score order each look at their
best-overlapping ground-truth box, and are a hit if it is not matched yet (a false positive if it is); a
detection whose best box is "difficult" counts neither way. The confusion matrix ignores classes when
matching (ultralytics' convention): at the confidence, each ground-truth box pairs with at most one
detection (highest IoU first), rows are the predicted class, columns the true class, and the last
row/column is background (missed boxes, false detections).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchdet.models.inference.detections import Detections
from scratchdet.train.data.records import ImageRecord


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of x1, y1, x2, y2 boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class ClassMatches:
    """One class: its detections' scores (descending) and whether each is a true positive."""

    scores: np.ndarray
    hits: np.ndarray  # bool
    positives: int  # ground-truth boxes that are not difficult

    def at(self, conf: float) -> tuple[float, float, float]:
        """(precision, recall, F1) of the detections scoring >= conf."""
        kept = self.scores >= conf
        true_pos = int(self.hits[kept].sum())
        precision = true_pos / max(int(kept.sum()), 1)
        recall = true_pos / max(self.positives, 1)
        return precision, recall, f1(precision, recall)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(recall, precision) after each detection in score order."""
        true_pos = np.cumsum(self.hits)
        return true_pos / max(self.positives, 1), true_pos / np.arange(1, len(self.hits) + 1)


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def class_matches(records: list[ImageRecord], detections: list[Detections], label: int,
                  iou_threshold: float = 0.5) -> ClassMatches:
    """VOC matching of one class (0-based `label`) over all images."""
    entries: list[tuple[float, int, np.ndarray]] = []
    for index, found in enumerate(detections):
        mine = found.class_ids == label
        entries += [(float(s), index, b) for s, b in zip(found.scores[mine], found.boxes[mine])]
    entries.sort(key=lambda e: -e[0])
    truths = [(r.boxes[r.labels == label], r.difficult[r.labels == label]) for r in records]
    taken = [np.zeros(len(boxes), dtype=bool) for boxes, _ in truths]
    scores, hits = [], []
    for score, index, box in entries:
        boxes, difficult = truths[index]
        overlaps = pairwise_iou(box[None], boxes)[0] if len(boxes) else np.zeros(0)
        best = int(overlaps.argmax()) if len(boxes) else -1
        if best >= 0 and overlaps[best] >= iou_threshold and difficult[best]:
            continue  # neither right nor wrong, as in the VOC devkit
        hit = best >= 0 and overlaps[best] >= iou_threshold and not taken[index][best]
        if hit:
            taken[index][best] = True
        scores.append(score)
        hits.append(hit)
    positives = sum(int((~difficult).sum()) for _, difficult in truths)
    return ClassMatches(np.array(scores, dtype=np.float64), np.array(hits, dtype=bool), positives)


def confusion_matrix(records: list[ImageRecord], detections: list[Detections], num_classes: int, conf: float,
                     iou_threshold: float = 0.5) -> np.ndarray:
    """Counts [C + 1, C + 1]: row = predicted class, column = true class, index C = background."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for record, found in zip(records, detections):
        kept = found.scores >= conf
        boxes, predicted = found.boxes[kept], found.class_ids[kept]
        truth, difficult = record.labels, record.difficult
        overlaps = pairwise_iou(boxes, record.boxes) if len(boxes) and len(truth) else np.zeros((len(boxes), 0))
        pairs = np.argwhere(overlaps >= iou_threshold)
        pairs = pairs[np.argsort(-overlaps[pairs[:, 0], pairs[:, 1]], kind="stable")] if len(pairs) else pairs
        used_det, used_truth = set(), set()
        for d, t in pairs.tolist():
            if d not in used_det and t not in used_truth:
                used_det.add(d)
                used_truth.add(t)
                if not difficult[t]:
                    matrix[predicted[d], truth[t]] += 1
        for t in set(range(len(truth))) - used_truth:
            if not difficult[t]:
                matrix[num_classes, truth[t]] += 1
        for d in set(range(len(boxes))) - used_det:
            matrix[predicted[d], num_classes] += 1
    return matrix


@dataclass
class CurveReport:
    """Per class and over all classes: P, R, F1 at `conf`; the matches behind the curves; the matrix."""

    conf: float
    class_names: list[str]
    matches: list[ClassMatches]
    confusion: np.ndarray
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)  # micro average: all classes' detections pooled

    def summary(self) -> str:
        rows = [f"at confidence {self.conf:g}: precision {self.overall['precision']:.4f}, recall "
                f"{self.overall['recall']:.4f}, F1 {self.overall['f1']:.4f} (all classes pooled)"]
        rows += [f"  {name:20s} P {v['precision']:.4f}  R {v['recall']:.4f}  F1 {v['f1']:.4f}  "
                 f"(best F1 {v['best_f1']:.4f} at conf {v['best_f1_conf']:.3f})" for name, v in self.per_class.items()]
        return "\n".join(rows)


def _best_f1(matches: ClassMatches) -> tuple[float, float]:
    """(best F1, the confidence reaching it) over the class's own score thresholds."""
    if not len(matches.scores):
        return 0.0, 0.0
    recall, precision = matches.curve()
    scores = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(scores.argmax())
    return float(scores[best]), float(matches.scores[best])


def curve_report(records: list[ImageRecord], detections: list[Detections], class_names: list[str],
                 conf: float = 0.25, iou_threshold: float = 0.5) -> CurveReport:
    """P/R/F1 at `conf`, per-class matches for PR curves, and the confusion matrix."""
    if len(records) != len(detections):
        raise ValueError(f"curve_report: {len(records)} images but {len(detections)} detection lists")
    matches = [class_matches(records, detections, label, iou_threshold) for label in range(len(class_names))]
    report = CurveReport(conf, class_names, matches,
                         confusion_matrix(records, detections, len(class_names), conf, iou_threshold))
    for name, m in zip(class_names, matches):
        precision, recall, score = m.at(conf)
        best, best_conf = _best_f1(m)
        report.per_class[name] = {"precision": precision, "recall": recall, "f1": score, "best_f1": best,
                                  "best_f1_conf": best_conf, "ground_truth": m.positives}
    pooled = ClassMatches(np.concatenate([m.scores for m in matches]), np.concatenate([m.hits for m in matches]),
                          sum(m.positives for m in matches))
    precision, recall, score = pooled.at(conf)
    report.overall = {"precision": precision, "recall": recall, "f1": score}
    return report


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    temporary.replace(path)
    return path


def plot_curves(report: CurveReport, folder: str | Path, title: str = "") -> list[Path]:
    """pr_curve.png (per class, AP in the legend, the operating point at conf marked) and
    confusion_matrix.png (colour: share of each true class; numbers: counts) in `folder`."""
    import matplotlib

    matplotlib.use("Agg")  # chosen here, not at import: importing this module must not change a user's backend
    import matplotlib.pyplot as plt

    from scratchdet.train.evaluate import voc_ap

    folder = Path(folder)
    figure, axis = plt.subplots(figsize=(6.5, 5))
    for name, m in zip(report.class_names, report.matches):
        recall, precision = m.curve()
        ap = voc_ap(recall, precision, False) if len(recall) else 0.0
        line, = axis.plot(recall, precision, linewidth=1.2, label=f"{name} (AP50 {ap:.3f})")
        point = report.per_class[name]
        axis.plot(point["recall"], point["precision"], "o", color=line.get_color())
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title=f"{title}precision-recall at IoU 0.5 (dots: conf {report.conf:g})")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    written = [_save(figure, folder / "pr_curve.png")]

    names = [*report.class_names, "background"]
    counts = report.confusion
    shares = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    size = max(4.5, 0.6 * len(names) + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(names)):
        for column in range(len(names)):
            if counts[row, column]:
                axis.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=8,
                          color="white" if shares[row, column] > 0.5 else "black")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set(xlabel="true class", ylabel="predicted class",
             title=f"{title}confusion at conf {report.conf:g}, IoU 0.5\n(colour: share of the true class)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    written.append(_save(figure, folder / "confusion_matrix.png"))
    return written
