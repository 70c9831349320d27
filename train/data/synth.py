"""A deterministic synthetic detection dataset (the built-in demo data): coloured shapes of several
classes and sizes on textured backgrounds, written in the COCO layout with a splits.json."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from scratchdet.models.files import atomic_folder, check_destination, final_mode, write_bytes, write_text
from scratchdet.progress import progress

CLASSES = ("circle", "square", "triangle")
_IMAGE = re.compile(r"^synth_\d{5,}\.png$")


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour gradient with noise and a few random lines, so boxes are not trivial."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-0.4, 0.4, size=(2, 3))
    image = base + ys[..., None] * slope[0] + xs[..., None] * slope[1]
    image += rng.normal(0, 12, size=(height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 6)):
        p1 = tuple(int(v) for v in rng.integers(0, (width, height)))
        p2 = tuple(int(v) for v in rng.integers(0, (width, height)))
        cv2.line(image, p1, p2, tuple(int(c) for c in rng.integers(0, 255, 3)), int(rng.integers(1, 3)))
    return image


def _draw(image: np.ndarray, shape: str, box: np.ndarray, colour: tuple[int, ...]) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    if shape == "circle":
        cv2.ellipse(image, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, colour, -1)
    elif shape == "square":
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    else:
        points = np.array([[(x1 + x2) // 2, y1], [x1, y2 - 1], [x2 - 1, y2 - 1]], dtype=np.int32)
        cv2.fillPoly(image, [points], colour)


def _place(rng: np.random.Generator, placed: list[np.ndarray], width: int, height: int) -> np.ndarray | None:
    """A box of random size and aspect that overlaps no placed box, or None after a few tries."""
    for _ in range(20):
        side = rng.uniform(0.08, 0.45) * min(width, height)
        aspect = rng.uniform(0.7, 1.4)
        w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = np.round([x1, y1, x1 + w, y1 + h])
        if all(box[0] >= b[2] or box[2] <= b[0] or box[1] >= b[3] or box[3] <= b[1] for b in placed):
            return box
    return None


def make_synthetic_dataset(
    out: str | Path, images: int = 200, seed: int = 0, size: tuple[int, int] = (192, 160)
) -> Path:
    """Write `images` images to out/images, out/annotations.json and out/splits.json (80/20)."""
    out = Path(out)
    check_synthetic_out(out)
    with atomic_folder(out) as stage:  # a stopped run leaves only a marked staging folder, swept by the next
        _fill(stage, images, seed, size)
        for name in ("annotations.json", "splits.json"):  # a replaced file keeps its mode, as atomic_write's do
            os.chmod(stage / name, final_mode(out / name))
    return out


def check_synthetic_out(out: Path) -> None:
    """Refuse an `out` that is not a new or empty folder or an earlier synthetic dataset, changing nothing.

    Raises:
        ValueError: `out` holds other files (named). OSError: `out` cannot be written (see `check_destination`).
    """
    for name in ("annotations.json", "splits.json"):  # a read-only one is refused (unless --force)
        check_destination(out / name)
    check_destination(out, folder=True)
    others = sorted(p.name for p in out.iterdir()) if out.is_dir() and not _earlier_synthetic(out) else []
    if others:
        raise ValueError(f"{out}: holds other files ({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); "
                         "`data synth` writes a new folder or replaces an earlier synthetic dataset: choose another "
                         "--out")


def _earlier_synthetic(out: Path) -> bool:
    """Whether `out` holds nothing but a synthetic dataset: the files `data synth` writes, its image names and
    classes."""
    if not {p.name for p in out.iterdir()} <= {"annotations.json", "splits.json", "images"}:
        return False
    images = out / "images"
    if images.exists() and (not images.is_dir() or not all(_IMAGE.match(p.name) for p in images.iterdir())):
        return False
    try:
        categories = json.loads((out / "annotations.json").read_text())["categories"]
        return tuple(c["name"] for c in categories) == CLASSES
    except FileNotFoundError:
        return True  # images alone: an earlier run stopped before its annotations
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _fill(out: Path, images: int, seed: int, size: tuple[int, int]) -> None:
    """The images, annotations.json and splits.json of the dataset, written into the (staging) folder `out`."""
    (out / "images").mkdir()
    width, height = size
    colours = {"circle": (220, 40, 40), "square": (40, 200, 60), "triangle": (50, 80, 230)}
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}
    for index in progress(range(images), desc="synthetic images", leave=False):
        rng = np.random.default_rng([seed, index])
        image = _background(rng, height, width)
        placed: list[np.ndarray] = []
        for _ in range(rng.integers(1, 5)):
            box = _place(rng, placed, width, height)
            if box is None:
                continue
            label = int(rng.integers(0, len(CLASSES)))
            jitter = rng.integers(-30, 30, 3)
            colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colours[CLASSES[label]], jitter))
            _draw(image, CLASSES[label], box, colour)
            placed.append(box)
            x1, y1, x2, y2 = (float(v) for v in box)
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": index + 1, "category_id": label + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
        name = f"synth_{index:05d}.png"
        encoded, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not encoded:
            raise RuntimeError(f"{out / 'images' / name}: OpenCV could not encode the image as PNG")
        write_bytes(out / "images" / name, png.tobytes())
        coco["images"].append({"id": index + 1, "file_name": name, "width": width, "height": height})
    names = [im["file_name"] for im in coco["images"]]
    split = round(len(names) * 0.8)
    write_text(out / "annotations.json", json.dumps(coco))
    write_text(out / "splits.json", json.dumps({"seed": seed, "train": names[:split], "val": names[split:]}))
