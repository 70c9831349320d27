"""Reading images robustly: any bit depth and channel count in, 8-bit RGB out, clear errors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from scratchdet.models.inference.preprocess import ImageError, to_rgb8
from scratchdet.special_files import special_problem
from scratchdet.train.data.records import DatasetError, ImageRecord


class ImageReadError(ImageError):
    """An image file that is missing or cannot be decoded."""


def _refuse_special(path: Path) -> None:
    special = special_problem(path)
    if special is not None:
        raise ImageReadError(f"{path}: {special}")


def image_file_problem(path: Path) -> str | None:
    """Why an image file that annotations name cannot be used, found without opening it (missing, a folder, a
    FIFO, device or socket), or None."""
    special = special_problem(path)
    if special is not None:
        return special
    if not path.exists():
        return "image file not found (the annotations list it: its boxes would be lost)"
    return None if path.is_file() else "not a file"


def opencv_pixel_limit() -> int:
    """The largest image (width x height) OpenCV decodes: OPENCV_IO_MAX_IMAGE_PIXELS, default 2^30."""
    return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header alone (no pixel decoding: cheap at load time).

    Raises:
        ImageReadError: the file is empty, not an image, a FIFO, device or socket (not opened), or larger
            than OpenCV decodes.
    """
    path = Path(path)
    _refuse_special(path)
    try:
        with warnings.catch_warnings():
            # Pillow's decompression-bomb guard: the pixel limit that matters here is OpenCV's, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as image:
                    width, height = image.size
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except OSError as error:  # PIL.UnidentifiedImageError is an OSError
        reason = "image file is empty" if path.is_file() and path.stat().st_size == 0 else (
            f"cannot read the image header (corrupt or not an image: {error})")
        raise ImageReadError(f"{path}: {reason}") from None
    if width * height > opencv_pixel_limit():
        raise ImageReadError(f"{path}: image is {width}x{height} = {width * height} pixels, more than OpenCV "
                             f"decodes ({opencv_pixel_limit()}, set OPENCV_IO_MAX_IMAGE_PIXELS to raise it)")
    return width, height


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB.

    Raises:
        ImageReadError: the file is missing, empty, a FIFO, device or socket (not opened), or not a decodable
            image.
    """
    path = Path(path)
    _refuse_special(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{path}: image file is empty")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as error:  # e.g. beyond OpenCV's pixel limit
        reason = str(error).strip().splitlines()[-1]
        raise ImageReadError(f"{path}: OpenCV cannot decode the image ({reason})") from None
    if image is None:
        raise ImageReadError(f"{path}: cannot decode the image (corrupt or not an image)")
    return to_rgb8(image, str(path))


def read_record_image(record: ImageRecord) -> np.ndarray:
    """The record's image as HxWx3 uint8 RGB, checked against the annotated size: the rule every image
    training, evaluation and `scratchdet data check` read goes through.

    Raises:
        ImageReadError: the file is missing, special or not decodable.
        DatasetError: the decoded image is not of the annotated size.
    """
    image = read_rgb(record.path)
    if image.shape[:2] != (record.height, record.width):
        raise DatasetError(f"{record.path}: image is {image.shape[1]}x{image.shape[0]} but the annotations say "
                           f"{record.width}x{record.height}")
    return image
