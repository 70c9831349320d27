"""SSD data augmentation in numpy/OpenCV (SSD paper Sec. 2.2, caffe/ssd_pascal.py), boxes kept in step.

Every function takes an HxWx3 uint8 RGB image, boxes [N, 4] x1, y1, x2, y2 in pixels and labels [N],
and draws its randomness from the given numpy Generator, so a sample is a pure function of its seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from scratchdet.models.boxes import pairwise_iou

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]

# Minimum IoU choices of the crop sampler; None keeps the whole image.
CROP_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9)


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness ±32, contrast 0.5-1.5, saturation 0.5-1.5, hue ±18 degrees, each with p=0.5."""
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    if contrast is not None and contrast_first:
        out *= contrast
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = rng.uniform(-18, 18) if rng.random() < 0.5 else None
    if saturation is not None or hue is not None:
        hsv = cv2.cvtColor(np.clip(out, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees, S, V in 0-1
        if saturation is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
        if hue is not None:
            hsv[..., 0] = (hsv[..., 0] + hue) % 360
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    if contrast is not None and not contrast_first:
        out *= contrast
    return np.clip(out, 0, 255).astype(np.uint8)


def expand(sample: Sample, rng: np.random.Generator, fill: tuple[float, ...], max_ratio: float = 4.0) -> Sample:
    """Zoom out with p=0.5: place the image on a canvas up to `max_ratio` times larger, filled with `fill`."""
    image, boxes, labels = sample
    if rng.random() < 0.5:
        return sample
    height, width = image.shape[:2]
    ratio = rng.uniform(1, max_ratio)
    canvas = np.empty((int(height * ratio), int(width * ratio), 3), dtype=np.uint8)
    canvas[:] = np.array(fill, dtype=np.uint8)
    left = int(rng.uniform(0, canvas.shape[1] - width))
    top = int(rng.uniform(0, canvas.shape[0] - height))
    canvas[top : top + height, left : left + width] = image
    return canvas, boxes + np.array([left, top, left, top], dtype=np.float32), labels


def random_crop(sample: Sample, rng: np.random.Generator, trials: int = 50) -> Sample:
    """IoU-constrained crop: scale 0.3-1, aspect 0.5-2, some box with IoU >= a sampled minimum;
    keep the boxes whose centre falls inside, clipped to the crop."""
    image, boxes, labels = sample
    min_iou = CROP_MIN_IOUS[rng.integers(len(CROP_MIN_IOUS))]
    if min_iou is None:
        return sample
    height, width = image.shape[:2]
    for _ in range(trials):
        w, h = rng.uniform(0.3, 1.0) * width, rng.uniform(0.3, 1.0) * height
        if not 0.5 <= h / w <= 2.0:
            continue
        left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
        rect = np.array([left, top, left + w, top + h], dtype=np.float32)
        if len(boxes) and pairwise_iou(boxes, rect[None]).max() < min_iou:
            continue
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = np.all((centres > rect[:2]) & (centres < rect[2:]), axis=1)
        if len(boxes) and not inside.any():
            continue
        x1, y1, x2, y2 = (int(v) for v in rect)
        kept = boxes[inside].copy()
        kept[:, :2] = np.maximum(kept[:, :2], rect[:2])
        kept[:, 2:] = np.minimum(kept[:, 2:], rect[2:])
        kept -= np.array([x1, y1, x1, y1], dtype=np.float32)
        return image[y1:y2, x1:x2], kept, labels[inside]
    return sample


def horizontal_flip(sample: Sample, rng: np.random.Generator) -> Sample:
    image, boxes, labels = sample
    if rng.random() < 0.5:
        return sample
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped, labels


def resize(sample: Sample, size: int) -> Sample:
    """Plain resize to size x size (no letterbox, as SSD); boxes scaled along."""
    image, boxes, labels = sample
    height, width = image.shape[:2]
    scale = np.array([size / width, size / height] * 2, dtype=np.float32)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR), boxes * scale, labels


def augment(sample: Sample, size: int, rng: np.random.Generator, fill: tuple[float, ...],
            expand_max: float = 4.0) -> Sample:
    """The SSD training pipeline: distort, expand, crop, resize, flip."""
    image, boxes, labels = sample
    sample = (photometric_distort(image, rng), boxes, labels)
    sample = random_crop(expand(sample, rng, fill, expand_max), rng)
    return horizontal_flip(resize(sample, size), rng)
