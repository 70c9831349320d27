import pytest
import torch

from scratchdet.train.assign import atss_match, match
from tests.train.priors import PRIORS


def test_match_takes_threshold_priors_and_each_boxs_best_prior():
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.55, 0.55, 0.8, 0.8]])  # second overlaps nothing >= 0.5
    matched, labels = match(boxes, torch.tensor([0, 1]), PRIORS)  # 0-based in, background 0 out
    assert labels.tolist() == [1, 0, 0, 2, 0]  # prior 3 is box 2's best prior although IoU < 0.5
    torch.testing.assert_close(matched[3], boxes[1])


@pytest.mark.parametrize("assign", [match, lambda b, lab, p: atss_match(b, lab, p, [4, 1])])
def test_no_boxes_is_all_background(assign):
    _, labels = assign(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), PRIORS)
    assert labels.tolist() == [0] * 5


def test_atss_threshold_is_mean_plus_std_of_the_nearest_candidates():
    # Level 0: the four quadrant priors; level 1: the large centred prior. Candidates: the 2 nearest per level.
    box = torch.tensor([[0.0, 0.0, 0.6, 0.6]])
    matched, labels = atss_match(box, torch.tensor([2]), PRIORS, [4, 1], topk=2)
    # Candidates: priors 0 and 1 (or 2; equidistant, topk keeps the lower index) and prior 4.
    # IoUs: prior 0 0.25/0.36 = 0.694, prior 1 (x 0.5-1.0 vs 0-0.6) 0.05/0.56 = 0.089, prior 4 0.3025/0.8675
    # = 0.349. Mean 0.377 + std 0.304 = 0.681: only prior 0 passes, and its centre lies inside the box.
    assert labels.tolist() == [3, 0, 0, 0, 0]
    torch.testing.assert_close(matched[0], box[0])


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_atss_gives_a_shared_prior_to_the_box_it_overlaps_most(order):
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.45, 0.45]])[order]
    labels = torch.tensor([0, 1])[order]
    for single in range(2):  # alone, each box takes prior 0
        assert atss_match(boxes[single : single + 1], labels[single : single + 1], PRIORS, [4, 1], topk=2)[1][0] > 0
    _, matched_labels = atss_match(boxes, labels, PRIORS, [4, 1], topk=2)
    assert matched_labels.tolist() == [1, 0, 0, 0, 0]  # the exact box (IoU 1 against 0.81) keeps it


def test_atss_with_one_candidate_per_level_finds_no_positive():
    # Two candidates: mean + std of two values always exceeds the larger one (ATSS needs topk well above 1).
    _, labels = atss_match(torch.tensor([[0.0, 0.0, 0.5, 0.5]]), torch.tensor([0]), PRIORS, [4, 1], topk=1)
    assert labels.tolist() == [0] * 5


def test_atss_rejects_a_candidate_whose_centre_is_outside_the_box():
    box = torch.tensor([[0.3, 0.3, 0.45, 0.45]])  # nearest prior 0 has its centre (0.25, 0.25) outside
    _, labels = atss_match(box, torch.tensor([0]), PRIORS, [4, 1], topk=1)
    assert labels.tolist() == [0] * 5


def test_atss_checks_the_level_sizes():
    with pytest.raises(ValueError, match="sum to 4, but there are 5 priors"):
        atss_match(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), PRIORS, [3, 1])
