import cv2
import numpy as np
import pytest

from scratchdet.train.data.images import ImageReadError, read_rgb


def test_grayscale_rgba_and_16_bit_images_become_8_bit_rgb(tmp_path):
    gray = np.full((10, 12), 200, dtype=np.uint8)
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 2] = 255  # red in OpenCV's BGRA order
    deep = np.full((10, 12, 3), 65535, dtype=np.uint16)
    for name, image in {"gray.png": gray, "rgba.png": rgba, "deep.png": deep}.items():
        cv2.imwrite(str(tmp_path / name), image)
    assert read_rgb(tmp_path / "gray.png").shape == (10, 12, 3)
    assert read_rgb(tmp_path / "gray.png")[0, 0].tolist() == [200, 200, 200]
    assert read_rgb(tmp_path / "rgba.png")[0, 0].tolist() == [255, 0, 0]
    deep_rgb = read_rgb(tmp_path / "deep.png")
    assert deep_rgb.dtype == np.uint8 and deep_rgb[0, 0].tolist() == [255, 255, 255]


def test_corrupt_image_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg: cannot decode"):
        read_rgb(path)


def test_missing_and_empty_files_are_named(tmp_path):
    with pytest.raises(ImageReadError, match="nothing.png: image file not found"):
        read_rgb(tmp_path / "nothing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: image file is empty"):
        read_rgb(tmp_path / "empty.png")
