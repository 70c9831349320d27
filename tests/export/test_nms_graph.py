"""The ONNX NMS tail on hand-made inputs, run by ONNX Runtime and checked against models.postprocess's
algorithm on the same boxes and scores."""

import numpy as np
import onnx
import pytest

from scratchdet.export.nms_graph import nms_tail_model
from scratchdet.models.boxes import nms
from scratchdet.models.config import PostprocessConfig
from scratchdet.models.contract import unpack_outputs
from scratchdet.models.inference.onnxruntime_backend import import_onnxruntime


def run_tail(boxes, scores, config: PostprocessConfig):
    """boxes [P, 4], scores [P, C] of one image -> its Detections from the ONNX tail in ONNX Runtime."""
    boxes = np.asarray(boxes, np.float32)[None]
    scores = np.asarray(scores, np.float32)[None]
    model = nms_tail_model(boxes.shape[1], scores.shape[2], config)
    onnx.checker.check_model(model, full_check=True)
    ort = import_onnxruntime()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    (detections,) = unpack_outputs(dict(zip(names, session.run(names, {"boxes": boxes, "scores": scores}))))
    return detections


OVERLAPPING = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]  # IoU of the first two: 9/11


def test_overlapping_box_of_a_class_is_suppressed_other_classes_untouched():
    scores = [[0.9, 0.0], [0.8, 0.7], [0.6, 0.0]]
    dets = run_tail(OVERLAPPING, scores, PostprocessConfig())
    assert dets.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert dets.class_ids.tolist() == [0, 1, 0]  # box 1 survives in class 1: only a class suppresses itself
    np.testing.assert_allclose(dets.boxes[1], OVERLAPPING[1])


def test_iou_exactly_at_the_threshold_keeps_both():
    boxes = [[0, 0, 2, 2], [1, 0, 3, 2]]  # IoU exactly 1/3 (exact in float32 arithmetic)
    dets = run_tail(boxes, [[0.9], [0.8]], PostprocessConfig(iou_threshold=1 / 3))
    assert len(dets) == 2
    assert len(run_tail(boxes, [[0.9], [0.8]], PostprocessConfig(iou_threshold=0.33))) == 1


def test_score_exactly_at_the_threshold_is_dropped():
    dets = run_tail(OVERLAPPING, [[0.5], [0.25], [0.5]], PostprocessConfig(score_threshold=0.25))
    assert dets.scores.tolist() == [0.5, 0.5]


def test_equal_scores_come_out_in_class_then_rank_order():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30]]
    dets = run_tail(boxes, [[0.5, 0.5], [0.5, 0.5]], PostprocessConfig())
    assert dets.class_ids.tolist() == [0, 0, 1, 1]
    assert dets.scores.tolist() == [0.5] * 4


def test_more_survivors_than_max_det_keep_the_best():
    rng = np.random.default_rng(0)
    corners = np.arange(40, dtype=np.float32)[:, None] * 20  # 40 disjoint boxes
    boxes = np.concatenate([corners, corners, corners + 10, corners + 10], axis=1)
    scores = rng.uniform(0.1, 1.0, (40, 1))
    dets = run_tail(boxes, scores, PostprocessConfig(max_det=7, pre_nms_topk=40))
    assert len(dets) == 7
    np.testing.assert_allclose(dets.scores, np.sort(scores[:, 0])[::-1][:7], rtol=1e-6)


def test_zero_survivors_give_zero_detections():
    dets = run_tail(OVERLAPPING, [[0.001], [0.002], [0.0]], PostprocessConfig(score_threshold=0.01))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)


@pytest.mark.parametrize("seed", range(3))
def test_onnx_nms_keeps_what_the_numpy_nms_keeps_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 50, (80, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 25, (80, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0.05, 1.0, (80, 3)).astype(np.float32)  # distinct: no tie order to argue about
    config = PostprocessConfig(score_threshold=0.0, iou_threshold=0.45, pre_nms_topk=80, max_det=240)
    got = run_tail(boxes, scores, config)
    # every (prior, class) pair is a candidate; numpy NMS over all of them, per class
    expected = nms(np.repeat(boxes, 3, axis=0), scores.reshape(-1), np.tile(np.arange(3), 80), 0.45)
    np.testing.assert_array_equal(got.class_ids, expected % 3)
    np.testing.assert_array_equal(got.boxes, boxes[expected // 3])
    np.testing.assert_array_equal(got.scores, scores.reshape(-1)[expected])
    assert 0 < len(expected) < 240
