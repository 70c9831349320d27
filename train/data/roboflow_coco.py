"""Roboflow's COCO export: one folder per split (train/, valid/, test/), each holding `_annotations.coco.json`
and the split's images beside it. Each file is checked as a COCO file is (`coco.read_coco`); the root
category Roboflow prepends (the supercategory of every class, with no boxes) is not a class."""

from __future__ import annotations

from pathlib import Path

from scratchdet.train.data.coco import coco_class_names, read_coco
from scratchdet.train.data.records import DatasetError, DetectionSet, finish

ANNOTATIONS = "_annotations.coco.json"
# Our split name -> the folder names that hold it (Roboflow writes 'valid').
SPLIT_FOLDERS = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}


def roboflow_splits(root: Path) -> dict[str, Path]:
    """Split name -> its folder, for every split folder holding an `_annotations.coco.json`."""
    found = {}
    for split, folders in SPLIT_FOLDERS.items():
        folder = next((root / f for f in folders if (root / f / ANNOTATIONS).is_file()), None)
        if folder is not None:
            found[split] = folder
    return found


def load_roboflow_coco(root: str | Path, split: str) -> DetectionSet:
    """Read split `split` ('all': every split, image ids renumbered) of a Roboflow COCO export.

    Raises:
        DatasetError: the split folder is absent, a file has problems (every one listed), or the splits
            do not share one list of classes.
    """
    root = Path(root)
    folders = roboflow_splits(root)
    if split != "all" and split not in folders:
        expected = " or ".join(f"{f}/{ANNOTATIONS}" for f in SPLIT_FOLDERS.get(split, (split,)))
        raise DatasetError(f"{root}: no split '{split}' (expected {expected}; found: {', '.join(folders)})")
    chosen = list(folders) if split == "all" else [split]
    parts = [read_coco(root, folders[s] / ANNOTATIONS, folders[s], s) for s in chosen]
    reference = folders["train"] if "train" in folders else folders[chosen[0]]
    names = coco_class_names(reference / ANNOTATIONS)
    for part in parts:
        if part.class_names != names:
            raise DatasetError(f"{folders[part.split] / ANNOTATIONS}: classes {part.class_names} differ from "
                               f"{reference / ANNOTATIONS}'s {names}")
    if len(parts) == 1:
        return parts[0]
    dataset = DetectionSet(root, split, names, [])
    for part in parts:
        for record in part.records:
            record.image_id = len(dataset.records) + 1
            dataset.records.append(record)
        dataset.issues.update(part.issues)
    return finish(dataset)
