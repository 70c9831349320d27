"""Pascal VOC folders: Annotations/*.xml, JPEGImages/, ImageSets/Main/<split>.txt.

Class names are the sorted names found in all annotation files (for VOC itself, the usual 20 classes
in their usual alphabetical order), or the lines of an optional `classes.txt` in the root. Without
`classes.txt`, a name that differs from another only in case or spacing, or is a near spelling of a
more frequent one ("dgo" beside "dog"), is reported as a likely typo rather than becoming a class.
Every problem of every annotation file is reported at once.
"""

from __future__ import annotations

import difflib
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

from scratchdet.special_files import special_problem
from scratchdet.train.data.coco import check_image_file
from scratchdet.train.data.records import DatasetError, DetectionSet, ImageRecord, Problems, clean_boxes, finish

Objects = list[tuple[str, list[float], bool]]


def _text(element: ET.Element, path: str) -> str:
    """The text at `path` under `element`; a missing tag is a ValueError naming it."""
    text = element.findtext(path)
    if text is None:
        raise ValueError(f"no <{path}>")
    return text


def _parse(path: Path, problems: Problems) -> tuple[int, int, Objects] | None:
    """(width, height, objects) of one annotation file, or None after adding its problems."""
    special = special_problem(path)
    if special is not None:
        problems.add(path, special)
        return None
    try:
        root = ET.parse(path).getroot()
        width = int(float(_text(root, "size/width")))
        height = int(float(_text(root, "size/height")))
        objects = [
            (
                _text(obj, "name").strip(),
                [float(_text(obj, f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")],
                obj.findtext("difficult", "0").strip() == "1",
            )
            for obj in root.iter("object")
        ]
    except (ET.ParseError, TypeError, ValueError, AttributeError, OverflowError) as error:
        problems.add(path, f"malformed VOC annotation ({error})")
        return None
    found = len(problems.lines)
    if width <= 0 or height <= 0:
        problems.add(path, f"size {width}x{height} is not positive")
    for index, (name, box, _) in enumerate(objects):
        if not name:
            problems.add(path, f"object {index} has an empty name")
        if not all(math.isfinite(v) for v in box):
            problems.add(path, f"object {index} ({name}) has a non-finite box {box}")
        elif box[2] < box[0] or box[3] < box[1]:
            problems.add(path, f"object {index} ({name}) has xmax < xmin or ymax < ymin: {box}")
    return (width, height, objects) if len(problems.lines) == found else None


def _one_edit_apart(a: str, b: str) -> bool:
    """One insertion, deletion, substitution or swap of neighbours turns `a` into `b`."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


# A name one edit away from another is a typo only when this many times rarer ('cat' beside 'car' is not).
TYPO_RARITY = 10


def likely_typos(counts: Counter) -> list[str]:
    """'class "dgo" (1 boxes) looks like a typo of "dog" (120 boxes)' for each suspicious name."""
    found = []
    for name, count in sorted(counts.items()):
        def plain(text: str) -> str:
            return text.casefold().replace(" ", "").replace("_", "").replace("-", "")

        same = [o for o in counts if o != name and counts[o] >= count and plain(o) == plain(name)]
        near = [o for o in counts if counts[o] >= TYPO_RARITY * count and len(name) >= 3
                and _one_edit_apart(name.casefold(), o.casefold())]
        close = same or near
        if close:
            found.append(f"class '{name}' ({count} boxes) looks like a typo of '{close[0]}' ({counts[close[0]]} "
                         "boxes); fix the annotation, or list every class in classes.txt to keep both")
    return found


def _class_names(root: Path, parsed: dict[str, tuple[int, int, Objects]], problems: Problems) -> list[str]:
    counts = Counter(name for _, _, objects in parsed.values() for name, _, _ in objects)
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        for name in sorted(set(counts) - set(names)):
            close = difflib.get_close_matches(name, names, n=1)
            problems.add(listed, f"class '{name}' ({counts[name]} boxes) is not listed"
                                 + (f"; did you mean '{close[0]}'?" if close else ""))
        return names
    for line in likely_typos(counts):
        problems.add(root / "Annotations", line)
    return sorted(counts)


def load_voc(root: str | Path, split: str) -> DetectionSet:
    """Read a VOC-layout root. VOC boxes are 1-based inclusive pixels; they become 0-based x1, y1, x2, y2."""
    root = Path(root)
    annotations = sorted((root / "Annotations").glob("*.xml"))
    if not annotations:
        raise DatasetError(f"{root}: no Annotations/*.xml")
    problems = Problems(root)
    every = {p.stem: _parse(p, problems) for p in annotations}
    parsed = {stem: value for stem, value in every.items() if value is not None}
    class_names = _class_names(root, parsed, problems)
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
            if not (root / "Annotations" / f"{stem}.xml").is_file():
                problems.add(split_file, f"names '{stem}' but Annotations/{stem}.xml does not exist")
            continue
        width, height, objects = parsed[stem]
        file = root / "JPEGImages" / f"{stem}.jpg"
        if not check_image_file(file, width, height, problems) or any(n not in labels_of for n, _, _ in objects):
            continue
        boxes = np.array([b for _, b, _ in objects], dtype=np.float32).reshape(-1, 4)
        boxes[:, :2] -= 1
        boxes, keep = clean_boxes(boxes, width, height, dataset.issues)
        labels = np.array([labels_of[n] for n, _, _ in objects], dtype=np.int64)[keep]
        difficult = np.array([d for _, _, d in objects], dtype=bool)[keep]
        if len(boxes) == 0:
            dataset.issues["images without boxes (background only)"] += 1
        dataset.records.append(ImageRecord(index, file, width, height, boxes, labels, difficult))
    problems.raise_if_any()
    return finish(dataset)

