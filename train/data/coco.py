"""COCO detection json: `annotations.json` + `images/`, with an optional `splits.json`.

`splits.json` maps split names to lists of image file names. Without it, every fifth image (sorted
by file name) is 'val' and the rest 'train', a deterministic split that is logged.

The whole file is checked when loaded (types, unique ids, finite boxes, known categories and images,
disjoint splits, every image of the split present under the dataset root, a regular file, its header readable
and of the annotated size), and every problem found is reported at once, one "file: problem" line each.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scratchdet.train.data.images import ImageReadError, image_file_problem, image_size
from scratchdet.train.data.records import (
    DatasetError,
    DetectionSet,
    ImageRecord,
    Problems,
    clean_boxes,
    finish,
    outside_root_problem,
)

log = logging.getLogger(__name__)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot read JSON: {error}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Splits that must not share images (a 'trainval' list may overlap both, as in VOC).
DISJOINT_SPLITS = ("train", "val", "test")


def split_file_names(root: Path, file_names: list[str], split: str, problems: Problems | None = None) -> set[str]:
    """The file names in `split` ('all' for every image).

    Problems of splits.json (unknown names, non-string entries, overlapping train/val/test) are added to
    `problems`, or raised at once without it.
    """
    own = problems is None
    problems = problems or Problems(root)
    if split == "all":
        return set(file_names)
    splits_path = root / "splits.json"
    if not splits_path.is_file():
        if split not in ("train", "val"):
            raise DatasetError(f"{root}: no splits.json, so only 'train', 'val' or 'all' exist, not '{split}'")
        ordered = sorted(file_names)
        val = set(ordered[::5])
        log.info("%s: no splits.json; using every 5th image as 'val' (%d images)", root, len(val))
        return val if split == "val" else set(ordered) - val
    splits = _read_json(splits_path)
    if not isinstance(splits, dict):
        raise DatasetError(f"{splits_path}: expected an object of split name -> list of file names, "
                           f"found {type(splits).__name__}")
    lists = {k: v for k, v in splits.items() if isinstance(v, list)}
    if split not in lists:
        raise DatasetError(f"{splits_path}: no split '{split}' (splits: {', '.join(lists)}, all)")
    for name, entries in lists.items():
        odd = [e for e in entries if not isinstance(e, str)]
        if odd:
            problems.add(splits_path, f"split '{name}' holds {len(odd)} entries that are not file names, "
                                      f"e.g. {odd[0]!r}")
    for i, a in enumerate(DISJOINT_SPLITS):
        for b in DISJOINT_SPLITS[i + 1:]:
            shared = {e for e in lists.get(a, []) if isinstance(e, str)} & set(lists.get(b, []))
            if shared:
                problems.add(splits_path, f"splits '{a}' and '{b}' share {len(shared)} image(s), "
                                          f"e.g. {sorted(shared)[0]}")
    wanted = {e for e in lists[split] if isinstance(e, str)}
    unknown = wanted - set(file_names)
    if unknown:
        problems.add(splits_path, f"split '{split}' names {len(unknown)} image(s) absent from annotations.json, "
                                  f"e.g. {sorted(unknown)[0]}")
    if own:
        problems.raise_if_any()
    return wanted


def _sections(path: Path, data: Any) -> tuple[list, list, list]:
    """images, categories, annotations; a file without them cannot be checked any further."""
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories', "
                           f"found a JSON {type(data).__name__}")
    found = {}
    for key in ("images", "categories", "annotations"):
        value = data.get(key, [] if key == "annotations" else None)
        if not isinstance(value, list):
            raise DatasetError(f"{path}: '{key}' {'missing' if value is None else 'is not a list'} "
                               "(a COCO file has lists 'images', 'annotations' and 'categories')")
        found[key] = value
    if not found["categories"]:
        raise DatasetError(f"{path}: no 'categories'")
    return found["images"], found["categories"], found["annotations"]


def _without_parents(path: Path, categories: list, annotations: list) -> list:
    """`categories` less those that are another category's supercategory and own no annotation.

    Roboflow's COCO exports prepend such a root category (named after the project, e.g. id 0 'cells' with
    'Platelets', 'RBC', 'WBC' as its children); as a class it would take a label and an output channel that
    nothing trains (the rule of roboflow/rf-detr#1303).
    """
    objects = [c for c in categories if isinstance(c, dict)]
    parents = {c.get("supercategory") for c in objects if c.get("supercategory") != c.get("name")}
    used = {a.get("category_id") for a in annotations if isinstance(a, dict)}
    roots = [c for c in objects if c.get("name") in parents and c.get("id") not in used]
    if not roots or len(roots) == len(categories):
        return categories
    for category in roots:
        log.info("%s: category %r (id %r) is the supercategory of others and has no boxes: not a class",
                 path, category.get("name"), category.get("id"))
    return [c for c in categories if not any(c is r for r in roots)]


def _category_index(path: Path, categories: list, problems: Problems) -> tuple[dict[int, int], list[str]]:
    """COCO category id -> contiguous 0-based label, and the class names in that order."""
    valid, seen_names = {}, set()
    for index, category in enumerate(categories):
        where = f"categories[{index}]"
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            problems.add(path, f"{where} needs an integer 'id', found {category!r}")
            continue
        name = category.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.add(path, f"{where} (id {category['id']}) needs a non-empty 'name', found {name!r}")
        elif category["id"] in valid:
            problems.add(path, f"category id {category['id']} appears more than once")
        elif name in seen_names:
            problems.add(path, f"category name '{name}' appears more than once")
        else:
            valid[category["id"]] = name
            seen_names.add(name)
    ids = sorted(valid)
    return {c: i for i, c in enumerate(ids)}, [valid[c] for c in ids]


def _image_index(path: Path, images: list, problems: Problems) -> dict[int, dict]:
    """Image id -> image entry, for entries with every field of the right type and unique id and name."""
    by_id: dict[int, dict] = {}
    names: dict[str, int] = {}
    for index, image in enumerate(images):
        if not isinstance(image, dict):
            problems.add(path, f"images[{index}] is not an object: {image!r}")
            continue
        where = f"image {image.get('id')!r} (images[{index}])"
        bad = [k for k in ("id", "width", "height") if not _is_int(image.get(k))]
        bad += [f"{k} {image[k]} <= 0" for k in ("width", "height") if _is_int(image.get(k)) and image[k] <= 0]
        if not isinstance(image.get("file_name"), str) or not image.get("file_name"):
            bad.append("file_name")
        if bad:
            problems.add(path, f"{where} has missing or invalid {', '.join(bad)} (id, width, height: positive "
                               "integers; file_name: a string)")
            continue
        if image["id"] in by_id:
            problems.add(path, f"image id {image['id']} is used by both {by_id[image['id']]['file_name']} and "
                               f"{image['file_name']} (ids must be unique; their boxes would be mixed)")
            continue
        if image["file_name"] in names:
            problems.add(path, f"file_name {image['file_name']} is listed twice (image ids "
                               f"{names[image['file_name']]} and {image['id']})")
            continue
        by_id[image["id"]] = image
        names[image["file_name"]] = image["id"]
    return by_id


def _annotation_problem(ann: Any, images: dict[int, dict], labels_of: dict[int, int]) -> str | None:
    """What is wrong with one annotation, or None."""
    if not isinstance(ann, dict):
        return f"is not an object: {ann!r}"
    if "image_id" not in ann:
        return "has no image_id"
    if ann["image_id"] not in images or not _is_int(ann["image_id"]):
        return f"has image_id {ann['image_id']!r}, which names no image"
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in labels_of:
        return f"has unknown category_id {ann.get('category_id')!r} (known: {sorted(labels_of)})"
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"has a malformed bbox {bbox!r} (expected [x, y, width, height], four finite numbers)"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"has a bbox of negative size {bbox!r} (expected [x, y, width, height])"
    if ann.get("iscrowd", 0) not in (0, 1) or ann.get("difficult", 0) not in (0, 1):
        return f"has iscrowd {ann.get('iscrowd')!r} / difficult {ann.get('difficult')!r}; expected 0 or 1"
    return None


def _boxes_by_image(path: Path, annotations: list, images: dict[int, dict], labels_of: dict[int, int],
                    problems: Problems) -> dict[int, list[dict]]:
    by_image = defaultdict(list)
    for index, ann in enumerate(annotations):
        problem = _annotation_problem(ann, images, labels_of)
        if problem:
            name = ann.get("id", f"[{index}]") if isinstance(ann, dict) else f"[{index}]"
            problems.add(path, f"annotation {name} {problem}")
        else:
            by_image[ann["image_id"]].append(ann)
    return by_image


def _boxes_of(annotations: list[dict], labels_of: dict[int, int], issues: Counter
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, labels, difficult = [], [], []
    for ann in annotations:
        if ann.get("iscrowd", 0):
            issues["crowd annotations ignored"] += 1
            continue
        x, y, w, h = ann["bbox"]
        boxes.append([x, y, x + w, y + h])
        labels.append(labels_of[ann["category_id"]])
        difficult.append(bool(ann.get("difficult", 0)))
    return (
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(difficult, dtype=bool),
    )


def check_image_file(file: Path, width: int, height: int, problems: Problems) -> bool:
    """Whether the image file exists, is regular, and its header is readable and gives the annotated size
    (problems added if not)."""
    missing = image_file_problem(file)
    if missing is not None:
        problems.add(file, missing)
        return False
    try:
        found = image_size(file)
    except ImageReadError as error:
        problems.add(file, str(error).removeprefix(f"{file}: "))
        return False
    if found != (width, height):
        problems.add(file, f"image is {found[0]}x{found[1]} but the annotations say {width}x{height}")
        return False
    return True


def load_coco(root: str | Path, split: str) -> DetectionSet:
    """Read a COCO-layout dataset folder, checked completely first.

    Raises:
        DatasetError: listing every problem found (file: problem per line): malformed annotations.json,
            duplicate ids, non-finite boxes, unknown categories or images, bad splits, unreadable images.
    """
    root = Path(root)
    path = root / "annotations.json"
    if not path.is_file():
        raise DatasetError(f"{root}: no annotations.json (expected COCO layout: annotations.json + images/)")
    return read_coco(root, path, root / "images", split,
                     lambda names, problems: split_file_names(root, names, split, problems))


def coco_class_names(path: Path) -> list[str]:
    """The class names of a COCO file, in label order (what `read_coco` gives its DetectionSet)."""
    _, categories, annotations = _sections(path, _read_json(path))
    return _category_index(path, _without_parents(path, categories, annotations), Problems(path.parent))[1]


Selection = Callable[[list[str], Problems], set[str]]


def read_coco(root: Path, path: Path, image_dir: Path, split: str, select: Selection | None = None) -> DetectionSet:
    """The images of one COCO file (file names relative to `image_dir`) that `select` picks (default: all).

    Raises:
        DatasetError: listing every problem of the file and of the selected images' headers.
    """
    images, categories, annotations = _sections(path, _read_json(path))
    problems = Problems(root)
    labels_of, class_names = _category_index(path, _without_parents(path, categories, annotations), problems)
    by_id = _image_index(path, images, problems)
    by_image = _boxes_by_image(path, annotations, by_id, labels_of, problems)
    names = [im["file_name"] for im in by_id.values()]
    wanted = set(names) if select is None else select(names, problems)
    dataset = DetectionSet(root, split, class_names, [])
    for image in by_id.values():
        if image["file_name"] not in wanted:
            continue
        file = image_dir / image["file_name"]
        outside = outside_root_problem(root, image["file_name"], file, dataset.issues)
        if outside is not None:
            problems.add(path, f"image {image['id']}: {outside}")
            continue
        if not check_image_file(file, image["width"], image["height"], problems):
            continue
        boxes, labels, difficult = _boxes_of(by_image[image["id"]], labels_of, dataset.issues)
        boxes, keep = clean_boxes(boxes, image["width"], image["height"], dataset.issues)
        if len(boxes) == 0:
            dataset.issues["images without boxes (background only)"] += 1
        dataset.records.append(
            ImageRecord(image["id"], file, image["width"], image["height"], boxes, labels[keep], difficult[keep])
        )
    problems.raise_if_any()
    return finish(dataset)
