"""Pascal VOC folders: Annotations/*.xml, JPEGImages/, ImageSets/Main/<split>.txt.

Class names are the sorted names found in all annotation files (for VOC itself, the usual 20 classes
in their usual alphabetical order).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord, clean_boxes, finish

log = logging.getLogger(__name__)


def _parse(path: Path) -> tuple[int, int, list[tuple[str, list[float], bool]]]:
    try:
        root = ET.parse(path).getroot()
        width = int(float(root.findtext("size/width")))
        height = int(float(root.findtext("size/height")))
        objects = [
            (
                obj.findtext("name").strip(),
                [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")],
                obj.findtext("difficult", "0").strip() == "1",
            )
            for obj in root.iter("object")
        ]
    except (ET.ParseError, TypeError, ValueError, AttributeError) as error:
        raise DatasetError(f"{path}: malformed VOC annotation ({error})") from None
    return width, height, objects


def load_voc(root: str | Path, split: str) -> DetectionSet:
    """Read a VOC-layout root. VOC boxes are 1-based inclusive pixels; they become 0-based x1, y1, x2, y2."""
    root = Path(root)
    annotations = sorted((root / "Annotations").glob("*.xml"))
    if not annotations:
        raise DatasetError(f"{root}: no Annotations/*.xml")
    parsed = {p.stem: _parse(p) for p in annotations}
    class_names = sorted({name for _, _, objects in parsed.values() for name, _, _ in objects})
    labels_of = {name: i for i, name in enumerate(class_names)}
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if split == "all":
        stems = sorted(parsed)
    elif split_file.is_file():
        stems = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    else:
        raise DatasetError(f"{split_file}: split file not found")
    dataset = DetectionSet(root, split, class_names, [])
    for index, stem in enumerate(stems):
        if stem not in parsed:
            raise DatasetError(f"{split_file}: names '{stem}' but Annotations/{stem}.xml does not exist")
        width, height, objects = parsed[stem]
        file = root / "JPEGImages" / f"{stem}.jpg"
        if not file.is_file():
            log.warning("%s: image file missing, skipped", file)
            dataset.issues["images missing, skipped"] += 1
            continue
        boxes = np.array([b for _, b, _ in objects], dtype=np.float32).reshape(-1, 4)
        boxes[:, :2] -= 1
        boxes, keep = clean_boxes(boxes, width, height, dataset.issues)
        labels = np.array([labels_of[n] for n, _, _ in objects], dtype=np.int64)[keep]
        difficult = np.array([d for _, _, d in objects], dtype=bool)[keep]
        if len(boxes) == 0:
            dataset.issues["images without boxes (background only)"] += 1
        dataset.records.append(ImageRecord(index, file, width, height, boxes, labels, difficult))
    return finish(dataset)

