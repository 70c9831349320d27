import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scratchdet.models.checkpoint import CheckpointError, load_model, read_checkpoint
from scratchdet.models.config import load_model_config
from scratchdet.train.config import TrainConfig, load_config
from scratchdet.train.schedule import lr_factor, parameter_groups
from scratchdet.train.trainer import NonFiniteLossError, Trainer
from tests.train.nan_loss import make_losses_nan

CONFIG = """model:
  name: tiny_test
  backbone: root_resnet18
  input_size: 96
  width: 0.25
  extra_blocks: 1
  last_conv: false
  priors:
    min_sizes: [10, 30, 60]
    max_sizes: [30, 60, 90]
    aspect_ratios: [[2], [2, 3], [2]]
    steps: null
train:
  epochs: 3
  batch_size: 8
  lr: 0.02
  warmup_iters: 5
  schedule: cosine
  workers: 0
"""


def scratchdet(*args: str) -> list[str]:
    return [sys.executable, "-m", "scratchdet", *args]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny_test.yaml"
    path.write_text(CONFIG)
    return path


def test_lr_schedule_warms_up_then_steps_down():
    config = TrainConfig(warmup_iters=10, warmup_ratio=0.25, schedule="step", milestones=(0.5, 0.75))
    factors = [lr_factor(config, i, 100) for i in (0, 5, 10, 49, 50, 75, 99)]
    assert factors == pytest.approx([0.25, 0.625, 1.0, 1.0, 0.1, 0.01, 0.01])
    cosine = replace(config, schedule="cosine")
    assert lr_factor(cosine, 10, 100) == pytest.approx(1.0)
    assert lr_factor(cosine, 100, 100) == pytest.approx(0.0)


def test_lr_scales_linearly_with_batch():
    assert TrainConfig(base_lr=0.05, base_batch=128, batch_size=32).learning_rate() == pytest.approx(0.0125)
    assert TrainConfig(lr=0.3).learning_rate() == 0.3


def test_weight_decay_skips_batchnorm_and_biases():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 5e-4)
    assert [p.ndim for p in decay["params"]] == [4, 2]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4


def _trainer_with_nan_losses(config_file, synth_data, run: Path, max_nonfinite: int) -> Trainer:
    """A Trainer whose every loss is NaN (the real loss computed, then multiplied by NaN)."""
    model_config, train_config = load_config(config_file)
    return make_losses_nan(Trainer(model_config, replace(train_config, max_nonfinite=max_nonfinite), synth_data, run))


def test_non_finite_losses_stop_training_with_a_clear_error(tmp_path, config_file, synth_data):
    trainer = _trainer_with_nan_losses(config_file, synth_data, tmp_path / "run", max_nonfinite=2)
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite losses"):
        trainer.fit()


def test_non_finite_guard_counts_across_epochs(tmp_path, config_file, synth_data):
    # Before: the count restarted every epoch, so with fewer steps per epoch (6 here) than max_nonfinite (10)
    # a diverged run trained to the end with exit 0.
    trainer = _trainer_with_nan_losses(config_file, synth_data, tmp_path / "run", max_nonfinite=10)
    assert len(trainer.loader) < 10
    with pytest.raises(NonFiniteLossError, match="10 consecutive non-finite losses at iteration 10"):
        trainer.fit()


def test_weights_that_turned_nan_are_never_saved(tmp_path, config_file, synth_data):
    # Before: best.pt and last.pt were written holding NaN weights (mAP 0 still beat the initial -1).
    model_config, train_config = load_config(config_file)
    trainer = Trainer(model_config, replace(train_config, epochs=1), synth_data, tmp_path / "run")
    real_step = trainer.optimizer.step

    def diverging_step(*args, **kwargs):
        result = real_step(*args, **kwargs)
        with torch.no_grad():
            next(trainer.model.parameters()).fill_(float("inf"))
        return result

    trainer.optimizer.step = diverging_step
    with pytest.raises(NonFiniteLossError, match=r"run: after epoch 1 .* weight tensor\(s\) hold NaN or inf"):
        trainer.fit()
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "last.pt").exists()


def _train(config_file, data, out, *extra):
    from scratchdet.cli import main

    return main(["train", "--config", str(config_file), "--data", str(data), "--out", str(out), "--epochs", "1",
                 *extra])


def test_a_folder_holding_another_run_is_refused_unless_asked(tmp_path, config_file, synth_data, caplog):
    # Before: a new run overwrote best.pt/last.pt, appended to metrics.jsonl and left the old export/ in place.
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    (run / "export" / "model.onnx").write_bytes(b"old model")
    (run / "metrics.jsonl").write_text('{"type": "epoch", "epoch": 0, "old": true}\n')
    (run / "last.pt").write_bytes(b"old weights")
    assert _train(config_file, synth_data, run) == 1
    assert "run: holds another run (last.pt, metrics.jsonl, export); use --resume" in caplog.text
    assert (run / "last.pt").read_bytes() == b"old weights"
    assert _train(config_file, synth_data, run, "--exist-ok") == 0
    assert not (run / "export").exists()
    assert not any(r.get("old") for r in read_metrics(run))
    assert read_checkpoint(run / "last.pt")["epoch"] == 1  # epochs are counted from 1


def test_resume_with_a_dataset_of_other_classes_is_refused(tmp_path, config_file, synth_data):
    # Before: training continued and the checkpoint's class names switched to the new dataset's.
    import shutil

    model_config, train_config = load_config(config_file)
    run = tmp_path / "run"
    Trainer(model_config, replace(train_config, epochs=1), synth_data, run).fit()
    renamed = tmp_path / "renamed"
    shutil.copytree(synth_data, renamed)
    coco = json.loads((renamed / "annotations.json").read_text())
    coco["categories"][0]["name"] = "ellipse"
    (renamed / "annotations.json").write_text(json.dumps(coco))
    trainer = Trainer(model_config, replace(train_config, epochs=2), renamed, run)
    with pytest.raises(CheckpointError, match=r"last.pt: cannot resume, the run was trained on classes "
                                              r"\['circle', 'square', 'triangle'\] but .*renamed has \['ellipse'"):
        trainer.resume()


def test_checkpoint_of_another_config_and_non_checkpoints_are_refused(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="does not match config 'ssd300_root_resnet34'.*backbone"):
        load_model(tiny_checkpoint, expected=load_model_config("ssd300_root_resnet34"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a checkpoint written by torch.save"):
        read_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a ScratchDet checkpoint"):
        read_checkpoint(foreign)


def test_checkpoint_with_code_is_refused_not_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "scratchdet-checkpoint", "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable checkpoint"):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_where_the_straight_run_ends(tmp_path, config_file, synth_data):
    """kill -9 mid-epoch, --resume: the same steps, losses and weights as a run that was never killed.

    Up to float noise: on CI's CPU the resumed process ended with weights equal to 4 decimals but not bit-identical
    (bit-identical on others). A state the checkpoint fails to carry moves far more: dropping the optimizer's
    momentum on resume fails the weight check."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(scratchdet("train", "--config", str(config_file), "--data", str(synth_data), "--out",
                              str(straight)), check=True, capture_output=True)
    process = subprocess.Popen(scratchdet("train", "--config", str(config_file), "--data", str(synth_data),
                                          "--out", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once epoch 2 has started its steps
        metrics = killed / "metrics.jsonl"
        if metrics.is_file() and any(r["type"] == "step" and r["epoch"] == 2 for r in read_metrics(killed)):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert read_checkpoint(killed / "last.pt")["epoch"] == 1, "the kill came too late to be mid-epoch"
    subprocess.run(scratchdet("train", "--config", str(config_file), "--data", str(synth_data), "--out",
                              str(killed), "--resume"), check=True, capture_output=True)
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(killed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3  # epochs are counted from 1
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor.double(), b["model"][name].double(), rtol=1e-3, atol=1e-4), (
            f"{name} differs after resume")

    def steps(run):
        return [(r["iteration"], r["loss"]) for r in read_metrics(run) if r["type"] == "step"]

    before, after = steps(straight), steps(killed)
    assert [i for i, _ in after] == [i for i, _ in before]  # the same steps, none repeated or skipped
    assert [loss for _, loss in after] == pytest.approx([loss for _, loss in before], rel=1e-3)


@pytest.mark.parametrize("failing", ["__init__", "fit"])
def test_a_failing_run_destroys_its_process_group(failing, tmp_path, config_file, synth_data, monkeypatch, caplog):
    # A DDP rank that exits with its gloo group alive can abort at exit (SIGABRT, "terminate called without an
    # active exception"), and torchrun then reports the signal instead of the rank's own error.
    from scratchdet.train import cli, device

    def fails(*args, **kwargs):
        raise RuntimeError("the rank's own error")

    destroyed, left = [], []
    monkeypatch.setattr(cli, "end_distributed", lambda: destroyed.append(True) or True)
    monkeypatch.setattr(device, "leave_rank", left.append)  # then it ends the process, skipping finalisation
    monkeypatch.setattr(Trainer, failing, fails)
    assert _train(config_file, synth_data, tmp_path / "run") == 1
    assert "the rank's own error" in caplog.text and destroyed == [True] and left == [1]


@pytest.mark.slow
def test_torchrun_two_ranks_train_and_end_identical(tmp_path, config_file, synth_data):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "scratchdet", "train", "--config", str(config_file), "--data", str(synth_data), "--out", str(out),
               "--epochs", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (ranks,) = [r for r in read_metrics(out) if r["type"] == "ranks"]
    assert len(ranks["param_sha256"]) == 2
    assert ranks["param_sha256"][0] == ranks["param_sha256"][1]
    steps = [r for r in read_metrics(out) if r["type"] == "step"]
    assert len(steps) == 48 // 8  # each rank takes half of each global batch of 8


def test_atss_giou_focal_recipe_trains_and_epochs_record_their_cpu_time(tmp_path, config_file, synth_data):
    model_config, train_config = load_config(config_file)
    recipe = replace(train_config, epochs=2, assigner="atss", box_loss="giou", class_loss="focal", eval_every=2)
    Trainer(model_config, recipe, synth_data, tmp_path / "run").fit()
    records = read_metrics(tmp_path / "run")
    steps = [r for r in records if r["type"] == "step"]
    assert all(r["positives"] > 0 for r in steps)  # ATSS found positives in every batch (level sizes wired)
    assert steps[-1]["loss"] < steps[0]["loss"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert all(r["cpu_user_s"] > 0 and r["cpu_sys_s"] >= 0 for r in epochs)
    assert epochs[-1]["map50"] >= 0
