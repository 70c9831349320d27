"""Write a loaded dataset in the COCO layout (annotations.json + images/ + splits.json) or the YOLO layout
(data.yaml + images/<split>/ + labels/<split>/*.txt), from any layout `load_dataset` reads.

What is written is what loading gives (boxes clipped to the image, sub-pixel boxes and crowd annotations
left out, all counted in the load report), so a converted dataset loads to the same boxes. Images are copied
(or, asked for, symlinked); the source is only read. The output folder appears whole or not at all: it is
filled as a staging folder beside it and renamed at the end. YOLO cannot carry VOC's 'difficult' flag: such boxes
become plain boxes, counted in the log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import yaml

from scratchdet.models.files import atomic_folder, atomic_write, check_destination, write_text
from scratchdet.train.data.load import dataset_splits, load_dataset
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord
from scratchdet.train.data.yolo_yaml import label_path

log = logging.getLogger(__name__)

FORMATS = ("coco", "yolo")


def _relative_names(records: list[ImageRecord]) -> list[Path]:
    """Each image's path below the folder all of them share, so names stay unique and short."""
    common = Path(os.path.commonpath([r.path.parent.resolve() for r in records]))
    return [r.path.resolve().relative_to(common) for r in records]


def _place_image(source: Path, target: Path, symlink: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if symlink:
        target.symlink_to(source.resolve())
        return
    with atomic_write(target) as temporary:
        shutil.copyfile(source, temporary)


def _check_out(sources: list[Path], out: Path) -> None:
    check_destination(out, folder=True)
    resolved = out.resolve()
    for source in {s.resolve() for s in sources}:
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise DatasetError(f"{out}: the output folder must lie outside the dataset {source} (and not hold it)")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not an empty folder; choose a new --out")


def _yolo_line(label: int, box: list[float], width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    # 10 significant digits: within 1e-10 of the image size, so pixel boxes read back round to the same
    # float32 (ultralytics' converters write %g, 6 digits: up to 5e-7, a float32 step off at 1000 px).
    return " ".join([str(label), *(f"{v:.10g}" for v in values)])


def write_yolo(sets: dict[str, DetectionSet], out: Path, symlink: bool = False) -> Path:
    """out/data.yaml, out/images/<split>/..., out/labels/<split>/....txt (empty for a background image)."""
    difficult = 0
    for split, dataset in sets.items():
        for record, name in zip(dataset.records, _relative_names(dataset.records)):
            image = out / "images" / split / name
            _place_image(record.path, image, symlink)
            lines = [_yolo_line(int(label), [float(v) for v in box], record.width, record.height)
                     for box, label in zip(record.boxes, record.labels)]
            write_text(label_path(image), "".join(f"{line}\n" for line in lines))
            difficult += int(record.difficult.sum())
    if difficult:
        log.warning("%d 'difficult' boxes written as plain boxes (YOLO labels have no such flag)", difficult)
    class_names = next(iter(sets.values())).class_names
    layout = {**{split: f"images/{split}" for split in sets}, "nc": len(class_names), "names": class_names}
    return write_text(out / "data.yaml", yaml.safe_dump(layout, sort_keys=False, allow_unicode=True))


def write_coco(sets: dict[str, DetectionSet], out: Path, symlink: bool = False) -> Path:
    """out/annotations.json, out/images/..., out/splits.json (category ids 1..N in class order)."""
    records = [r for dataset in sets.values() for r in dataset.records]
    names = iter(_relative_names(records))
    class_names = next(iter(sets.values())).class_names
    coco: dict = {"images": [], "annotations": [],
                  "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]}
    splits: dict[str, list[str]] = {}
    for split, dataset in sets.items():
        splits[split] = []
        for record in dataset.records:
            name = next(names)
            _place_image(record.path, out / "images" / name, symlink)
            image_id = len(coco["images"]) + 1
            coco["images"].append({"id": image_id, "file_name": name.as_posix(), "width": record.width,
                                   "height": record.height})
            splits[split].append(name.as_posix())
            for box, label, hard in zip(record.boxes.tolist(), record.labels.tolist(), record.difficult.tolist()):
                x1, y1, x2, y2 = box
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                    **({"difficult": 1} if hard else {}),
                })
    write_text(out / "splits.json", json.dumps(splits))
    return write_text(out / "annotations.json", json.dumps(coco))


def convert_dataset(data: str | Path, to: str, out: str | Path, symlink: bool = False) -> dict[str, DetectionSet]:
    """Load every split of `data` (checked as for training) and write them to `out` in layout `to`.

    Returns the loaded splits. Raises:
        DatasetError: an unknown layout, a source with problems (all listed), or an `out` that is not a new
            or empty folder outside the source.
    """
    if to not in FORMATS:
        raise DatasetError(f"--to {to!r}: expected one of {', '.join(FORMATS)}")
    out = Path(out)
    splits = dataset_splits(data)
    if not splits:
        raise DatasetError(f"{data}: defines no train/val/test split to convert")
    sets = {split: load_dataset(data, split) for split in splits}
    _check_out([d.root for d in sets.values()] + [Path(data)], out)
    with atomic_folder(out) as stage:  # a stopped run leaves only a marked staging folder, swept by the next
        (write_yolo if to == "yolo" else write_coco)(sets, stage, symlink)
    return sets
