"""Open a dataset of any supported layout, found by what the folder (or file) holds."""

from __future__ import annotations

import json
from pathlib import Path

from scratchdet.train.data.coco import load_coco
from scratchdet.train.data.records import DatasetError, DetectionSet
from scratchdet.train.data.roboflow_coco import ANNOTATIONS, SPLIT_FOLDERS, load_roboflow_coco, roboflow_splits
from scratchdet.train.data.voc import load_voc
from scratchdet.train.data.yolo import load_yolo
from scratchdet.train.data.yolo_yaml import find_yaml, read_yaml, split_present

LAYOUTS = ("coco", "voc", "roboflow-coco", "yolo")


def dataset_layout(data: str | Path) -> str:
    """Which layout `data` is: 'coco' (annotations.json + images/), 'voc' (Annotations/), 'roboflow-coco'
    (train/ valid/ test/ with _annotations.coco.json) or 'yolo' (a data.yaml, or a folder holding one).

    Raises:
        DatasetError: none of them, naming what was looked for.
    """
    data = Path(data)
    if data.is_dir() and (data / "annotations.json").is_file():
        return "coco"
    if data.is_dir() and (data / "Annotations").is_dir():
        return "voc"
    if data.is_dir() and roboflow_splits(data):
        return "roboflow-coco"
    if find_yaml(data) is not None:
        return "yolo"
    if not data.exists():
        raise DatasetError(f"{data}: no such dataset folder or data.yaml")
    raise DatasetError(
        f"{data}: not a dataset folder (expected annotations.json + images/, a VOC root with Annotations/, "
        f"Roboflow COCO split folders ({'/'.join(f for fs in SPLIT_FOLDERS.values() for f in fs)} with {ANNOTATIONS}), "
        "or a YOLO data.yaml)"
    )


def load_dataset(data: str | Path, split: str) -> DetectionSet:
    """Split `split` of the dataset at `data`, whatever its layout (see `dataset_layout`), checked completely."""
    loader = {"coco": load_coco, "voc": load_voc, "roboflow-coco": load_roboflow_coco, "yolo": load_yolo}
    return loader[dataset_layout(data)](data, split)


def dataset_splits(data: str | Path) -> list[str]:
    """The disjoint splits ('train', 'val', 'test') the dataset at `data` defines."""
    data = Path(data)
    layout = dataset_layout(data)
    if layout == "roboflow-coco":
        return list(roboflow_splits(data))
    if layout == "yolo":
        yaml_path = find_yaml(data)
        yolo = read_yaml(yaml_path) if yaml_path else None
        return [s for s in yolo.splits if split_present(yolo, s)] if yolo else []
    if layout == "voc":
        return [s for s in ("train", "val", "test") if (data / "ImageSets" / "Main" / f"{s}.txt").is_file()]
    return _coco_splits(data)


def _coco_splits(root: Path) -> list[str]:
    if not (root / "splits.json").is_file():
        return ["train", "val"]
    try:
        splits = json.loads((root / "splits.json").read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{root / 'splits.json'}: cannot read JSON: {error}") from None
    return [s for s in ("train", "val", "test") if isinstance(splits, dict) and isinstance(splits.get(s), list)]
