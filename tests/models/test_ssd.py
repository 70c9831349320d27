import pytest
import torch

from scratchdet.models.config import CONFIG_DIR, load_model_config
from scratchdet.models.info import model_info
from scratchdet.models.ssd import SSD

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_builds_and_its_outputs_match_its_priors(name):
    model = SSD(load_model_config(name)).eval()
    size = model.config.input_size
    with torch.no_grad():
        offsets, logits = model(torch.rand(2, 3, size, size) * 255)
    priors = model.priors.shape[0]
    assert offsets.shape == (2, priors, 4)
    assert logits.shape == (2, priors, model.config.num_classes)


def test_paper_model_size_matches_the_reference():
    info = model_info(SSD(load_model_config("ssd300_root_resnet34")))
    assert info.parameters == pytest.approx(24.6e6, rel=0.02)
    assert info.gflops == pytest.approx(66.6, rel=0.01)


def test_bn_switches_remove_batchnorm_from_backbone_and_head():
    from dataclasses import replace

    config = replace(load_model_config("tiny"), bn_backbone=False, bn_head=False)
    model = SSD(config)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    config = replace(config, bn_head=True)
    head_bns = [m for m in SSD(config).head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(head_bns) == 2 * len(config.priors.min_sizes)


def test_input_too_small_for_the_layers_is_a_clear_error():
    from dataclasses import replace

    config = replace(load_model_config("ssd300_root_resnet34"), input_size=64)
    with pytest.raises(ValueError, match="too small"):
        SSD(config)
