"""Reading images robustly: any bit depth and channel count in, 8-bit RGB out, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scratchdet.models.preprocess import ImageError, to_rgb8


class ImageReadError(ImageError):
    """An image file that is missing or cannot be decoded."""


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
