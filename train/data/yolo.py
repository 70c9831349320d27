"""YOLO-layout datasets (ultralytics, Roboflow's YOLO exports): a data.yaml, images, one label file per image.

A label file holds one object per line, `class cx cy w h`, normalised to 0..1 by the image's width and height,
the class a 0-based index into the yaml's `names`. Checked as ultralytics checks them
(`ultralytics/data/utils.py` `verify_image_label`), but every problem is reported at once, each as
"file:line: problem", and a bad file stops the load instead of being skipped with a warning:
- 5 columns; a line of 7 or more (an odd count) is a polygon, `class x1 y1 x2 y2 x3 y3 ...`, and becomes its
  enclosing box (counted), as ultralytics' `segments2boxes` does; any other count is a problem.
- class an integer in 0..nc-1; coordinates finite and within 0..1 give or take ultralytics' 1 % tolerance
  (it refuses `> 1.01` and `< -0.01`); corners leaving the image are then clipped, like COCO boxes (counted).
- duplicate lines are dropped with one warning per file (ultralytics drops them too), counted.
- an empty label file, or none at all, makes the image a background image (counted).
- a label file whose image does not exist is a problem (its boxes would be lost without a word).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from scratchdet.special_files import special_problem
from scratchdet.train.data.images import ImageReadError, image_size
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord, Problems, clean_boxes, finish
from scratchdet.train.data.yolo_yaml import (
    IMAGE_SUFFIXES,
    UNREADABLE_SUFFIXES,
    YoloLayout,
    find_yaml,
    label_path,
    read_yaml,
    split_images,
)

log = logging.getLogger(__name__)

# ultralytics verify_image_label: `points.max() <= 1.01` and `lb.min() >= -0.01` ("1% tolerance").
COORDINATE_TOLERANCE = 0.01


def _row_problem(values: list[float], num_classes: int) -> str | None:
    """What is wrong with one parsed line (class then coordinates), or None."""
    if not all(math.isfinite(v) for v in values):
        return f"non-finite value in {values}"
    label = values[0]
    if not label.is_integer() or not 0 <= label < num_classes:
        return f"class id {label:g} out of range 0..{num_classes - 1} (data.yaml names {num_classes} classes)"
    outside = [v for v in values[1:] if not -COORDINATE_TOLERANCE <= v <= 1 + COORDINATE_TOLERANCE]
    if outside:
        return (f"coordinate(s) {', '.join(f'{v:g}' for v in outside)} outside 0..1 (YOLO labels are "
                "normalised by the image size; pixel coordinates?)")
    return None


def _as_box(values: list[float], issues: Counter) -> list[float]:
    """class, cx, cy, w, h of a 5-column line, or of a polygon line's enclosing box."""
    if len(values) == 5:
        return values
    issues["polygons converted to their enclosing box"] += 1
    xs, ys = values[1::2], values[2::2]
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    return [values[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def _parse_line(fields: list[str], num_classes: int) -> tuple[list[float] | None, str | None]:
    """(class, coordinates...) of one line's fields, or None and what is wrong with them."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        hint = " (6 look like a predictions file: class box confidence)" if len(fields) == 6 else ""
        return None, (f"{len(fields)} columns; expected 5 (class cx cy w h) or a polygon "
                      f"(class x1 y1 x2 y2 x3 y3 ...){hint}")
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return None, f"not a number in {' '.join(fields)[:80]!r}"
    problem = _row_problem(values, num_classes)
    return (None, problem) if problem else (values, None)


# Lines of one label file listed as problems; the rest are counted in one more line (a file of 2 million bad
# lines is one mistake, not 2 million).
MAX_PROBLEMS_PER_FILE = 20


def read_labels(path: Path, num_classes: int, problems: Problems, issues: Counter) -> np.ndarray:
    """The rows [N, 5] (class, cx, cy, w, h normalised) of one label file; problems added per line (up to
    MAX_PROBLEMS_PER_FILE, then one line counting the rest), duplicates dropped with one warning per file."""
    rows: list[list[float]] = []
    seen: dict[tuple[float, ...], int] = {}
    duplicates: list[tuple[int, int]] = []  # (line, the earlier line it repeats)
    bad = 0
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.add(path, f"cannot read the label file: {error}")
        return np.zeros((0, 5))
    for number, text in enumerate(lines, start=1):
        fields = text.split()
        if not fields:
            continue
        values, problem = _parse_line(fields, num_classes)
        if values is None:
            bad += 1
            if bad <= MAX_PROBLEMS_PER_FILE:
                problems.add(f"{path}:{number}", str(problem))
        elif tuple(values) in seen:
            duplicates.append((number, seen[tuple(values)]))
        else:
            seen[tuple(values)] = number
            rows.append(_as_box(values, issues))
    if bad > MAX_PROBLEMS_PER_FILE:
        problems.add(path, f"and {bad - MAX_PROBLEMS_PER_FILE} more bad line(s) in this file ({bad} in all)")
    if duplicates:
        log.warning("%s: %d duplicate line(s) dropped (e.g. line %d repeats line %d)", path, len(duplicates),
                    *duplicates[0])
        issues["duplicate label lines dropped"] += len(duplicates)
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def _orphan_labels(images: list[Path], problems: Problems) -> None:
    """Label files in the split's label folders whose image is nowhere (labels beside images: not checked)."""
    folders = {label_path(image).parent: image.parent for image in images}
    for label_folder, image_folder in folders.items():
        if label_folder == image_folder:
            continue
        stems = {p.stem for p in image_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | UNREADABLE_SUFFIXES}
        for label in sorted(label_folder.glob("*.txt")):
            if label.stem not in stems and label.name != "classes.txt":
                problems.add(label, f"label file without an image (no {label.stem}.* in {image_folder})")


def _check_disjoint(listed: dict[str, list[Path]], yaml_path: Path, problems: Problems) -> None:
    names = list(listed)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(listed[a]) & set(listed[b])
            if shared:
                problems.add(yaml_path, f"splits '{a}' and '{b}' share {len(shared)} image(s), e.g. {min(shared)}")


# EXIF orientations 2-8 show the stored pixels mirrored or turned; ultralytics' labels refer to the image shown
# (its `exif_size` and OpenCV's imread apply the tag), our reader keeps the stored pixels.
EXIF_ORIENTATION = 0x0112


def _orientation_problem(image: Path) -> str | None:
    try:
        with Image.open(image) as opened:
            orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
    except OSError:
        return None  # image_size has reported it already
    if orientation in (None, 1):
        return None
    return (f"EXIF orientation {orientation}: its labels refer to the image as shown, turned or mirrored from the "
            "stored pixels we train on; save it upright (e.g. PIL.ImageOps.exif_transpose) and drop the tag")


def _record(index: int, image: Path, rows: np.ndarray, width: int, height: int, issues: Counter) -> ImageRecord:
    # x1, y1, x2, y2 pixels from centre-size normalised, in float64 before the float32 record.
    cx, cy, w, h = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    boxes, keep = clean_boxes(boxes.astype(np.float32), width, height, issues)
    labels = rows[:, 0].astype(np.int64)[keep]
    if len(boxes) == 0:
        issues["images without boxes (background only)"] += 1
    return ImageRecord(index, image, width, height, boxes, labels, np.zeros(len(boxes), dtype=bool))


def _split_lists(layout: YoloLayout, split: str, problems: Problems) -> tuple[dict[str, list[Path]], Counter]:
    """Every split's images (for the overlap check) and what listing `split`'s files skipped, counted."""
    listed: dict[str, list[Path]] = {}
    skipped: Counter = Counter()
    for name in layout.splits:
        try:
            listed[name], issues = split_images(layout, name, problems)
        except DatasetError as error:
            if split in (name, "all"):
                raise
            # Roboflow's data.yaml names ../test/images even when the export has no test split.
            log.warning("%s; skipped, loading '%s'", error, split)
            continue
        if split in (name, "all"):
            skipped.update(issues)
    _check_disjoint(listed, layout.yaml_path, problems)
    if split != "all" and split not in listed:
        raise DatasetError(f"{layout.yaml_path}: no split '{split}' (splits: {', '.join(listed)}, all)")
    return listed, skipped


def load_yolo(data: str | Path, split: str) -> DetectionSet:
    """Read split `split` ('all': every split) of a YOLO dataset, by its data.yaml or the folder holding it.

    Raises:
        DatasetError: listing every problem found (file:line: problem per line).
    """
    yaml_path = find_yaml(Path(data))
    if yaml_path is None:
        raise DatasetError(f"{data}: no data.yaml (a YOLO dataset needs one naming its classes and splits)")
    layout = read_yaml(yaml_path)
    problems = Problems(layout.root)
    listed, skipped = _split_lists(layout, split, problems)
    images = sorted({p for ps in listed.values() for p in ps}, key=str) if split == "all" else listed[split]
    dataset = DetectionSet(layout.root, split, layout.class_names, [])
    dataset.issues.update(skipped)
    for index, image in enumerate(images, start=1):
        try:
            width, height = image_size(image)
        except ImageReadError as error:
            problems.add(image, str(error).removeprefix(f"{image}: "))
            continue
        turned = _orientation_problem(image)
        if turned:
            problems.add(image, turned)
            continue
        label = label_path(image)
        special = special_problem(label)
        if special is not None:
            problems.add(label, f"label file is {special}")
            continue
        if not label.is_file():
            dataset.issues["images without a label file (background)"] += 1
        rows = read_labels(label, len(layout.class_names), problems, dataset.issues) if label.is_file() else \
            np.zeros((0, 5))
        dataset.records.append(_record(index, image, rows, width, height, dataset.issues))
    _orphan_labels(images, problems)
    problems.raise_if_any()
    return finish(dataset)
