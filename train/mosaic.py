"""Mosaic augmentation (YOLOv4, Bochkovskiy et al. 2020, Sec. 3.3; ultralytics' Mosaic): four images on one canvas.

Each image is resized to size x size (plain resize, as training and evaluation resize) and placed with one of
its corners on a random centre of a 2 size x 2 size canvas; boxes are shifted along, clipped to the part of
their image that shows, and dropped when too little of them is left. The SSD pipeline (photometric distortion,
IoU crop, resize, flip) then runs on the canvas, which already is a 2x zoom-out, so the crop decides the scale.
"""

from __future__ import annotations

import numpy as np

from scratchdet.train.transforms import Sample, resize

# ultralytics' box_candidates: a clipped box is kept when it is over 2 px wide and high and keeps over 10% of its area
MIN_SIDE = 2.0
MIN_AREA_KEPT = 0.1


def keep_visible(boxes: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 4] x1, y1, x2, y2 clipped to `region` [4], and the [N] mask of those with enough left."""
    clipped = np.concatenate([np.maximum(boxes[:, :2], region[:2]), np.minimum(boxes[:, 2:], region[2:])], axis=1)
    sides = clipped[:, 2:] - clipped[:, :2]
    area = np.prod(np.clip(sides, 0, None), axis=1)
    before = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    keep = np.all(sides > MIN_SIDE, axis=1) & (area > MIN_AREA_KEPT * np.maximum(before, 1e-9))
    return clipped, keep


def mosaic(samples: list[Sample], size: int, rng: np.random.Generator, fill: tuple[float, ...]) -> Sample:
    """Four samples (HxWx3 uint8 RGB, boxes [N, 4] x1, y1, x2, y2 pixels, labels [N]) on a 2 size x 2 size canvas.

    Raises:
        ValueError: not exactly four samples.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    canvas = np.empty((2 * size, 2 * size, 3), dtype=np.uint8)
    canvas[:] = np.array(fill, dtype=np.uint8)
    centre_x, centre_y = (int(rng.uniform(size / 2, 3 * size / 2)) for _ in range(2))
    all_boxes, all_labels = [], []
    for quadrant, sample in enumerate(samples):  # top-left, top-right, bottom-left, bottom-right of the centre
        image, boxes, labels = resize(sample, size)
        left = centre_x - size if quadrant % 2 == 0 else centre_x
        top = centre_y - size if quadrant < 2 else centre_y
        x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + size, 2 * size), min(top + size, 2 * size)
        canvas[y1:y2, x1:x2] = image[y1 - top : y2 - top, x1 - left : x2 - left]
        shifted = boxes.reshape(-1, 4) + np.array([left, top, left, top], dtype=np.float32)
        clipped, keep = keep_visible(shifted, np.array([x1, y1, x2, y2], dtype=np.float32))
        all_boxes.append(clipped[keep])
        all_labels.append(labels[keep])
    return canvas, np.concatenate(all_boxes).astype(np.float32), np.concatenate(all_labels)
