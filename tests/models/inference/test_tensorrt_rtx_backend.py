"""The TensorRT-RTX backend without a GPU: its checks are plain functions, and every runtime attribute the shared
TensorRT backend uses exists in TensorRT-RTX's real bindings. Opening an engine needs an RTX GPU."""

from __future__ import annotations

import json

import pytest

from scratchdet.models.contract import SIDECAR_KEYS
from scratchdet.models.inference.formats import engine_runtime, open_backend
from scratchdet.models.inference.tensorrt_rtx_backend import rtx_engine_problems
from tests.models.inference.test_tensorrt_backend import attributes_missing, tensorrt_attributes_used

SIDECAR = {"runtime": "tensorrt-rtx", "tensorrt_version": "1.7.1.116", "targets": ["SM86", "SM89"]}


def test_an_engine_runs_only_on_its_targets_and_version():
    assert rtx_engine_problems(SIDECAR, "1.7.1.116", "8.9") == []
    assert rtx_engine_problems({**SIDECAR, "targets": []}, "1.7.1.116", "12.0") == []  # default targets
    assert rtx_engine_problems(SIDECAR, "1.8.0.1", "12.0") == ["TensorRT-RTX 1.7.1.116 (running 1.8.0.1)",
                                                              "targets SM86, SM89 (this GPU is SM120)"]
    assert rtx_engine_problems({"tensorrt_version": "10.3.0"}, "1.7.1.116", "8.6") == [
        "built by TensorRT, not TensorRT-RTX (open it with --runtime tensorrt)"]


def test_the_sidecar_picks_the_runtime(tmp_path):
    engine = tmp_path / "model-fp16.rtx.engine"
    engine.write_bytes(b"engine")
    values = {key: "x" for key in SIDECAR_KEYS}
    engine.with_suffix(".json").write_text(json.dumps({**values, **SIDECAR}))
    assert engine_runtime(engine) == "tensorrt-rtx"
    engine.with_suffix(".json").write_text(json.dumps(values))
    assert engine_runtime(engine) == "tensorrt"
    with pytest.raises(ValueError, match="runtime 'openvino' does not run .engine files"):
        open_backend(engine, "openvino")


def test_every_tensorrt_attribute_runtime_uses_exists_in_tensorrt_rtx():
    rtx = pytest.importorskip("tensorrt_rtx_bindings", reason="the dev extra installs TensorRT-RTX")
    missing = attributes_missing(rtx, tensorrt_attributes_used())
    assert not missing, f"the TensorRT backend uses attributes TensorRT-RTX {rtx.__version__} lacks: {missing}"
