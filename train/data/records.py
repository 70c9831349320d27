"""The in-memory form every dataset format is read into, and the checks boxes go through."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """An annotation file or folder that cannot be used; the message names file and problem."""


# A report lists every problem up to this many lines (then counts the rest): enough to see each kind.
MAX_LISTED = 200


class Problems:
    """Every problem found while checking a dataset, raised at the end as one DatasetError."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[str] = []

    def add(self, source: str | Path, problem: str) -> None:
        self.lines.append(f"{source}: {problem}")

    def raise_if_any(self) -> None:
        """Raise one DatasetError listing all problems (file: problem per line), if there are any."""
        if not self.lines:
            return
        if len(self.lines) == 1:
            raise DatasetError(self.lines[0])
        listed = self.lines[:MAX_LISTED]
        more = len(self.lines) - len(listed)
        text = f"{self.root}: {len(self.lines)} problem(s) in the dataset:\n  " + "\n  ".join(listed)
        raise DatasetError(text + (f"\n  ... and {more} more" if more else ""))


# A dataset is read only under its root (ultralytics reads nothing outside its dataset folder): an annotation's
# `../../elsewhere/x.png` or `/abs/x.png` is refused unless the user sets this variable to 1.
OUTSIDE_ROOT_VARIABLE = "SCRATCHDET_DATA_OUTSIDE_ROOT"


def outside_root(root: Path, path: Path) -> bool:
    """Whether `path`, as written (`..` resolved, symlinks not followed), lies outside the folder `root`.

    Symlinks are not followed on purpose: `data convert --symlink` makes datasets of links to the source images.
    """
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(path))
    return os.path.commonpath([base, target]) != base


def outside_root_problem(root: Path, written: str, path: Path, issues: Counter) -> str | None:
    """The problem to report for a path an annotation or list names, when it leaves the dataset root unasked
    (asked: counted in `issues`, so the load report says so once)."""
    if not outside_root(root, path):
        return None
    if os.environ.get(OUTSIDE_ROOT_VARIABLE) == "1":
        issues[f"paths outside the dataset root read ({OUTSIDE_ROOT_VARIABLE}=1)"] += 1
        return None
    return (f"'{written}' points outside the dataset root {root} (to {os.path.normpath(path)}); a dataset is read "
            f"only under its root (set {OUTSIDE_ROOT_VARIABLE}=1 to read it anyway)")


@dataclass
class ImageRecord:
    """One image: boxes [N, 4] x1, y1, x2, y2 in image pixels, labels [N] 0-based class indices."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray  # [N] bool; VOC's flag, ignored by the evaluation as in VOC devkit


@dataclass
class DetectionSet:
    """A split of a dataset: its class names (without background) and images."""

    root: Path
    split: str
    class_names: list[str]
    records: list[ImageRecord]
    # What loading fixed or skipped, e.g. {"boxes clipped to the image": 3}: reported, never silent.
    issues: Counter = field(default_factory=Counter)

    def report(self) -> str:
        counts = ", ".join(f"{name}: {count}" for name, count in sorted(self.issues.items()))
        boxes = sum(len(r.boxes) for r in self.records)
        line = f"{self.root} [{self.split}]: {len(self.records)} images, {boxes} boxes"
        return line + (f" ({counts})" if counts else "")


def clean_boxes(
    boxes: np.ndarray, width: int, height: int, issues: Counter
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes [N, 4] (x1, y1, x2, y2) to the image and drop those with no area left.

    Returns the kept boxes and a [N] bool mask of which input boxes were kept; counts both fixes.
    """
    clipped = boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
    changed = np.any(clipped != boxes, axis=1)
    keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    issues["boxes clipped to the image"] += int(np.sum(changed & keep))
    issues["boxes dropped (less than 1 px wide or high)"] += int(np.sum(~keep))
    return clipped[keep], keep


def finish(dataset: DetectionSet) -> DetectionSet:
    """Log the load report once; refuse an empty split."""
    if not dataset.records:
        raise DatasetError(f"{dataset.root}: split '{dataset.split}' has no usable images")
    dataset.issues = Counter({k: v for k, v in dataset.issues.items() if v})
    log.info(dataset.report())
    return dataset
