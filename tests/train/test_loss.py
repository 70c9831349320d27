import torch

from scratchdet.models.box_coder import BoxCoder
from scratchdet.train.loss import MultiBoxLoss, match

PRIORS = torch.tensor([  # cx, cy, w, h
    [0.25, 0.25, 0.5, 0.5],
    [0.75, 0.25, 0.5, 0.5],
    [0.25, 0.75, 0.5, 0.5],
    [0.75, 0.75, 0.5, 0.5],
    [0.5, 0.5, 0.9, 0.9],
])


def test_match_takes_threshold_priors_and_each_boxs_best_prior():
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.55, 0.55, 0.8, 0.8]])  # second overlaps nothing >= 0.5
    matched, labels = match(boxes, torch.tensor([0, 1]), PRIORS)  # 0-based in, background 0 out
    assert labels.tolist() == [1, 0, 0, 2, 0]  # prior 3 is box 2's best prior although IoU < 0.5
    torch.testing.assert_close(matched[3], boxes[1])


def test_match_without_boxes_is_all_background():
    _, labels = match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), PRIORS)
    assert labels.tolist() == [0] * 5


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    loss = MultiBoxLoss(PRIORS, BoxCoder())
    ce = torch.tensor([[0.1, 5.0, 4.0, 3.0, 2.0]])
    positive = torch.tensor([[True, False, False, False, False]])
    assert loss._hard_negatives(ce, positive).tolist() == [[False, True, True, True, False]]


def test_loss_is_zero_for_perfect_predictions_and_positive_otherwise():
    criterion = MultiBoxLoss(PRIORS, BoxCoder())
    boxes, labels = [torch.tensor([[0.0, 0.0, 0.5, 0.5]])], [torch.tensor([0])]
    box_targets, class_targets = criterion.targets(boxes, labels)
    perfect_logits = torch.nn.functional.one_hot(class_targets, 3).float() * 50
    parts = criterion(box_targets, perfect_logits, boxes, labels)
    assert parts.num_positives == 1
    assert parts.total.item() < 1e-6
    wrong = criterion(box_targets + 1, torch.zeros(1, 5, 3), boxes, labels)
    assert wrong.box.item() > 0.5 and wrong.cls.item() > 1.0
