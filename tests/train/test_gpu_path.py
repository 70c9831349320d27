"""The CUDA side of the trainer, checked on CPU: resume into an enabled GradScaler, fp16
overflow steps kept out of the diagnostics, CUDA RNG state in checkpoints, the DDP timeout, the GPU feeding
and bf16 autocast. CUDA is stood in for by a CPU GradScaler and monkeypatched torch.cuda functions."""

import json
import shutil
from dataclasses import replace
from datetime import timedelta

import pytest
import torch

from scratchdet.models.checkpoint import read_checkpoint, save_checkpoint
from scratchdet.train import device as device_module
from scratchdet.train.config import TrainConfig, load_config
from scratchdet.train.device import amp_mode, configure_backends, loader_workers, setup_distributed
from scratchdet.train.diagnostics import GradientMonitor
from scratchdet.train.trainer import Trainer
from tests.train.nan_loss import make_losses_nan
from tests.train.test_trainer import CONFIG


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny_test.yaml"
    path.write_text(CONFIG)
    model_config, train_config = load_config(path)
    return model_config, replace(train_config, epochs=1)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, configs, synth_data):
    """One epoch trained on CPU with AMP off: its last.pt holds an empty GradScaler state."""
    run = tmp_path_factory.mktemp("cpu_run") / "run"
    Trainer(*configs, synth_data, run).fit()
    return run


def strict_json(line: str) -> dict:
    """json.loads refusing the NaN/Infinity literals Python's json writes by default (not JSON)."""
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant} in {line!r}")
    return json.loads(line, parse_constant=refuse)


def test_amp_off_checkpoint_resumes_into_an_enabled_scaler(tmp_path, configs, synth_data, cpu_run, caplog):
    # Before: GradScaler.load_state_dict raised "The source state dict is empty" (a CPU run resumed on a GPU).
    assert read_checkpoint(cpu_run / "last.pt")["scaler"] == {}
    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)
    model_config, train_config = configs
    trainer = Trainer(model_config, replace(train_config, epochs=2), synth_data, run)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)  # what a CUDA host builds for amp: fp16
    caplog.set_level("INFO")
    trainer.resume()
    assert trainer.start_epoch == 1 and trainer.scaler.get_scale() == 65536.0
    assert "no GradScaler state (saved with fp16 AMP off): the scaler starts at scale 65536" in caplog.text
    # a checkpoint that has a scaler state still restores it
    payload = read_checkpoint(run / "last.pt")
    payload["scaler"] = torch.amp.GradScaler("cpu", init_scale=1024.0).state_dict()
    save_checkpoint(run / "last.pt", {k: v for k, v in payload.items() if not k.startswith("format")})
    trainer.resume()
    assert trainer.scaler.get_scale() == 1024.0


def test_monitor_ignores_non_finite_norms():
    # Before: one inf made the fluctuation NaN for the next `window` steps.
    monitor = GradientMonitor(window=50)
    monitor.update(1.0)
    before = monitor.update(3.0)
    assert before == pytest.approx(0.5)
    assert monitor.update(float("inf")) == pytest.approx(0.5) and monitor.update(float("nan")) == pytest.approx(0.5)
    assert monitor.state() == [1.0, 3.0]
    assert monitor.update(2.0) == pytest.approx(torch.tensor([1.0, 3.0, 2.0]).std(unbiased=False).item() / 2.0)
    assert GradientMonitor(50, [1.0, float("inf"), 3.0]).state() == [1.0, 3.0]


def test_fp16_overflow_step_is_recorded_as_skipped_and_metrics_stay_json(tmp_path, configs, synth_data):
    # Before: the overflowed step logged grad_norm inf and NaN fluctuation; metrics.jsonl got Infinity/NaN.
    run = tmp_path / "run"
    trainer = Trainer(*configs, synth_data, run)
    # a scale that overflows the first step, then backs off to 1e8: the scaler's own skip-and-lower path
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1e38, backoff_factor=1e-30)
    trainer.fit()
    records = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (skipped,) = [r for r in records if r["type"] == "skipped"]
    assert skipped["reason"] == "fp16 overflow" and skipped["iteration"] == 1
    assert skipped["loss_scale"] == pytest.approx(1e8, rel=1e-6)
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == len(trainer.loader) - 1
    assert all(0 < s["grad_norm"] < float("inf") and 0 <= s["fluctuation"] < 10 for s in steps)
    assert all(v < float("inf") for v in trainer.monitor.state())


def test_epoch_of_only_skipped_steps_writes_null_loss(tmp_path, configs, synth_data):
    # Before: the epoch's train_loss was NaN, written to metrics.jsonl as the literal NaN (not JSON).
    run = tmp_path / "run"
    trainer = make_losses_nan(Trainer(*configs, synth_data, run))
    trainer.fit()
    records = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in records if r["type"] == "skipped"] == ["loss"] * len(trainer.loader)
    (epoch,) = [r for r in records if r["type"] == "epoch"]
    assert epoch["train_loss"] is None
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        trainer.log_metrics({"type": "epoch", "epoch": 1, "train_loss": float("nan")})


def test_cuda_rng_state_is_saved_and_restored(tmp_path, configs, synth_data, cpu_run, monkeypatch, caplog):
    # Before: checkpoints held torch's CPU generator only; a GPU run did not resume exactly.
    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)
    trainer = Trainer(*configs, synth_data, run)
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    caplog.set_level("INFO")
    trainer.resume()  # the CPU run's checkpoint on a "GPU" host: no CUDA state to restore, no error
    assert restored == [] and "saved without CUDA (a CPU run)" in caplog.text
    payload = trainer.checkpoint_payload(1)
    assert [torch.equal(a, b) for a, b in zip(payload["rng"]["cuda"], states)] == [True, True]
    save_checkpoint(run / "last.pt", payload)
    trainer.resume()
    (got,) = restored
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, states))


class _StopError(Exception):
    pass


def test_ddp_timeout_reaches_init_process_group(tmp_path, configs, synth_data, monkeypatch):
    # Before: init_process_group got no timeout (NCCL's 10 minutes) while rank 0 validated alone.
    calls = []

    def init_process_group(backend, **kwargs):
        calls.append((backend, kwargs))
        raise _StopError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    model_config, train_config = configs
    with pytest.raises(_StopError):
        Trainer(model_config, replace(train_config, ddp_timeout_s=1234.0), synth_data, tmp_path / "run")
    with pytest.raises(_StopError):
        setup_distributed()
    assert calls == [("gloo", {"timeout": timedelta(seconds=1234)}), ("gloo", {"timeout": timedelta(hours=3)})]


def test_workers_default_from_cpu_count_on_cuda(monkeypatch):
    # Before: workers 1 by default, whatever the device.
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 16)
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert loader_workers(None, cuda) == 8 and loader_workers(None, cpu) == 1 and loader_workers(0, cuda) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loader_workers(None, cuda) == 4
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 2)
    assert loader_workers(None, cuda) == 1
    assert TrainConfig().workers is None


def test_cudnn_benchmark_on_cuda_and_deterministic_mode(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    configure_backends(TrainConfig(), torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    configure_backends(TrainConfig(), torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag, warn_only: None)
    configure_backends(TrainConfig(deterministic=True), torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True


def test_amp_modes_from_yaml_and_their_device_rules(tmp_path):
    for text, mode in (("off", "off"), ("false", "off"), ("true", "fp16"), ("bf16", "bf16"), ('"off"', "off")):
        path = tmp_path / "c.yaml"
        path.write_text(CONFIG + f"  amp: {text}\n")
        assert load_config(path)[1].amp == mode, text
    path.write_text(CONFIG + "  amp: fp8\n")
    with pytest.raises(ValueError, match="train.amp 'fp8': choose one of off, fp16, bf16"):
        load_config(path)
    assert amp_mode(TrainConfig(amp="fp16"), torch.device("cpu")) == "off"  # fp16 autocast is CUDA only
    assert amp_mode(TrainConfig(amp="bf16"), torch.device("cpu")) == "bf16"


def test_bf16_trains_under_autocast_without_a_scaler(tmp_path, configs, synth_data):
    model_config, train_config = configs
    trainer = Trainer(model_config, replace(train_config, amp="bf16"), synth_data, tmp_path / "run")
    assert not trainer.scaler.is_enabled()
    dtypes = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    images, boxes, labels, _ = next(iter(trainer.loader))
    metrics = trainer.step(images, boxes, labels)
    assert dtypes == [torch.bfloat16]
    assert isinstance(metrics, dict) and 0 < metrics["loss"] < float("inf") and 0 < metrics["grad_norm"] < 1e6
