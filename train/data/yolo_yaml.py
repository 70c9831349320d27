"""The ultralytics/Roboflow YOLO `data.yaml`: class names, dataset root and the image files of each split.

The rules are ultralytics' own (github.com/ultralytics/ultralytics, `ultralytics/data/utils.py`
`check_det_dataset` and `ultralytics/data/base.py` `BaseDataset.get_img_files`):
- `names` is a list, or a dict of class index -> name with indices 0..n-1; `nc`, where given, must equal its
  length (`names` absent: class_0, class_1, ...).
- `path` is the dataset root (absent: the yaml's folder); `train`, `val` (or `validation`) and `test` are
  relative to it: a folder (every image below it), a .txt file listing images (a line starting `./` is
  relative to the list's folder), or a list of those. An entry `../x` that does not exist is tried as `x`
  (Roboflow's exports write `train: ../train/images` beside a data.yaml in the dataset root).
- The label file of an image: the last `/images/` of its path replaced by `/labels/`, the suffix by `.txt`
  (`img2label_paths`).
We differ where ultralytics guesses: a relative `path` is taken from the yaml's folder (ultralytics tries the
working directory, then its settings' datasets_dir), and other relative lines of a list file from the list's folder.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchdet.bounded_yaml import YamlError, load_yaml
from scratchdet.special_files import special_problem
from scratchdet.train.data.records import DatasetError, Problems, outside_root, outside_root_problem

log = logging.getLogger(__name__)

# ultralytics' IMG_FORMATS less what OpenCV cannot decode here (heic, dng, mpo: counted as skipped).
IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".pfm"}
UNREADABLE_SUFFIXES = {".heic", ".dng", ".mpo"}
SPLIT_KEYS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


@dataclass(frozen=True)
class YoloLayout:
    """A read data.yaml: its path, the dataset root, class names and each split's entries (as written)."""

    yaml_path: Path
    root: Path
    class_names: list[str]
    splits: dict[str, list[str]]


def find_yaml(data: Path) -> Path | None:
    """`data` itself if it is a .yaml/.yml file, else `data/data.yaml` (or .yml) where present."""
    if data.is_file():
        return data if data.suffix in (".yaml", ".yml") else None
    return next((data / n for n in ("data.yaml", "data.yml") if (data / n).is_file()), None)


def label_path(image: Path) -> Path:
    """ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    text = str(image)
    head, found, tail = text.rpartition(f"{os.sep}images{os.sep}")
    text = f"{head}{os.sep}labels{os.sep}{tail}" if found else text
    return Path(text.rsplit(".", 1)[0] + ".txt")


def _shown(value: Any) -> str:
    """A short form of a YAML value for a message: a list or mapping by its type and length only."""
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'mapping'} of {len(value)} item(s)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _class_names(path: Path, data: dict) -> list[str]:
    names, count = data.get("names"), data.get("nc")
    if names is None and count is None:
        raise DatasetError(f"{path}: no 'names' (a list of class names, or a dict 0: name, 1: name, ...)")
    if names is None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise DatasetError(f"{path}: nc {_shown(count)} is not a positive integer")
        return [f"class_{i}" for i in range(count)]
    if isinstance(names, dict):
        keys = sorted(names, key=str)
        if sorted(k for k in names if isinstance(k, int)) != list(range(len(names))):
            raise DatasetError(f"{path}: 'names' has class indices {keys}; a dict needs the integers "
                               f"0..{len(names) - 1}, one each")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: 'names' is {_shown(names)}; expected a non-empty list or dict of class names")
    bad = [f"names[{i}] is {_shown(n)}" for i, n in enumerate(names) if not isinstance(n, str) or not n.strip()]
    if bad:
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DatasetError(f"{path}: {listed} (a class name is a non-empty string; YAML reads unquoted "
                           "yes/no/on/off/null as booleans or null and 1, 1.5 as numbers: quote names like these)")
    if count is not None and count != len(names):
        raise DatasetError(f"{path}: nc is {count} but 'names' lists {len(names)} classes")
    if len(set(names)) != len(names):
        twice = sorted(n for n, times in Counter(names).items() if times > 1)
        raise DatasetError(f"{path}: class name(s) {twice} appear more than once in 'names'")
    return names


def read_yaml(path: Path) -> YoloLayout:
    """Read and check a data.yaml (names, path, splits); image files are listed by `split_images`."""
    try:
        data: Any = load_yaml(path)
    except YamlError as error:
        raise DatasetError(str(error)) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names' and 'train'/'val'")
    root = path.parent
    if data.get("path"):
        root = path.parent / str(data["path"])  # an absolute `path` replaces the yaml's folder
    if not root.is_dir():
        raise DatasetError(f"{path}: 'path' {_shown(data['path'])} is not a folder ({root}); it is read relative "
                           "to the yaml's folder")
    if root.resolve() == Path(root.resolve().anchor):
        raise DatasetError(f"{path}: 'path' {_shown(data['path'])} makes the file-system root the dataset root; "
                           "name the dataset's own folder")
    splits = {}
    for split, keys in SPLIT_KEYS.items():
        value = next((data[k] for k in keys if data.get(k)), None)
        if value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) and e for e in entries):
            raise DatasetError(f"{path}: '{split}' is {_shown(value)}; expected a folder, a .txt list or a list "
                               "of them")
        splits[split] = entries
    if "train" not in splits:
        raise DatasetError(f"{path}: no 'train' (a folder, a .txt list of images, or a list of those)")
    layout = YoloLayout(path, root, _class_names(path, data), splits)
    for split, entries in splits.items():  # before any split's folder is scanned
        for entry in entries:
            problem = outside_root_problem(root, entry, _entry_path(layout, entry), Counter())
            if problem is not None:
                raise DatasetError(f"{path}: '{split}' entry {entry!r}: {problem}")
    return layout


def _entry_path(layout: YoloLayout, entry: str) -> Path:
    path = layout.root / entry
    inside = layout.root / entry[3:]
    if entry.startswith("../") and (not path.exists() or (outside_root(layout.root, path) and inside.exists())):
        return inside
    return path


def split_present(layout: YoloLayout, split: str) -> bool:
    """Whether every entry of `split` names an existing folder or list file."""
    return split in layout.splits and all(_entry_path(layout, e).exists() for e in layout.splits[split])


SPECIAL_SKIPPED = "special files (FIFOs, devices, sockets) named like images, skipped unopened"


def _listed(layout: YoloLayout, list_file: Path, problems: Problems, issues: Counter) -> list[Path]:
    images, special = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        image = Path(line)
        image = image if image.is_absolute() else list_file.parent / image
        problem = outside_root_problem(layout.root, line, image, issues)
        if problem is None and special_problem(image) is not None:
            special.append(image)
            continue
        if problem is None and not image.is_file():
            problem = f"lists {line}, which does not exist"
        if problem is not None:
            problems.add(f"{list_file}:{number}", problem)
        else:
            images.append(image)
    _warn_special(list_file, special, issues)
    return images


def _scanned(layout: YoloLayout, split: str, entry: str, folder: Path, issues: Counter) -> list[Path]:
    """The images below `folder`; undecodable suffixes and special files counted and left out."""
    try:
        named = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | UNREADABLE_SUFFIXES]
        special = [p for p in named if special_problem(p) is not None]
        files = [p for p in named if p.is_file()]  # a special file is not a regular one
    except OSError as error:
        raise DatasetError(f"{layout.yaml_path}: '{split}' entry {entry!r}: cannot list {folder} ({error})") from None
    issues[f"images OpenCV cannot decode ({', '.join(sorted(UNREADABLE_SUFFIXES))}), skipped"] += sum(
        p.suffix.lower() in UNREADABLE_SUFFIXES for p in files)
    _warn_special(folder, special, issues)
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def _warn_special(where: Path, special: list[Path], issues: Counter) -> None:
    """One warning line for all the special files found in one folder or list file."""
    if special:
        log.warning("%s: %d %s, e.g. %s: %s", where, len(special), SPECIAL_SKIPPED, special[0],
                    special_problem(special[0]))
        issues[SPECIAL_SKIPPED] += len(special)


def split_images(layout: YoloLayout, split: str, problems: Problems) -> tuple[list[Path], Counter]:
    """The split's image files (sorted, unique), and what was skipped (undecodable here, special files) counted.

    Raises:
        DatasetError: the split is not in the yaml, or an entry names nothing, a special file, or a path
            outside the dataset root (unless SCRATCHDET_DATA_OUTSIDE_ROOT=1).
    """
    if split not in layout.splits:
        raise DatasetError(f"{layout.yaml_path}: no split '{split}' (splits: {', '.join(layout.splits)})")
    found: set[Path] = set()
    issues: Counter = Counter()
    for entry in layout.splits[split]:
        path = _entry_path(layout, entry)
        problem = outside_root_problem(layout.root, entry, path, issues) or special_problem(path)
        if problem is not None:
            raise DatasetError(f"{layout.yaml_path}: '{split}' entry {entry!r}: {problem}")
        if path.is_dir():
            found.update(_scanned(layout, split, entry, path, issues))
        elif path.is_file():
            found.update(_listed(layout, path, problems, issues))
        else:
            raise DatasetError(f"{layout.yaml_path}: '{split}' entry {entry!r} is neither a folder nor a list "
                               f"file ({path} does not exist)")
    return sorted(found, key=str), issues
