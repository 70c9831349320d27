import math

import pytest
import torch

from scratchdet.models.config import PriorConfig, load_model_config
from scratchdet.models.priors import Priors
from scratchdet.models.ssd import SSD


def test_one_cell_priors_match_hand_computed_values():
    config = PriorConfig(min_sizes=(30,), max_sizes=(60,), aspect_ratios=((2,),), steps=None)
    priors = Priors(config).generate(input_size=100, feature_sizes=[(1, 1)])
    r = math.sqrt(2)
    expected = torch.tensor([
        [0.5, 0.5, 0.30, 0.30],
        [0.5, 0.5, math.sqrt(30 * 60) / 100, math.sqrt(30 * 60) / 100],
        [0.5, 0.5, 0.30 * r, 0.30 / r],
        [0.5, 0.5, 0.30 / r, 0.30 * r],
    ])
    torch.testing.assert_close(priors, expected, atol=1e-6, rtol=0)


def test_centres_follow_rows_then_columns_with_configured_step():
    config = PriorConfig(min_sizes=(10,), max_sizes=(20,), aspect_ratios=((),), steps=(8,))
    priors = Priors(config).generate(input_size=16, feature_sizes=[(2, 2)])
    centres = priors[::2, :2]  # two boxes per cell
    torch.testing.assert_close(centres, torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]))


def test_paper_model_has_8732_priors_on_maps_38_19_10_5_3_1():
    model = SSD(load_model_config("ssd300_root_resnet34"))
    assert model.feature_sizes == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert model.priors.shape == (8732, 4)


def test_prior_config_with_wrong_level_count_is_rejected():
    with pytest.raises(ValueError, match="one entry per level"):
        Priors(PriorConfig(min_sizes=(1, 2), max_sizes=(3,), aspect_ratios=((2,),), steps=None))
