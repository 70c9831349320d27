"""Images of any size, depth and channel count -> the model's input batch, and boxes back.

As in training's evaluation: a plain resize to input_size x input_size (no letterbox), RGB, 0-255
float; the model normalises inside. Colour order is the caller's statement ("bgr" for OpenCV
images, "rgb" otherwise), never guessed.
"""

from __future__ import annotations

import cv2
import numpy as np
from scratchdet.train.data.images import to_rgb8

COLOR_ORDERS = ("bgr", "rgb")


def to_model_rgb(image: np.ndarray, color: str) -> np.ndarray:
    """Any image array (gray, BGR/RGB, BGRA/RGBA, 8/16-bit, float 0-1) as HxWx3 uint8 RGB."""
    if color not in COLOR_ORDERS:
        raise ValueError(f"color must be one of {COLOR_ORDERS}, got '{color}'")
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an HxW or HxWxC image array, got {getattr(image, 'shape', type(image))}")
    if color == "rgb" and image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[..., [2, 1, 0, 3][: image.shape[2]]]  # to OpenCV's order, which to_rgb8 expects
    return to_rgb8(np.ascontiguousarray(image), "image")


def prepare(images: list[np.ndarray], input_size: int, color: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns the batch [B, 3, S, S] float32 and per image the (width, height) of the original."""
    batch = np.empty((len(images), 3, input_size, input_size), dtype=np.float32)
    sizes = np.empty((len(images), 2), dtype=np.float32)
    for i, image in enumerate(images):
        rgb = to_model_rgb(image, color)
        sizes[i] = rgb.shape[1], rgb.shape[0]
        resized = cv2.resize(rgb, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
        batch[i] = resized.transpose(2, 0, 1)
    return batch, sizes


def to_original(boxes: np.ndarray, size: np.ndarray, input_size: int) -> np.ndarray:
    """Boxes [K, 4] in input pixels -> pixels of an original image of (width, height) `size`, clipped."""
    scale = np.array([size[0], size[1], size[0], size[1]], dtype=np.float32) / input_size
    scaled = boxes * scale
    return np.clip(scaled, 0, [size[0], size[1], size[0], size[1]])
