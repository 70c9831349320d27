"""COCO detection json: `annotations.json` + `images/`, with an optional `splits.json`.

`splits.json` maps split names to lists of image file names. Without it, every fifth image (sorted
by file name) is 'val' and the rest 'train', a deterministic split that is logged.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord, clean_boxes, finish

log = logging.getLogger(__name__)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot read JSON: {error}") from None


def split_file_names(root: Path, file_names: list[str], split: str) -> set[str]:
    """The file names in `split` ('all' for every image)."""
    if split == "all":
        return set(file_names)
    splits_path = root / "splits.json"
    if splits_path.is_file():
        splits = _read_json(splits_path)
        if split not in splits or not isinstance(splits[split], list):
            known = [k for k, v in splits.items() if isinstance(v, list)]
            raise DatasetError(f"{splits_path}: no split '{split}' (splits: {', '.join(known)}, all)")
        unknown = set(splits[split]) - set(file_names)
        if unknown:
            raise DatasetError(
                f"{splits_path}: split '{split}' names {len(unknown)} image(s) absent from "
                f"annotations.json, e.g. {sorted(unknown)[0]}"
            )
        return set(splits[split])
    if split not in ("train", "val"):
        raise DatasetError(f"{root}: no splits.json, so only 'train', 'val' or 'all' exist, not '{split}'")
    ordered = sorted(file_names)
    val = set(ordered[::5])
    log.info("%s: no splits.json; using every 5th image as 'val' (%d images)", root, len(val))
    return val if split == "val" else set(ordered) - val


def _category_index(path: Path, data: dict) -> tuple[dict[int, int], list[str]]:
    """COCO category id -> contiguous 1-based label, and the class names in that order."""
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    if not categories:
        raise DatasetError(f"{path}: no 'categories'")
    return {c["id"]: i for i, c in enumerate(categories)}, [c["name"] for c in categories]


def _boxes_of(
    path: Path, annotations: list[dict], labels_of: dict[int, int], issues: Counter
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, labels, difficult = [], [], []
    for ann in annotations:
        if ann.get("category_id") not in labels_of:
            raise DatasetError(
                f"{path}: annotation {ann.get('id')} has unknown category_id "
                f"{ann.get('category_id')!r} (known: {sorted(labels_of)})"
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise DatasetError(f"{path}: annotation {ann.get('id')} has a malformed bbox {bbox!r}")
        if ann.get("iscrowd", 0):
            issues["crowd annotations ignored"] += 1
            continue
        x, y, w, h = bbox
        boxes.append([x, y, x + w, y + h])
        labels.append(labels_of[ann["category_id"]])
        difficult.append(bool(ann.get("difficult", 0)))
    return (
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(difficult, dtype=bool),
    )


def load_coco(root: str | Path, split: str) -> DetectionSet:
    """Read a COCO-layout dataset folder.

    Raises:
        DatasetError: missing or malformed annotations.json, unknown category ids, bad splits.
    """
    root = Path(root)
    path = root / "annotations.json"
    if not path.is_file():
        raise DatasetError(f"{root}: no annotations.json (expected COCO layout: annotations.json + images/)")
    data = _read_json(path)
    labels_of, class_names = _category_index(path, data)
    by_image = defaultdict(list)
    for ann in data.get("annotations", []):
        by_image[ann.get("image_id")].append(ann)
    images = data.get("images", [])
    wanted = split_file_names(root, [im["file_name"] for im in images], split)
    dataset = DetectionSet(root, split, class_names, [])
    for image in images:
        if image["file_name"] not in wanted:
            continue
        file = root / "images" / image["file_name"]
        if not file.is_file():
            log.warning("%s: image file missing, skipped", file)
            dataset.issues["images missing, skipped"] += 1
            continue
        boxes, labels, difficult = _boxes_of(path, by_image[image["id"]], labels_of, dataset.issues)
        boxes, keep = clean_boxes(boxes, image["width"], image["height"], dataset.issues)
        if len(boxes) == 0:
            dataset.issues["images without boxes (background only)"] += 1
        dataset.records.append(
            ImageRecord(image["id"], file, image["width"], image["height"], boxes, labels[keep], difficult[keep])
        )
    return finish(dataset)
