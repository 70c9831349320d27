"""Images of any size, depth and channel count -> the model's input batch.

As in training's evaluation: a plain resize to input_size x input_size (no letterbox), RGB, 0-255
float; the model normalises inside. Colour order is the caller's statement ("bgr" for OpenCV
images, "rgb" otherwise), never guessed.
"""

from __future__ import annotations

import cv2
import numpy as np

COLOR_ORDERS = ("bgr", "rgb")


class ImageError(ValueError):
    """An image array that cannot be turned into the model's input."""


def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)  # 65535 -> 255 exactly
    if image.dtype in (np.float32, np.float64):
        return np.clip(image * 255.0, 0, 255).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {image.dtype}")
    return image


def to_rgb8(image: np.ndarray, source: str = "image", color: str = "bgr") -> np.ndarray:
    """A decoded image (gray, or 3/4 channels in `color` order: "bgr" as OpenCV decodes, or "rgb"; 8 or 16 bit,
    or float 0-1) as HxWx3 uint8 RGB, with one colour conversion at most: none for 8-bit RGB, which is
    returned as it is."""
    image = _to_uint8(image, source)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return image if color == "rgb" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:  # alpha dropped, colour kept
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB if color == "rgb" else cv2.COLOR_BGRA2RGB)
    raise ImageError(f"{source}: unsupported channel count {channels}")


def to_model_rgb(image: np.ndarray, color: str) -> np.ndarray:
    """Any image array (gray, BGR/RGB, BGRA/RGBA, 8/16-bit, float 0-1) as HxWx3 uint8 RGB."""
    if color not in COLOR_ORDERS:
        raise ImageError(f"color must be one of {COLOR_ORDERS}, got '{color}'")
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ImageError(f"expected an HxW or HxWxC image array, got {getattr(image, 'shape', type(image))}")
    return to_rgb8(np.ascontiguousarray(image), "image", color)


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
