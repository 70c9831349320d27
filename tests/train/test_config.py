import pytest

from scratchdet.cli import main
from scratchdet.train.config import RECIPES, TrainConfig, apply_recipe, load_config


def test_paper_recipe_restores_ssd_loss_and_drops_the_take_off_aids():
    _, shipped = load_config("bccd_cpu")
    paper = apply_recipe(shipped, "paper")
    assert (paper.box_loss, paper.class_loss, paper.assigner, paper.schedule) == ("smooth_l1", "hard_negative",
                                                                                  "max_iou", "step")
    assert paper.ema_decay is None and paper.background_prior is None and paper.warmup_clip is None
    assert paper.expand_max == 4.0
    assert (paper.epochs, paper.batch_size, paper.lr) == (shipped.epochs, shipped.batch_size, shipped.lr)


def test_paper_recipe_names_only_existing_fields():
    fields = set(TrainConfig.__dataclass_fields__)
    for name, values in RECIPES.items():
        assert set(values) <= fields, f"recipe {name}: unknown fields {set(values) - fields}"


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="recipe 'yolo': unknown; known recipes: paper"):
        apply_recipe(TrainConfig(), "yolo")


def test_train_recipe_flag_applies_the_named_recipe(monkeypatch, tmp_path):
    seen = {}

    class FakeTrainer:
        rank, best_map = 0, 0.5

        def __init__(self, model_config, train_config, data, out):
            seen["config"] = train_config

        def fit(self):
            return tmp_path

    monkeypatch.setattr("scratchdet.train.cli.Trainer", FakeTrainer)
    assert main(["train", "--config", "tiny", "--data", "d", "--out", str(tmp_path), "--recipe", "paper"]) == 0
    assert seen["config"] == apply_recipe(load_config("tiny")[1], "paper")


def test_paper_recipe_turns_off_fitted_priors_and_mosaic():
    paper = apply_recipe(TrainConfig(fit_priors=True, mosaic=1.0), "paper")
    assert paper.fit_priors is False and paper.mosaic == 0.0


@pytest.mark.parametrize("mosaic", [-0.1, 1.5])
def test_mosaic_is_a_probability(mosaic):
    with pytest.raises(ValueError, match=f"train.mosaic {mosaic}: a probability, between 0 and 1"):
        TrainConfig(mosaic=mosaic)
