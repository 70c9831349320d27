"""Mosaic keeps boxes in step with their pixels, through the rest of the training pipeline too.

As in test_transforms.py: box k of image q is painted into channel k of a mask that stands in for image q
(the other three masks blank); the masks go through the same draws as the photos, one replay per image,
and the region of each painted box must be the box the pipeline returned for it (label 3 q + k).
"""

import numpy as np
import pytest
import torch

from scratchdet.train.dataset import DetectionDataset
from scratchdet.train.mosaic import mosaic
from scratchdet.train.transforms import augment, expand, horizontal_flip, photometric_distort, random_crop, resize
from tests.train.test_transforms import painted, region

SIZE = 128
FILL = (0, 0, 0)


def photos(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Four random photos of random sizes, each with three boxes labelled 3 q + k."""
    samples = []
    for q in range(4):
        height, width = int(rng.integers(100, 300)), int(rng.integers(100, 300))
        corners = rng.uniform(0, 0.6, (3, 2)) * [width, height]
        sides = rng.uniform(0.15, 0.4, (3, 2)) * [width, height]
        boxes = np.floor(np.concatenate([corners, corners + sides], axis=1)).astype(np.float32)
        samples.append((rng.integers(0, 255, (height, width, 3), dtype=np.uint8), boxes, 3 * q + np.arange(3)))
    return samples


def masks_of(samples: list, q: int) -> list:
    """The samples with their images replaced by masks: image q's boxes painted, the others blank."""
    return [
        (painted(boxes, *image.shape[:2]) * (i == q), boxes, labels) for i, (image, boxes, labels) in enumerate(samples)
    ]


def replay_pipeline(samples: list, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mosaic, then the geometric steps of `augment` with the draws it makes (no zoom-out: expand_max 1)."""
    rng = np.random.default_rng(seed)
    image, boxes, labels = mosaic(samples, SIZE, rng, FILL)
    photometric_distort(image, rng)  # consumes the same draws as in augment
    sample = random_crop(expand((image, boxes, labels), rng, FILL, 1.0), rng)
    return horizontal_flip(resize(sample, SIZE), rng)


def assert_boxes_on_their_pixels(boxes: np.ndarray, labels: np.ndarray, replays: list) -> None:
    assert boxes.shape == (len(labels), 4)
    assert np.all(boxes >= -1e-3) and np.all(boxes <= 2 * SIZE + 1e-3)
    for box, label in zip(boxes, labels):
        if (box[2] - box[0]) * (box[3] - box[1]) < 9:
            continue  # a sliver: resize blur can erase it
        found = region(replays[label // 3], int(label % 3))
        assert found is not None, f"box {label} returned but its pixels are gone"
        np.testing.assert_allclose(found, box, atol=2.0, err_msg=f"box {label}")


def assert_dropped_boxes_barely_show(samples: list, labels: np.ndarray, replays: list) -> None:
    for label in set(range(12)) - set(labels.tolist()):  # dropped: little or nothing of it shows
        found = region(replays[label // 3], label % 3)
        shown = 0.0 if found is None else float(np.prod(np.clip(found[2:] - found[:2] - 2, 0, None)))
        full = samples[label // 3][1][label % 3]
        scale = SIZE**2 / np.prod(samples[label // 3][0].shape[:2])  # the box's area after the resize to SIZE
        assert shown <= 0.15 * np.prod(full[2:] - full[:2]) * scale + 4, f"box {label} dropped but it shows"


@pytest.mark.parametrize("seed", range(8))
def test_mosaic_boxes_are_where_their_pixels_went(seed):
    samples = photos(np.random.default_rng(100 + seed))
    canvas, boxes, labels = mosaic(samples, SIZE, np.random.default_rng(seed), FILL)
    replays = [mosaic(masks_of(samples, q), SIZE, np.random.default_rng(seed), FILL)[0] for q in range(4)]
    assert canvas.shape == (2 * SIZE, 2 * SIZE, 3)
    assert np.all(boxes[:, 2:] - boxes[:, :2] > 2)  # slivers dropped
    assert_boxes_on_their_pixels(boxes, labels, replays)
    assert_dropped_boxes_barely_show(samples, labels, replays)


@pytest.mark.parametrize("seed", range(8))
def test_mosaic_then_the_ssd_pipeline_keeps_boxes_on_their_pixels(seed):
    samples = photos(np.random.default_rng(200 + seed))
    rng = np.random.default_rng(seed)
    _, boxes, labels = augment(mosaic(samples, SIZE, rng, FILL), SIZE, rng, FILL, 1.0)
    replays = [replay_pipeline(masks_of(samples, q), seed)[0] for q in range(4)]
    assert np.all(boxes <= SIZE + 1.0)  # random_crop clips boxes to its float window, cuts pixels at whole ones
    assert_boxes_on_their_pixels(boxes, labels, replays)


def test_mosaic_needs_four_samples():
    samples = photos(np.random.default_rng(0))[:3]
    with pytest.raises(ValueError, match="mosaic needs 4 samples, got 3"):
        mosaic(samples, SIZE, np.random.default_rng(0), FILL)


def test_mosaic_items_depend_on_the_seed_alone(synth_data):
    from scratchdet.train.data.load import load_dataset

    data = load_dataset(synth_data, "train")
    items = [DetectionDataset(data, 96, augment=True, seed=seed, mosaic=1.0)[3] for seed in (0, 0, 1)]
    plain = DetectionDataset(data, 96, augment=True, seed=0)[3]
    assert torch.equal(items[0][0], items[1][0]) and torch.equal(items[0][1], items[1][1])
    assert not torch.equal(items[0][0], items[2][0])
    assert not torch.equal(items[0][0], plain[0])
