from pathlib import Path

import pytest
import torch

from scratchdet.cli import main
from scratchdet.models.checkpoint import CheckpointError, load_model, save_checkpoint
from scratchdet.models.config import load_model_config, to_dict
from scratchdet.models.ssd import SSD


def write_checkpoint(path, change=None, **extra):
    """A checkpoint of the tiny config with random weights; `change` edits its state dict in place."""
    config = load_model_config("tiny")
    state = SSD(config).state_dict()
    if change:
        change(state)
    payload = {"model_config": to_dict(config), "class_names": ["a", "b", "c"], "model": state, **extra}
    return save_checkpoint(path, {k: v for k, v in payload.items() if v is not None})


def poison(state):
    state[next(k for k in state if k.endswith("weight"))][0] = float("nan")


def test_checkpoint_with_nan_weights_is_refused_by_load(tmp_path):
    path = write_checkpoint(tmp_path / "nan.pt", poison)
    with pytest.raises(CheckpointError, match=r"nan.pt: 1 weight tensor\(s\) hold NaN or inf .* training diverged"):
        load_model(path)


@pytest.mark.parametrize("command", [["export", "--weights", "{ckpt}", "--out", "{tmp}/m.onnx"],
                                     ["val", "--weights", "{ckpt}", "--data", "{data}"]], ids=["export", "val"])
def test_export_and_val_refuse_nan_weights_with_exit_1(tmp_path, synth_data, caplog, command):
    # Before: export wrote the model (exit 0, "parity OK: 0 detections"); val reported mAP 0 without a word.
    path = write_checkpoint(tmp_path / "nan.pt", poison)
    argv = [arg.format(ckpt=path, tmp=tmp_path, data=synth_data) for arg in command]
    assert main(argv) == 1
    assert "nan.pt: 1 weight tensor(s) hold NaN or inf" in caplog.text
    assert not (tmp_path / "m.onnx").exists()


BAD_CHECKPOINTS = {
    "no class names": (lambda p: write_checkpoint(p, class_names=None), "'class_names' must list 3 names"),
    "short class list": (lambda p: write_checkpoint(p, class_names=["a"]), r"'class_names' must list 3 names"),
    "no weights": (lambda p: write_checkpoint(p, model=None), "no 'model' weights"),
    "inf BN statistics": (lambda p: write_checkpoint(p, lambda s: s[next(k for k in s if k.endswith(
        "running_var"))].fill_(float("inf"))), "hold NaN or inf"),
    "truncated": (lambda p: p.write_bytes(write_checkpoint(p).read_bytes()[:5000]), "truncated or corrupt checkpoint"),
    "text file": (lambda p: p.write_text("hello"), r"not a checkpoint written by torch.save \(starts with b'hell'"),
    "foreign pickle": (lambda p: p.write_bytes(__import__("pickle").dumps({"a": 1})),
                       r"not a loadable checkpoint \(UnpicklingError: [^\n]+\)$"),
    "a plain tensor": (lambda p: torch.save(torch.zeros(3), p), "not a ScratchDet checkpoint"),
}


@pytest.mark.parametrize("make, message", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_unusable_checkpoints_are_named_errors(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError, match=r"bad.pt: .*" + message):
        load_model(path)


def test_checkpoint_write_leaves_no_temporary_file_after_a_failure(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "last.pt")
    before = path.read_bytes()

    def broken_save(obj, target):
        Path(target).write_bytes(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="file write failed"):
        write_checkpoint(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
