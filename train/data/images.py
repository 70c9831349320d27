"""Reading images robustly: any bit depth and channel count in, 8-bit RGB out, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded."""


def to_rgb8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert a decoded OpenCV image (BGR/BGRA/gray, 8 or 16 bit, or float) to HxWx3 uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)  # 65535 -> 255 exactly
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)  # alpha dropped, colour kept
    raise ImageReadError(f"{source}: unsupported channel count {channels}")


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB.

    Raises:
        ImageReadError: the file is missing, empty, or not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{path}: image file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise ImageReadError(f"{path}: cannot decode the image (corrupt or not an image)")
    return to_rgb8(image, str(path))
