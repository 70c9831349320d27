from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from scratchdet.cli import main
from scratchdet.models.boxes import pairwise_iou
from scratchdet.models.checkpoint import load_model, read_checkpoint
from scratchdet.models.config import PriorConfig
from scratchdet.models.contract import read_metadata
from scratchdet.models.priors import Priors
from scratchdet.models.ssd import SSD
from scratchdet.train.config import load_config
from scratchdet.train.data.records import DetectionSet, ImageRecord
from scratchdet.train.fit_priors import (
    best_prior_iou,
    fit_prior_config,
    kmeans_levels,
    pack,
    prior_fit,
    training_boxes,
    unpack,
)
from scratchdet.train.trainer import Trainer

PRIORS = PriorConfig(min_sizes=(10, 30, 60), max_sizes=(30, 60, 90), aspect_ratios=((2,), (2, 3), (2,)), steps=None)
FEATURES = [(12, 12), (6, 6), (3, 3)]  # a 96 input's maps (tiny_test in test_trainer.py)


def random_boxes(rng: np.random.Generator, count: int, size: tuple[float, float], spread: float = 0.1) -> np.ndarray:
    """`count` boxes [N, 4] of about `size` (w, h) at random places in a 96 x 96 image."""
    wh = np.array(size) * np.exp(rng.normal(0, spread, (count, 2)))
    corner = rng.uniform(0, 1, (count, 2)) * (96 - wh)
    return np.concatenate([corner, corner + wh], axis=1)


def test_best_prior_iou_equals_the_brute_force_maximum_over_every_prior():
    boxes = random_boxes(np.random.default_rng(0), 200, (20, 14), spread=0.8)
    priors = Priors(PRIORS).generate(96, FEATURES).double().numpy() * 96
    corners = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], axis=1)
    expected = pairwise_iou(boxes, corners).max(1)
    np.testing.assert_allclose(best_prior_iou(boxes, PRIORS, 96, FEATURES), expected, rtol=1e-9, atol=1e-12)


def test_kmeans_gives_the_smallest_boxes_the_first_level():
    rng = np.random.default_rng(1)
    groups = [random_boxes(rng, 50, size) for size in ((40, 40), (8, 8), (18, 18))]
    sizes = np.concatenate(groups)[:, 2:] - np.concatenate(groups)[:, :2]
    levels = kmeans_levels(sizes, 3)
    assert levels.tolist() == [2] * 50 + [0] * 50 + [1] * 50


def test_each_class_weighs_the_same_in_the_fit():
    boxes = np.array([[0, 0, 10, 10]] * 3 + [[0, 0, 50, 50]], dtype=np.float32)
    record = ImageRecord(1, Path("a.png"), 200, 100, boxes, np.array([0, 0, 0, 1]), np.zeros(4, bool))
    scaled, weights = training_boxes(DetectionSet(Path("."), "train", ["a", "b"], [record]), 100)
    np.testing.assert_allclose(scaled[-1], [0, 0, 25, 50])  # 200 x 100 image resized to 100 x 100
    np.testing.assert_allclose(weights, [1 / 6] * 3 + [1 / 2])


def test_pack_and_unpack_round_trip():
    params, ratio = pack(PRIORS)
    assert ratio.tolist() == [False, False, True, False, False, True, True, False, False, True]
    again = unpack(params, PRIORS)
    np.testing.assert_allclose(np.concatenate([again.min_sizes, again.max_sizes]), [10, 30, 60, 30, 60, 90])
    assert [len(r) for r in again.aspect_ratios] == [1, 2, 1]


def test_fitted_priors_cover_the_boxes_better_and_keep_the_shape_counts():
    rng = np.random.default_rng(2)
    boxes = np.concatenate(
        [random_boxes(rng, 300, (22, 16)), random_boxes(rng, 60, (7, 9)), random_boxes(rng, 40, (45, 38))]
    )
    weights = np.full(len(boxes), 1 / len(boxes))
    fitted = fit_prior_config(boxes, weights, PRIORS, 96, FEATURES)
    before, after = prior_fit(boxes, weights, PRIORS, 96, FEATURES), prior_fit(boxes, weights, fitted, 96, FEATURES)
    assert after.mean_iou > before.mean_iou + 0.02
    assert after.recall50 >= before.recall50
    assert Priors(fitted).num_anchors_per_location() == Priors(PRIORS).num_anchors_per_location()
    assert all(r >= 1 for ratios in fitted.aspect_ratios for r in ratios)


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory, synth_data):
    from tests.train.test_trainer import CONFIG

    folder = tmp_path_factory.mktemp("fit_priors")
    (folder / "tiny_test.yaml").write_text(CONFIG)
    model_config, train_config = load_config(folder / "tiny_test.yaml")
    short = replace(train_config, epochs=1, plots=False, fit_priors=True)
    plain = Trainer(model_config, replace(short, fit_priors=False), synth_data, folder / "plain")
    trainer = Trainer(model_config, short, synth_data, folder / "run")
    trainer.fit()
    return trainer, plain, model_config


def test_fitted_priors_train_and_ride_in_the_checkpoint(fitted_run):
    trainer, plain, configured = fitted_run
    assert trainer.model_config.priors != configured.priors
    stored = read_checkpoint(trainer.out / "last.pt")["model_config"]["priors"]
    assert stored["min_sizes"] == list(trainer.model_config.priors.min_sizes)
    model, _ = load_model(trainer.out / "last.pt")
    assert torch.equal(model.priors, SSD(trainer.model_config).priors)
    assert torch.equal(trainer.model.priors, model.priors)  # trained with the priors it was saved with
    assert not torch.equal(model.priors, plain.model.priors)


def test_the_fit_does_not_change_the_initial_weights(synth_data, tmp_path):
    from tests.train.test_trainer import CONFIG

    (tmp_path / "c.yaml").write_text(CONFIG)
    model_config, train_config = load_config(tmp_path / "c.yaml")
    weights = []
    for fit in (False, True):
        trainer = Trainer(model_config, replace(train_config, fit_priors=fit), synth_data, tmp_path / str(fit))
        weights.append(trainer.model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_export_of_a_fitted_checkpoint_carries_the_fitted_priors(fitted_run, tmp_path):
    trainer, _, _ = fitted_run
    out = tmp_path / "model.onnx"
    assert main(["export", "--model", str(trainer.out / "last.pt"), "--out", str(out)]) == 0
    metadata = read_metadata(onnx.load(str(out)))
    assert metadata["model_config"]["priors"] == read_checkpoint(trainer.out / "last.pt")["model_config"]["priors"]
