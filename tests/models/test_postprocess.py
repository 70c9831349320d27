import torch
from scratchdet.models.box_coder import BoxCoder
from scratchdet.models.postprocess import NMSConfig, box_iou, nms, postprocess


def test_box_iou_of_half_overlapping_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 0.0]]))


def test_nms_keeps_best_box_and_non_overlapping_ones():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3])
    assert nms(boxes, scores, 0.45).tolist() == [1, 2]


def test_postprocess_bounds_candidates_per_class_and_output_count():
    generator = torch.Generator().manual_seed(0)
    priors = torch.rand(500, 4, generator=generator) * 0.3 + 0.2
    logits = torch.zeros(1, 500, 3)  # every class scores 1/3 everywhere: all pass the threshold
    offsets = torch.zeros(1, 500, 4)
    config = NMSConfig(score_threshold=0.01, iou_threshold=0.45, pre_nms_topk=20, max_det=15)
    (dets,) = postprocess(offsets, logits, priors, BoxCoder(), config)
    assert len(dets.scores) <= 15
    assert set(dets.labels.tolist()) <= {1, 2}
    assert torch.all(dets.scores[:-1] >= dets.scores[1:])
