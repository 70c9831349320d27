"""Property test of the SSD augmentation: boxes stay in step with the pixels they describe.

Each box is painted into its own channel of a mask image; the mask goes through exactly the geometric
draws `augment` made for the photo (same generator seed, photometric draws consumed first), and the
region of each value must be the box `augment` returned for it.
"""

import numpy as np
import pytest

from scratchdet.train.transforms import augment, expand, horizontal_flip, photometric_distort, random_crop, resize

SIZE = 128


def painted(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box k is 255 in channel k: boxes may overlap, and resize blur only softens each one's edges."""
    mask = np.zeros((height, width, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        mask[y1:y2, x1:x2, k] = 255
    return mask


def region(mask: np.ndarray, k: int) -> np.ndarray | None:
    ys, xs = np.nonzero(mask[..., k] >= 128)  # half way up a blurred edge is where the edge was
    return None if len(xs) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_augmented_boxes_are_where_their_pixels_went(seed):
    rng = np.random.default_rng(1000 + seed)
    height, width = int(rng.integers(150, 400)), int(rng.integers(150, 400))
    boxes = []
    for qx, qy in ((0, 0), (1, 0), (0, 1)):
        x1, y1 = qx * width / 2 + rng.uniform(2, width / 8), qy * height / 2 + rng.uniform(2, height / 8)
        boxes.append([x1, y1, x1 + rng.uniform(20, width / 3), y1 + rng.uniform(20, height / 3)])
    boxes = np.floor(np.array(boxes, np.float32))
    labels = np.arange(3)
    photo = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    fill = (0, 0, 0)

    _, out_boxes, out_labels = augment((photo, boxes, labels), SIZE, np.random.default_rng(seed), fill)

    replay = np.random.default_rng(seed)
    photometric_distort(photo, replay)  # consumes the same draws as in augment
    sample = random_crop(expand((painted(boxes, height, width), boxes, labels), replay, fill), replay)
    mask, _, _ = horizontal_flip(resize(sample, SIZE), replay)

    assert out_boxes.shape == (len(out_labels), 4) and len(out_labels) >= 1
    assert np.all(out_boxes >= -1e-3) and np.all(out_boxes <= SIZE + 1e-3)
    for box, k in zip(out_boxes, out_labels):
        if (box[2] - box[0]) * (box[3] - box[1]) < 9:
            continue  # a sliver after cropping: resize blur can erase it
        found = region(mask, int(k))
        assert found is not None, f"box {k} returned but its pixels are gone"
        np.testing.assert_allclose(found, box, atol=2.0, err_msg=f"box {k}")
