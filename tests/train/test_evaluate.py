import numpy as np
import pytest

from scratchdet.models.detections import Detections
from scratchdet.train.data.records import ImageRecord
from scratchdet.train.evaluate import class_matches, coco_metrics, evaluate, voc_ap


def record(boxes, labels, difficult=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.array(difficult)
    return ImageRecord(0, None, 100, 100, boxes, np.array(labels, dtype=np.int64), difficult)


def dets(boxes, scores, labels):
    return Detections.from_arrays(boxes, scores, labels, frame="image")


def test_voc_ap_on_a_hand_computed_case():
    # 3 ground truths; ranked detections: hit, miss, hit, (third never found).
    recall = np.array([1 / 3, 1 / 3, 2 / 3])
    precision = np.array([1.0, 0.5, 2 / 3])
    # all-point: envelope is 1.0 up to recall 1/3, then 2/3 up to 2/3: 1/3 + 2/9
    assert voc_ap(recall, precision, eleven_point=False) == pytest.approx(1 / 3 + 2 / 9)
    # 11-point: t = 0.0..0.3 -> 1.0 (4 points), 0.4..0.6 -> 2/3 (3 points), 0.7..1.0 -> 0
    assert voc_ap(recall, precision, eleven_point=True) == pytest.approx((4 + 3 * 2 / 3) / 11)


def test_class_matches_count_duplicates_as_false_and_ignores_difficult():
    truth = [record([[0, 0, 10, 10], [50, 50, 60, 60]], [1, 1], difficult=[False, True])]
    found = [dets([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [1, 1, 1])]
    recall, precision = class_matches(truth, found, 1).curve()
    np.testing.assert_allclose(recall, [1.0, 1.0])  # the difficult match is neither hit nor miss
    np.testing.assert_allclose(precision, [1.0, 0.5])


def test_voc_all_point_ap50_agrees_with_pycocotools_ap50():
    rng = np.random.default_rng(0)
    records, detections = [], []
    for _ in range(30):
        corners = rng.uniform(0, 60, size=(5, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(10, 40, size=(5, 2))], axis=1)
        labels = rng.integers(0, 2, size=5)
        records.append(record(boxes, labels))
        noisy = boxes + rng.normal(0, 4, size=boxes.shape)
        keep = rng.random(5) < 0.8
        flipped = np.where(rng.random(5) < 0.1, 1 - labels, labels)
        detections.append(dets(noisy[keep], rng.random(int(keep.sum())), flipped[keep]))
    result = evaluate(records, detections, ["a", "b"])
    coco, _ = coco_metrics(records, detections, ["a", "b"])
    assert 0.3 < result.map50 < 0.99  # a non-trivial case
    # pycocotools interpolates at 101 recall points, VOC integrates every point: close, not equal.
    assert result.map50 == pytest.approx(coco["AP50"], abs=0.01)


def test_perfect_detections_score_one_and_none_score_zero():
    records = [record([[0, 0, 10, 10]], [0]), record([[20, 20, 40, 40]], [1])]
    perfect = [dets(r.boxes, [0.9], r.labels) for r in records]
    assert evaluate(records, perfect, ["a", "b"]).map50 == pytest.approx(1.0)
    empty = [dets([], [], []) for _ in records]
    result = evaluate(records, empty, ["a", "b"])
    assert result.map50 == 0.0 and result.coco_ap == 0.0


def test_detections_in_input_pixels_are_refused():
    records = [record([[0, 0, 10, 10]], [0])]
    with pytest.raises(ValueError, match="original-image pixels"):
        evaluate(records, [Detections.from_arrays([[0, 0, 10, 10]], [0.9], [0])], ["a"])
