"""Open a dataset folder of either supported layout."""

from __future__ import annotations

from pathlib import Path

from scratchdet.train.data.coco import load_coco
from scratchdet.train.data.records import DatasetError, DetectionSet
from scratchdet.train.data.voc import load_voc


def load_dataset(root: str | Path, split: str) -> DetectionSet:
    """A COCO-layout folder (annotations.json) or a VOC root (Annotations/), by what the folder holds."""
    root = Path(root)
    if (root / "annotations.json").is_file():
        return load_coco(root, split)
    if (root / "Annotations").is_dir():
        return load_voc(root, split)
    raise DatasetError(
        f"{root}: not a dataset folder (expected annotations.json + images/, or a VOC root with Annotations/)"
    )
