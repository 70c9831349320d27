"""`scratchdet export`'s post-processing flags reaching the ONNX metadata, and `scratchdet engine` where it cannot
build (no TensorRT, or TensorRT without a GPU): a one-line error with the trtexec lines to run on the device."""

import shlex
from dataclasses import fields

import pytest

from scratchdet.cli import main
from scratchdet.models.config import PostprocessConfig
from scratchdet.models.contract import POSTPROCESS_KEYS, load_checked
from scratchdet.models.inference import cuda_device, tensorrt_backend

# One command-line value per PostprocessConfig field, each unlike the default so its arrival is visible.
FLAGS = {"score_threshold": ("--score-thr", 0.02), "iou_threshold": ("--iou-thr", 0.5),
         "pre_nms_topk": ("--pre-nms-topk", 100), "max_det": ("--max-det", 50),
         "deploy_score_threshold": ("--deploy-conf", 0.4)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_cli") / "model.onnx"
    flags = [str(part) for flag, value in FLAGS.values() for part in (flag, value)]
    assert main(["export", "--config", "tiny", "--out", str(out), *flags]) == 0
    return out


def test_every_postprocess_setting_has_a_flag_that_reaches_the_metadata(exported):
    assert set(FLAGS) == set(POSTPROCESS_KEYS)  # a new PostprocessConfig field needs a flag and a row here
    defaults = PostprocessConfig()
    assert all(getattr(defaults, name) != value for name, (_, value) in FLAGS.items())
    _, metadata = load_checked(exported)
    assert {key: metadata[key] for key in POSTPROCESS_KEYS} == {name: value for name, (_, value) in FLAGS.items()}
    assert metadata["model_config"]["postprocess"] == {f.name: FLAGS[f.name][1] for f in fields(PostprocessConfig)}


def test_an_exported_deploy_conf_is_the_detectors_default(exported):
    from scratchdet.runtime.detector import Detector

    with Detector(exported) as detector:
        assert detector.conf == 0.4


def _no_tensorrt():
    raise ImportError("TensorRT is not installed (pip install tensorrt on an x86 GPU host)")


def _no_gpu(device=0):
    raise cuda_device.CudaError("cudaGetDeviceProperties failed: cudaErrorNoDevice")


@pytest.mark.parametrize("missing", ["tensorrt", "gpu"])
def test_engine_without_tensorrt_or_gpu_prints_the_trtexec_lines(exported, tmp_path, caplog, monkeypatch, missing):
    if missing == "tensorrt":
        monkeypatch.setattr(tensorrt_backend, "import_tensorrt", _no_tensorrt)
    else:
        monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: object())
        monkeypatch.setattr(cuda_device, "gpu_info", _no_gpu)
    out = tmp_path / "engines" / "model-fp32.engine"
    argv = ["engine", "--model", str(exported), "--precision", "fp32", "--max-batch", "4", "--out", str(out)]
    assert main(argv) == 1
    message = caplog.text
    reason = "TensorRT is not installed" if missing == "tensorrt" else "cudaGetDeviceProperties failed"
    assert f"cannot build here: {reason}" in message and f"The ONNX is {exported.resolve()}" in message
    lines = {line.split(":", 1)[0].strip(): shlex.split(line.split(":", 1)[1]) for line in message.splitlines()
             if line.strip().startswith("TensorRT 1")}
    assert set(lines) == {"TensorRT 10", "TensorRT 11"}
    for command in lines.values():
        assert command[0] == "trtexec" and f"--onnx={exported}" in command and f"--saveEngine={out}" in command
        assert "--minShapes=images:1x3x128x128" in command and "--maxShapes=images:4x3x128x128" in command
        assert "--noTF32" in command  # an FP32 engine (engine_plan.py: TF32 is on by default)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # nothing half-built is left
