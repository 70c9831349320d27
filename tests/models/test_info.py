"""`scratchdet info`: the figures it prints for a config are those of the model it builds, and the table in
docs/train.md#shipped-configs."""

import re

import pytest
import torch

from scratchdet.cli import main
from scratchdet.models.config import load_model_config
from scratchdet.models.ssd import SSD


def _info(capsys, config: str) -> dict[str, str]:
    assert main(["info", "--config", config]) == 0
    return dict(re.match(r"(\w[\w ]*?)\s{2,}(.*)", line).groups() for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("config, parameters, gflops, maps, priors", [
    ("tiny", "0.87 M", "0.46", "16x16, 8x8, 4x4, 2x2", "1520"),
    # The paper's ScratchDet300: SSD300's six maps and 8732 default boxes (SSD paper, Table 2 / section 2.2)
    ("ssd300_root_resnet34", "24.43 M", "66.61", "38x38, 19x19, 10x10, 5x5, 3x3, 1x1", "8732"),
])
def test_info_prints_parameters_gflops_feature_maps_and_priors(capsys, config, parameters, gflops, maps, priors):
    info = _info(capsys, config)
    assert info["config"].startswith(f"{config} (root_resnet")
    assert info["parameters"] == parameters  # docs/train.md#shipped-configs
    assert info["GFLOPs"].startswith(f"{gflops} (network only, batch 1")
    assert info["feature maps"] == maps
    assert info["priors"] == priors
    model = SSD(load_model_config(config)).eval()
    with torch.no_grad():
        offsets, logits = model(torch.zeros(1, 3, model.config.input_size, model.config.input_size))
    assert offsets.shape[1] == logits.shape[1] == int(priors)  # the head predicts one box per prior


def test_info_of_an_unknown_config_is_a_one_line_error(caplog):
    assert main(["info", "--config", "no_such_config"]) == 1
    assert "no_such_config" in caplog.text
