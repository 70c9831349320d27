"""models/boxes.py on hand-computed cases: IoU, greedy per-class NMS, the matcher at each tolerance edge."""

import subprocess
import sys

import numpy as np
import pytest

from scratchdet.models.boxes import TOLERANCES, Tolerance, match, matched_count, nms, pairwise_iou, tolerance
from scratchdet.models.detections import Detections


def dets(boxes, scores, classes):
    return Detections.from_arrays(boxes, scores, classes)


def test_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 4, 2]], dtype=np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 2, 2], [3, 3, 3, 8]], dtype=np.float32)
    expected = [[50 / 150, 0, 1, 4 / 100, 0],  # half overlap; disjoint; same box; box inside; no area
                [0, 0, 8 / 100, 4 / 8, 0]]
    np.testing.assert_allclose(pairwise_iou(a, b), expected, rtol=1e-6)
    assert pairwise_iou(a, np.zeros((0, 4))).shape == (2, 0)


def test_nms_suppresses_within_a_class_only_and_a_suppressed_box_suppresses_nothing():
    boxes = [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [5, 0, 15, 10], [50, 50, 60, 60]]
    scores = np.array([0.9, 0.8, 0.7, 0.85, 0.6])
    classes = np.array([0, 0, 0, 1, 0])
    # IoU(0, 1) = IoU(1, 2) = 1/3, IoU(0, 2) = 0: 1 goes, so 2 stays; 3 is another class; 4 overlaps nothing
    assert nms(np.array(boxes, np.float32), scores, classes, 0.3).tolist() == [0, 3, 2, 4]
    assert nms(np.array(boxes, np.float32), scores, classes, 0.5).tolist() == [0, 3, 1, 2, 4]


def test_nms_keeps_an_iou_exactly_at_the_threshold_and_orders_ties_by_index():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2]], np.float32)  # IoU exactly 1/3 in float32
    assert nms(boxes, np.array([0.5, 0.5]), np.zeros(2), float(np.float32(1 / 3))).tolist() == [0, 1]
    assert nms(boxes, np.array([0.5, 0.5]), np.zeros(2), 0.33).tolist() == [0]
    assert nms(boxes, np.array([0.4, 0.5]), np.zeros(2), 0.33).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).tolist() == []


REFERENCE = dets([[0, 0, 4, 2]], [0.5], [0])


@pytest.mark.parametrize(("candidate", "tol", "found"), [
    (dets([[0, 0, 4, 2]], [0.75], [0]), Tolerance(score=0.25), True),  # score difference exactly at the limit
    (dets([[0, 0, 4, 2]], [0.875], [0]), Tolerance(score=0.25), False),  # beyond it
    (dets([[0, 0, 4, 2]], [0.5], [1]), Tolerance(score=1.0, box_px=10), False),  # another class
    (dets([[1, 0, 5, 2]], [0.5], [0]), Tolerance(score=0.0, box_px=1.0), True),  # every corner 1 px away
    (dets([[1.5, 0, 5.5, 2]], [0.5], [0]), Tolerance(score=0.0, box_px=1.0), False),
    (dets([[1.5, 0, 5.5, 2]], [0.5], [0]), Tolerance(score=0.0, box_px=1.0, box_relative=0.125), True),  # + 4/8
    (dets([[0, 0, 2, 2]], [0.5], [0]), Tolerance(score=0.0, iou=0.5), True),  # IoU exactly 0.5
    (dets([[0, 0, 2, 2]], [0.5], [0]), Tolerance(score=0.0, iou=0.51), False),
    (dets([[0, 0, 4, 2]], [0.5], [0]), Tolerance(score=0.0, min_score=0.625), False),  # reference not counted
])
def test_matcher_at_each_tolerance_edge(candidate, tol, found):
    assert match(REFERENCE, candidate, tol).tolist() == [0 if found else -1]


def test_a_candidate_pairs_once_with_the_best_overlapping_reference_first():
    reference = dets([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])
    candidate = dets([[0, 0, 10, 8], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])
    tol = Tolerance(score=0.2, iou=0.7)
    assert match(reference, candidate, tol).tolist() == [1, 0]  # the first takes its IoU-1 partner
    assert matched_count([reference], [dets(np.zeros((0, 4)), [], [])], tol) == (0, 2)
    assert matched_count([reference], [candidate], Tolerance(score=0.2, iou=0.7, min_score=0.85)) == (1, 1)


def test_the_table_names_every_comparison_and_refuses_unknown_ones():
    assert tolerance("export-fp32") == Tolerance(score=1e-4, box_px=0.1, box_relative=1e-4, map50=0.001)
    assert [TOLERANCES[f"gpu-{p}"].iou for p in ("fp32", "fp16", "int8")] == [0.99, 0.95, 0.80]
    with pytest.raises(KeyError, match="no tolerance 'gpu-bf16'; the kinds are"):
        tolerance("gpu-bf16")
    with pytest.raises(ValueError, match="compares no detections"):
        match(REFERENCE, REFERENCE, tolerance("export-int8"))  # mAP only


def test_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import scratchdet.models.boxes; "
            "print('torch' in sys.modules and sys.modules['torch'] is not None)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
