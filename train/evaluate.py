"""Running a model over a dataset, and scoring it: VOC AP@0.5 (11-point and all-point, as the VOC devkit)
and COCO AP (pycocotools).

`detect_dataset` is the one loop that runs a model over a dataset split: through a `Predictor`, so every
backend (PyTorch, ONNX Runtime, TensorRT, OpenVINO) is pre- and post-processed by the same code and its
detections (original-image pixels, 0-based class ids) scored by the same metrics.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from scratchdet.models.inference.detections import Detections
from scratchdet.models.inference.predictor import Predictor
from scratchdet.models.inference.preprocess import prepare
from scratchdet.progress import progress
from scratchdet.train.curves import class_matches
from scratchdet.train.data.images import read_rgb
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord


@dataclass
class EvalResult:
    map50: float  # VOC all-point AP at IoU 0.5, mean over classes
    map50_11point: float
    coco_ap: float
    coco: dict[str, float]  # AP, AP50, AP75, APs, APm, APl
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"mAP@0.5 {self.map50:.4f} (11-point {self.map50_11point:.4f}), COCO AP {self.coco_ap:.4f}, "
                f"AP50 {self.coco['AP50']:.4f}, AP75 {self.coco['AP75']:.4f}")


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


def class_pr(records: list[ImageRecord], detections: list[Detections], label: int,
             iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision over the score-ranked detections of one class (VOC matching, difficult boxes
    ignored: `curves.class_matches`, which the PR curves and confusion plots share)."""
    return class_matches(records, detections, label, iou_threshold).curve()


def coco_metrics(records: list[ImageRecord], detections: list[Detections],
                 class_names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """COCO AP figures and per-class AP from pycocotools (its printing silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
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


def evaluate(records: list[ImageRecord], detections: list[Detections], class_names: list[str]) -> EvalResult:
    """VOC and COCO metrics for detections (original-image pixels) of every record (same order)."""
    if len(records) != len(detections):
        raise ValueError(f"evaluate: {len(records)} images but {len(detections)} detection lists")
    if any(d.frame != "image" for d in detections):
        raise ValueError("evaluate: detections must be in original-image pixels (frame 'image')")
    per_class: dict[str, dict[str, float]] = {}
    for label, name in enumerate(class_names):
        recall, precision = class_pr(records, detections, label)
        per_class[name] = {"ap50": voc_ap(recall, precision, False),
                           "ap50_11point": voc_ap(recall, precision, True)}
    coco, coco_per_class = coco_metrics(records, detections, class_names)
    for name in class_names:
        per_class[name]["coco_ap"] = coco_per_class[name]
    return EvalResult(
        map50=float(np.mean([v["ap50"] for v in per_class.values()])),
        map50_11point=float(np.mean([v["ap50_11point"] for v in per_class.values()])),
        coco_ap=coco["AP"],
        coco=coco,
        per_class=per_class,
    )


def validate(predictor: Predictor, data: DetectionSet, batch_size: int = 16) -> EvalResult:
    """VOC and COCO metrics of the predictor's model on `data`."""
    return evaluate(data.records, detect_dataset(predictor, data, batch_size), data.class_names)
