import numpy as np
import pytest
import torch

from scratchdet.models.box_coder import BoxCoder
from scratchdet.models.boxes import nms
from scratchdet.models.config import PostprocessConfig
from scratchdet.models.postprocess import box_iou, greedy_nms_mask, postprocess


def test_box_iou_of_half_overlapping_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 0.0]]))


def test_nms_keeps_best_box_and_boxes_a_suppressed_box_overlapped():
    # sorted best first; box 1 overlaps box 0 (suppressed), box 2 overlaps only box 1: kept, because a
    # suppressed box suppresses nothing (the chain that makes greedy NMS sequential)
    boxes = torch.tensor([[0, 0, 10, 10], [4, 0, 14, 10], [9, 0, 19, 10], [40, 40, 50, 50]], dtype=torch.float32)
    keep = greedy_nms_mask(boxes, torch.ones(4, dtype=torch.bool), 0.3)
    assert keep.tolist() == [True, False, True, True]


def test_iou_exactly_at_the_threshold_does_not_suppress():
    boxes = torch.tensor([[0, 0, 2, 2], [1, 0, 3, 2]], dtype=torch.float32)  # IoU exactly 1/3
    assert greedy_nms_mask(boxes, torch.ones(2, dtype=torch.bool), 1 / 3).tolist() == [True, True]


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_nms_equals_the_numpy_nms_on_random_clusters_per_class(seed):
    """The torch NMS (classes batched, boxes sorted best first) keeps what models.boxes.nms keeps."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, 60, 2, generator=generator) * 50
    sizes = torch.rand(3, 60, 2, generator=generator) * 20 + 5
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)  # [C, K, 4]
    keep = greedy_nms_mask(boxes, torch.ones(3, 60, dtype=torch.bool), 0.45)
    scores = np.tile(np.linspace(1, 0.1, 60), 3)  # best first within each class
    expected = nms(boxes.reshape(-1, 4).numpy(), scores, np.repeat(np.arange(3), 60), 0.45)
    assert sorted(keep.reshape(-1).nonzero().squeeze(1).tolist()) == sorted(expected.tolist())
    assert 0 < len(expected) < 180  # the case exercises suppression both ways


def test_invalid_boxes_neither_kept_nor_suppressing():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float32)
    valid = torch.tensor([False, True])
    assert greedy_nms_mask(boxes, valid, 0.45).tolist() == [False, True]


def test_postprocess_bounds_candidates_per_class_and_output_count():
    generator = torch.Generator().manual_seed(0)
    priors = torch.rand(500, 4, generator=generator) * 0.3 + 0.2
    logits = torch.zeros(1, 500, 3)  # every class scores 1/3 everywhere: all pass the threshold
    offsets = torch.zeros(1, 500, 4)
    config = PostprocessConfig(score_threshold=0.01, iou_threshold=0.45, pre_nms_topk=20, max_det=15)
    (dets,) = postprocess(offsets, logits, priors, BoxCoder(), config, input_size=100)
    assert len(dets) == 15  # 2 classes x 20 candidates leave more than 15 after NMS here
    assert set(dets.class_ids.tolist()) <= {0, 1}
    assert np.all(dets.scores[:-1] >= dets.scores[1:])
    assert dets.frame == "input" and dets.boxes.max() <= 100 * 0.5 * 2


def test_postprocess_score_threshold_is_strict_and_zero_survivors_give_empty_detections():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])
    logits = torch.zeros(2, 2, 3)  # every class scores exactly 1/3
    config = PostprocessConfig(score_threshold=1 / 3 + 1e-7)
    dets = postprocess(torch.zeros(2, 2, 4), logits, priors, BoxCoder(), config, input_size=10)
    assert [len(d) for d in dets] == [0, 0]
    assert dets[0].boxes.shape == (0, 4)


def test_postprocess_orders_ties_by_class_then_rank_as_onnx_topk():
    priors = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]])
    logits = torch.zeros(1, 2, 3)  # two classes, equal scores on two disjoint priors
    (dets,) = postprocess(torch.zeros(1, 2, 4), logits, priors, BoxCoder(), PostprocessConfig(), input_size=100)
    assert dets.class_ids.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(dets.boxes[0], [15, 15, 25, 25], atol=1e-4)
