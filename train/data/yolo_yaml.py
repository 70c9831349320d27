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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scratchdet.train.data.records import DatasetError, Problems

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


def _class_names(path: Path, data: dict) -> list[str]:
    names, count = data.get("names"), data.get("nc")
    if names is None and count is None:
        raise DatasetError(f"{path}: no 'names' (a list of class names, or a dict 0: name, 1: name, ...)")
    if names is None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise DatasetError(f"{path}: nc {count!r} is not a positive integer")
        return [f"class_{i}" for i in range(count)]
    if isinstance(names, dict):
        keys = sorted(names, key=str)
        if sorted(k for k in names if isinstance(k, int)) != list(range(len(names))):
            raise DatasetError(f"{path}: 'names' has class indices {keys}; a dict needs the integers "
                               f"0..{len(names) - 1}, one each")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: 'names' is {names!r}; expected a non-empty list or dict of class names")
    bad = [f"names[{i}] is {n!r}" for i, n in enumerate(names) if isinstance(n, bool) or n is None or n == ""]
    if bad:
        raise DatasetError(f"{path}: {'; '.join(bad)} (YAML reads unquoted yes/no/on/off/null as booleans "
                           "or null: quote class names like these)")
    if count is not None and count != len(names):
        raise DatasetError(f"{path}: nc is {count} but 'names' lists {len(names)} classes")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"{path}: class name(s) {twice} appear more than once in 'names'")
    return names


def read_yaml(path: Path) -> YoloLayout:
    """Read and check a data.yaml (names, path, splits); image files are listed by `split_images`."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DatasetError(f"{path}: cannot read the YAML: {error}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names' and 'train'/'val'")
    root = path.parent
    if data.get("path"):
        root = path.parent / str(data["path"])  # an absolute `path` replaces the yaml's folder
    if not root.is_dir():
        raise DatasetError(f"{path}: 'path' {data['path']!r} is not a folder ({root}); it is read relative to "
                           "the yaml's folder")
    splits = {}
    for split, keys in SPLIT_KEYS.items():
        value = next((data[k] for k in keys if data.get(k)), None)
        if value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) and e for e in entries):
            raise DatasetError(f"{path}: '{split}' is {value!r}; expected a folder, a .txt list or a list of them")
        splits[split] = entries
    if "train" not in splits:
        raise DatasetError(f"{path}: no 'train' (a folder, a .txt list of images, or a list of those)")
    return YoloLayout(path, root, _class_names(path, data), splits)


def _entry_path(layout: YoloLayout, entry: str) -> Path:
    path = layout.root / entry
    if not path.exists() and entry.startswith("../"):
        return layout.root / entry[3:]
    return path


def split_present(layout: YoloLayout, split: str) -> bool:
    """Whether every entry of `split` names an existing folder or list file."""
    return split in layout.splits and all(_entry_path(layout, e).exists() for e in layout.splits[split])


def _listed(list_file: Path, problems: Problems) -> list[Path]:
    images = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        image = Path(line)
        image = image if image.is_absolute() else list_file.parent / image
        if not image.is_file():
            problems.add(f"{list_file}:{number}", f"lists {line}, which does not exist")
        else:
            images.append(image)
    return images


def split_images(layout: YoloLayout, split: str, problems: Problems) -> tuple[list[Path], int]:
    """The split's image files (sorted, unique) and the count of image files skipped as undecodable here.

    Raises:
        DatasetError: the split is not in the yaml, or an entry names nothing.
    """
    if split not in layout.splits:
        raise DatasetError(f"{layout.yaml_path}: no split '{split}' (splits: {', '.join(layout.splits)})")
    found: set[Path] = set()
    skipped = 0
    for entry in layout.splits[split]:
        path = _entry_path(layout, entry)
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file()]
            found.update(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
            skipped += sum(p.suffix.lower() in UNREADABLE_SUFFIXES for p in files)
        elif path.is_file():
            found.update(_listed(path, problems))
        else:
            raise DatasetError(f"{layout.yaml_path}: '{split}' entry {entry!r} is neither a folder nor a list "
                               f"file ({path} does not exist)")
    return sorted(found, key=str), skipped
