import math
from dataclasses import replace

import pytest
import torch

from scratchdet.models.box_coder import BoxCoder
from scratchdet.train.config import TrainConfig
from scratchdet.train.loss import MultiBoxLoss, iou_loss, softmax_focal_loss
from tests.train.priors import PRIORS


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    loss = MultiBoxLoss(PRIORS, BoxCoder())
    ce = torch.tensor([[0.1, 5.0, 4.0, 3.0, 2.0]])
    positive = torch.tensor([[True, False, False, False, False]])
    assert loss._hard_negatives(ce, positive).tolist() == [[False, True, True, True, False]]


RECIPES = [TrainConfig(), TrainConfig(box_loss="giou", class_loss="focal", assigner="atss", atss_topk=2),
           TrainConfig(box_loss="ciou"), TrainConfig(box_loss="diou", box_loss_weight=2.0)]


@pytest.mark.parametrize("config", RECIPES, ids=lambda c: f"{c.box_loss}-{c.class_loss}-{c.assigner}")
def test_loss_is_zero_for_perfect_predictions_and_positive_otherwise(config):
    criterion = MultiBoxLoss(PRIORS, BoxCoder(), config, level_sizes=[4, 1])
    boxes, labels = [torch.tensor([[0.0, 0.0, 0.5, 0.5]])], [torch.tensor([0])]
    box_targets, class_targets = criterion.targets(boxes, labels)
    perfect_logits = torch.nn.functional.one_hot(class_targets, 3).float() * 50
    parts = criterion(box_targets, perfect_logits, boxes, labels)
    assert parts.num_positives == 1
    assert parts.total.item() < 1e-5
    wrong = criterion(box_targets + 1, torch.zeros(1, 5, 3), boxes, labels)
    assert wrong.box.item() > 0.1 and wrong.cls.item() > 0.1


def test_iou_losses_on_hand_made_boxes():
    predicted = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    # Box 0: IoU 1/7, enclosing 3x3 = 9, union 7: GIoU loss 1 - 1/7 + 2/9. Centres 1 and 2 apart on both axes:
    # squared distance 2 over the enclosing diagonal 18. Box 1: disjoint, enclosing 3x1 (area 3, union 2).
    giou = iou_loss(predicted, target, "giou")
    torch.testing.assert_close(giou, torch.tensor([1 - 1 / 7 + 2 / 9, 1 + 1 / 3]), atol=1e-5, rtol=0)
    diou = iou_loss(predicted, target, "diou")
    torch.testing.assert_close(diou, torch.tensor([1 - 1 / 7 + 2 / 18, 1 + 4 / 10]), atol=1e-5, rtol=0)
    # Same aspect ratios: CIoU's aspect term is 0, so it equals DIoU here; a 2:1 box against a square adds it.
    torch.testing.assert_close(iou_loss(predicted, target, "ciou"), diou)
    wide, square = torch.tensor([[0.0, 0.0, 2.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    iou, diagonal = 0.5, 4 + 1
    expected = 1 - iou + 0.25 / diagonal + v / (1 - iou + v) * v
    torch.testing.assert_close(iou_loss(wide, square, "ciou"), torch.tensor([expected]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="choose giou, diou or ciou"):
        iou_loss(wide, square, "iou")


def test_iou_loss_gradient_moves_a_box_towards_its_target():
    predicted = torch.tensor([[0.0, 0.0, 1.0, 1.0]], requires_grad=True)
    iou_loss(predicted, torch.tensor([[2.0, 0.0, 3.0, 1.0]]), "giou").sum().backward()
    assert predicted.grad is not None and predicted.grad[0, 2] < 0  # growing x2 lowers the loss


def test_focal_loss_matches_its_formula_and_down_weights_easy_priors():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1])
    p = torch.softmax(logits, dim=-1)
    expected = torch.stack([-(0.75) * (1 - p[0, 0]) ** 2 * p[0, 0].log(), -(0.25) * (1 - p[1, 1]) ** 2 * p[1, 1].log()])
    focal = softmax_focal_loss(logits, targets, gamma=2.0, alpha=0.25)
    torch.testing.assert_close(focal, expected)
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(softmax_focal_loss(logits, targets, gamma=0.0, alpha=0.5), 0.5 * ce)
    assert focal[0] / ce[0] < 0.1  # an easy background prior (p 0.79) counts under a tenth of its CE


def test_atss_needs_the_level_sizes():
    with pytest.raises(ValueError, match="level_sizes"):
        MultiBoxLoss(PRIORS, BoxCoder(), replace(TrainConfig(), assigner="atss"))


def test_config_rejects_unknown_loss_names():
    with pytest.raises(ValueError, match="train.box_loss 'l2': choose one of smooth_l1, giou, diou, ciou"):
        TrainConfig(box_loss="l2")
