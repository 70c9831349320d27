import pytest
import torch
from torch import nn

from scratchdet.export.fold_bn import fold_batchnorm, max_output_difference
from scratchdet.models.config import load_model_config
from scratchdet.models.ssd import SSD


def randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms, as after training."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.mark.parametrize("name", ["tiny", "ssd300_vgg16_bn", "ssd300_resnet18"])
def test_folded_model_has_no_batchnorm_and_same_outputs(name):
    model = SSD(load_model_config(name)).eval()
    randomise_batchnorm(model)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the input model must be left intact"
    size = model.config.input_size
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        scale = max(float(o.abs().max()) for o in model(images))
    # float32 re-association of conv and BN: relative 1e-4 of the output range.
    assert max_output_difference(model, folded, images) <= 1e-4 * scale


def test_batchnorm_without_a_preceding_conv_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="cannot fold: 2"):
        fold_batchnorm(model)
