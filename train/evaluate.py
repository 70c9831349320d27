"""Running a model over a dataset, and scoring it, from one matching of its detections: VOC AP@0.5
(11-point and all-point, as the VOC devkit), COCO AP (pycocotools), and at a chosen confidence precision,
recall and F1 per class, the PR curves and a confusion matrix (train/curves.py plots them).

`detect_dataset` is the one loop that runs a model over a dataset split: through a `Predictor`, so every
backend (PyTorch, ONNX Runtime, TensorRT, OpenVINO) is pre- and post-processed by the same code and its
detections (original-image pixels, 0-based class ids) scored by the same metrics.

Matching is VOC's at IoU 0.5: per class, detections in descending score order each look at their
best-overlapping ground-truth box, and are a hit if it is not matched yet (a false positive if it is); a
detection whose best box is "difficult" counts neither way. AP and the curves both come from these matches.
The confusion matrix ignores classes when matching (ultralytics' convention): at the confidence, each
ground-truth box pairs with at most one detection (highest IoU first), rows are the predicted class, columns
the true class, and the last row/column is background (missed boxes, false detections).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchdet.models.boxes import pairwise_iou
from scratchdet.models.detections import Detections
from scratchdet.models.inference.predictor import Predictor
from scratchdet.models.inference.preprocess import prepare
from scratchdet.progress import progress
from scratchdet.train.data.images import read_rgb
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord


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

    def best_f1(self) -> tuple[float, float]:
        """(best F1, the confidence reaching it) over the class's own score thresholds."""
        if not len(self.scores):
            return 0.0, 0.0
        recall, precision = self.curve()
        scores = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(scores.argmax())
        return float(scores[best]), float(self.scores[best])


@dataclass
class EvalResult:
    """What one matching of a model's detections yields: VOC and COCO AP; at confidence `conf`, P/R/F1 per
    class (`at_conf`) and pooled over classes (`overall`, micro average); the per-class matches behind the PR
    curves; the confusion matrix [C + 1, C + 1] (row predicted, column true, index C background)."""

    map50: float  # VOC all-point AP at IoU 0.5, mean over classes
    map50_11point: float
    coco_ap: float
    coco: dict[str, float]  # AP, AP50, AP75, APs, APm, APl
    per_class: dict[str, dict[str, float]]  # ap50, ap50_11point, coco_ap
    conf: float
    at_conf: dict[str, dict[str, float]]  # precision, recall, f1, best_f1, best_f1_conf, ground_truth
    overall: dict[str, float]
    class_names: list[str]
    matches: list[ClassMatches]
    confusion: np.ndarray

    def summary(self) -> str:
        return (f"mAP@0.5 {self.map50:.4f} (11-point {self.map50_11point:.4f}), COCO AP {self.coco_ap:.4f}, "
                f"AP50 {self.coco['AP50']:.4f}, AP75 {self.coco['AP75']:.4f}")

    def at_conf_summary(self) -> str:
        rows = [f"at confidence {self.conf:g}: precision {self.overall['precision']:.4f}, recall "
                f"{self.overall['recall']:.4f}, F1 {self.overall['f1']:.4f} (all classes pooled)"]
        rows += [f"  {name:20s} P {v['precision']:.4f}  R {v['recall']:.4f}  F1 {v['f1']:.4f}  "
                 f"(best F1 {v['best_f1']:.4f} at conf {v['best_f1_conf']:.3f})" for name, v in self.at_conf.items()]
        return "\n".join(rows)

    def metrics(self) -> dict[str, Any]:
        """The JSON document `scratchdet val` writes (metrics.json)."""
        return {"map50": self.map50, "map50_11point": self.map50_11point, "coco_ap": self.coco_ap,
                "coco": self.coco, "per_class": self.per_class,
                "at_conf": {"conf": self.conf, "all": self.overall, **self.at_conf},
                "confusion_matrix": {"rows_predicted_columns_true": [*self.class_names, "background"],
                                     "counts": self.confusion.tolist()}}


def read_record_image(record: ImageRecord) -> np.ndarray:
    """The record's image as HxWx3 uint8 RGB, checked against the annotated size."""
    image = read_rgb(record.path)
    if image.shape[:2] != (record.height, record.width):
        raise DatasetError(f"{record.path}: image is {image.shape[1]}x{image.shape[0]} but the annotations say "
                           f"{record.width}x{record.height}")
    return image


def detect_dataset(predictor: Predictor, data: DetectionSet, batch_size: int = 16) -> list[Detections]:
    """The predictor's detections for every image of `data`, in order (original-image pixels)."""
    if predictor.class_names != data.class_names:
        raise ValueError(f"{data.root}: classes {data.class_names} differ from the model's {predictor.class_names}")
    results: list[Detections] = []
    records = data.records
    for start in progress(range(0, len(records), batch_size), desc=f"detect {data.split}", leave=False):
        images = [read_record_image(r) for r in records[start : start + batch_size]]
        results.extend(predictor.detect(images, color="rgb"))
    return results


def dataset_batch(records: list[ImageRecord], input_size: int) -> np.ndarray:
    """These records' images as the model's input, prepared as the Predictor does: float32 [N, 3, S, S]."""
    return prepare([read_record_image(r) for r in records], input_size, "rgb")[0]


def voc_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool) -> float:
    """Area under the precision-recall curve, as VOC devkit's voc_eval.py computes it."""
    if eleven_point:
        return float(np.mean([precision[recall >= t].max(initial=0.0) for t in np.linspace(0, 1, 11)]))
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    changes = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


def coco_metrics(records: list[ImageRecord], detections: list[Detections],
                 class_names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """COCO AP figures and per-class AP from pycocotools (its printing silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, results = [], []
    annotations: list[dict[str, Any]] = []
    for image_id, (record, dets) in enumerate(zip(records, detections), start=1):
        images.append({"id": image_id, "width": record.width, "height": record.height})
        for box, label in zip(record.boxes.tolist(), record.labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.class_ids.tolist()):
            results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    if not results:
        return dict.fromkeys(names, 0.0), dict.fromkeys(class_names, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": i, "name": n} for i, n in enumerate(class_names)]}
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: max(float(v), 0.0) for name, v in zip(names, evaluator.stats[:6])}
    precision = evaluator.eval["precision"]  # [IoU, recall, class, area, max dets]
    per_class = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return stats, per_class


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
        overlaps = pairwise_iou(box[None], boxes)[0]
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
        overlaps = pairwise_iou(boxes, record.boxes)
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


def evaluate(records: list[ImageRecord], detections: list[Detections], class_names: list[str],
             conf: float = 0.25, iou_threshold: float = 0.5) -> EvalResult:
    """Every metric of detections (original-image pixels) of every record (same order); P/R/F1 and the
    confusion matrix at `conf`."""
    if len(records) != len(detections):
        raise ValueError(f"evaluate: {len(records)} images but {len(detections)} detection lists")
    if any(d.frame != "image" for d in detections):
        raise ValueError("evaluate: detections must be in original-image pixels (frame 'image')")
    matches = [class_matches(records, detections, label, iou_threshold) for label in range(len(class_names))]
    coco, coco_per_class = coco_metrics(records, detections, class_names)
    per_class: dict[str, dict[str, float]] = {}
    at_conf: dict[str, dict[str, float]] = {}
    for name, m in zip(class_names, matches):
        recall, precision = m.curve()
        per_class[name] = {"ap50": voc_ap(recall, precision, False), "ap50_11point": voc_ap(recall, precision, True),
                           "coco_ap": coco_per_class[name]}
        p, r, score = m.at(conf)
        best, best_conf = m.best_f1()
        at_conf[name] = {"precision": p, "recall": r, "f1": score, "best_f1": best, "best_f1_conf": best_conf,
                         "ground_truth": m.positives}
    pooled = ClassMatches(np.concatenate([m.scores for m in matches]), np.concatenate([m.hits for m in matches]),
                          sum(m.positives for m in matches))
    p, r, score = pooled.at(conf)
    return EvalResult(
        map50=float(np.mean([v["ap50"] for v in per_class.values()])),
        map50_11point=float(np.mean([v["ap50_11point"] for v in per_class.values()])),
        coco_ap=coco["AP"], coco=coco, per_class=per_class, conf=conf, at_conf=at_conf,
        overall={"precision": p, "recall": r, "f1": score}, class_names=class_names, matches=matches,
        confusion=confusion_matrix(records, detections, len(class_names), conf, iou_threshold))


def validate(predictor: Predictor, data: DetectionSet, batch_size: int = 16) -> EvalResult:
    """VOC and COCO metrics of the predictor's model on `data`."""
    return evaluate(data.records, detect_dataset(predictor, data, batch_size), data.class_names)
