import math
from dataclasses import replace

import pytest
import torch

from scratchdet.models.checkpoint import load_model, read_checkpoint
from scratchdet.train.config import load_config
from scratchdet.train.ema import ModelEMA
from scratchdet.train.trainer import Trainer


def test_ema_averages_weights_and_bn_statistics_with_a_ramped_decay():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.BatchNorm1d(2))
    torch.nn.init.zeros_(model[0].weight)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    torch.nn.init.ones_(model[0].weight)
    model[1].running_mean.fill_(2.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    decay = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 1 - decay))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 2 * (1 - decay)))
    assert ema.module[1].num_batches_tracked.item() == 7  # counters are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert model[0].weight.requires_grad  # the training model is untouched


@pytest.mark.parametrize(("decay", "tau", "message"), [(1.0, 10, "ema_decay"), (0.9, 0, "ema_tau")])
def test_ema_refuses_bad_settings(decay, tau, message):
    with pytest.raises(ValueError, match=message):
        ModelEMA(torch.nn.Linear(1, 1), decay, tau)


@pytest.mark.slow
def test_training_with_ema_saves_the_average_as_the_model_and_resumes(tmp_path, synth_data):
    model_config, train_config = load_config("tiny")
    train_config = replace(train_config, epochs=2, batch_size=8, eval_every=1, ema_decay=0.9, ema_tau=2.0,
                           background_prior=0.99, warmup_clip=5.0)
    first = Trainer(model_config, replace(train_config, epochs=1), synth_data, tmp_path / "run")
    first.fit()
    saved = read_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["ema_updates"] == first.iteration > 0
    for name, tensor in first.ema.module.state_dict().items():
        assert torch.equal(saved["model"][name], tensor)
        assert torch.equal(saved["train_model"][name], first.model.state_dict()[name])
    assert any(not torch.equal(saved["model"][n], saved["train_model"][n]) for n in saved["model"])
    model, _ = load_model(tmp_path / "run" / "last.pt")  # what val/export read: the average
    assert torch.equal(model.state_dict()["head.classification.convs.0.1.bias"],
                       saved["model"]["head.classification.convs.0.1.bias"])
    resumed = Trainer(model_config, train_config, synth_data, tmp_path / "run")
    resumed.resume()
    assert resumed.ema.updates == first.iteration
    resumed.fit()
    assert read_checkpoint(tmp_path / "run" / "last.pt")["ema_updates"] == 2 * first.iteration
