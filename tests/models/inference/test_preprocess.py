"""Pre-processing: every layout and depth to the same RGB input, with one colour conversion at most."""

import cv2
import numpy as np
import pytest

from scratchdet.models.inference import preprocess
from scratchdet.models.inference.preprocess import prepare
from scratchdet.train.data.images import read_rgb

SIZE = 32


def _rgb_input(rgb8: np.ndarray) -> np.ndarray:
    """The model input written out by hand: a plain resize of 8-bit RGB, channels first, float32."""
    resized = cv2.resize(rgb8, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return resized.transpose(2, 0, 1)[None].astype(np.float32)


def _depths(image8: np.ndarray) -> dict[str, np.ndarray]:
    """The same picture at 8 bit, 16 bit (x257: exact) and float 0-1 (255ths: exact after x255)."""
    return {"uint8": image8, "uint16": image8.astype(np.uint16) * 257,
            "float32": image8.astype(np.float32) / np.float32(255)}


RGB = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
ALPHA = np.random.default_rng(1).integers(0, 256, (24, 40, 1), dtype=np.uint8)
LAYOUTS = {  # name -> (image in that layout, colour order stated, the RGB it shows)
    "gray": (RGB[..., 0], "bgr", np.repeat(RGB[..., :1], 3, axis=2)),
    "gray1": (RGB[..., :1], "rgb", np.repeat(RGB[..., :1], 3, axis=2)),
    "bgr": (RGB[..., ::-1], "bgr", RGB),
    "bgra": (np.concatenate([RGB[..., ::-1], ALPHA], axis=2), "bgr", RGB),
    "rgb": (RGB, "rgb", RGB),
    "rgba": (np.concatenate([RGB, ALPHA], axis=2), "rgb", RGB),
}


@pytest.mark.parametrize("depth", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_and_depth_gives_the_same_input_bit_for_bit(layout, depth):
    image, color, shows = LAYOUTS[layout]
    batch, sizes = prepare([np.ascontiguousarray(_depths(image)[depth])], SIZE, color)
    assert np.array_equal(batch, _rgb_input(np.ascontiguousarray(shows)))
    assert sizes.tolist() == [[40, 24]]


class ReorderCountingImage(np.ndarray):
    """An image that counts its channel-reordering index copies (image[..., [2, 1, 0]])."""

    reorders = 0

    def __getitem__(self, key):
        last = key[-1] if isinstance(key, tuple) else key
        ReorderCountingImage.reorders += isinstance(last, (list, np.ndarray))
        return super().__getitem__(key)


def _count_conversions(monkeypatch):
    calls = []
    convert = cv2.cvtColor
    monkeypatch.setattr(cv2, "cvtColor", lambda *args: calls.append(args[1]) or convert(*args))
    ReorderCountingImage.reorders = 0
    return lambda: len(calls) + ReorderCountingImage.reorders


def test_an_rgb_image_is_converted_once_from_file_to_model_input(tmp_path, monkeypatch):
    path = tmp_path / "picture.png"
    cv2.imwrite(str(path), RGB[..., ::-1])
    conversions = _count_conversions(monkeypatch)
    rgb = read_rgb(path)  # OpenCV decodes BGR: the one conversion
    batch, _ = prepare([rgb.view(ReorderCountingImage)], SIZE, "rgb")
    assert conversions() == 1
    assert np.array_equal(batch, _rgb_input(RGB))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_takes_one_conversion_at_most(layout, monkeypatch):
    image, color, _ = LAYOUTS[layout]
    conversions = _count_conversions(monkeypatch)
    preprocess.to_model_rgb(np.ascontiguousarray(image).view(ReorderCountingImage), color)
    assert conversions() == (0 if layout == "rgb" else 1)
