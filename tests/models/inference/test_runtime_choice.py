"""`--runtime auto`: the rule from measurements, the per-host file bench writes and auto reads, clear fallbacks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from scratchdet.models.inference import runtime_choice
from scratchdet.models.inference.runtime_choice import MARGIN, choose, decide, host_key, record


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, tmp_path_factory):
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    return export_onnx(model, checkpoint["class_names"], tmp_path_factory.mktemp("auto") / "model.onnx",
                       ExportOptions()).path


ENTRY = {"p50_ms": {"onnxruntime": 46.1, "openvino": 39.8}, "threads": 2, "measured": "2026-12-02"}


def test_rule_picks_openvino_only_when_measured_faster_by_the_margin():
    faster = decide(ENTRY, "int8", openvino_installed=True)
    assert faster.runtime == "openvino"
    assert "ONNX Runtime 46.1 ms, OpenVINO 39.8 ms (1.16x) on int8, 2 threads" in faster.reason
    close = {**ENTRY, "p50_ms": {"onnxruntime": 40.0 * (MARGIN - 0.01), "openvino": 40.0}}
    assert decide(close, "int8", True).runtime == "onnxruntime"
    slower = {**ENTRY, "p50_ms": {"onnxruntime": 30.0, "openvino": 40.0}}
    assert decide(slower, "fp32", True).reason.startswith("OpenVINO is not at least 1.05x faster here")
    assert decide(ENTRY, "int8", openvino_installed=False).runtime == "onnxruntime"
    missing = decide(None, "int8", True)
    assert missing.runtime == "onnxruntime" and "scratchdet bench MODEL.onnx --runtime ort,openvino" in missing.reason


def test_record_keeps_other_entries_and_choose_reads_this_hosts(tmp_path):
    path = tmp_path / "runtime.json"
    path.write_text(json.dumps({"schema": 1, "entries": {"Other CPU | 8 cores | x | y | int8": ENTRY}}))
    record({"int8": {"p50_ms": {"onnxruntime": 46.1, "openvino": 39.8}, "threads": 2, "model": "m.onnx"}}, path)
    entries = json.loads(path.read_text())["entries"]
    assert set(entries) == {"Other CPU | 8 cores | x | y | int8", host_key("int8")}
    assert entries[host_key("int8")]["measured"].endswith("UTC")
    if runtime_choice._version("openvino") is None:
        pytest.skip("OpenVINO not installed: auto cannot pick it")
    chosen = choose("int8", path)
    assert chosen.runtime == "openvino" and str(path) in chosen.reason
    fp32 = choose("fp32", path)  # measured for int8 only
    assert fp32.runtime == "onnxruntime" and f"this host: '{host_key('fp32')}'" in fp32.reason


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "runtime recommendation file is not JSON"),
    (json.dumps({"schema": 1, "entries": {"k": {"p50_ms": {"onnxruntime": 1.0}}}}),
     "entry 'k' lacks finite positive p50_ms"),
    ('{"schema": 1, "entries": {"k": {"p50_ms": {"onnxruntime": 1.0, "openvino": Infinity}}}}',
     "p50_ms of onnxruntime and openvino (found {'onnxruntime': 1.0, 'openvino': inf})"),
    (json.dumps({"schema": 1, "entries": {"k": {"p50_ms": {"onnxruntime": -2.0, "openvino": 1.0}}}}),
     "entry 'k' lacks finite positive p50_ms"),
    ("FOLDER", "is a folder or not a regular file; point it at a file"),
    (json.dumps([1, 2]), "not a runtime recommendation file of schema 1"),
    (json.dumps({"schema": 1, "entries": {"Other CPU | 8 cores | x | y | int8": ENTRY}}),
     "the file has: Other CPU | 8 cores | x | y | int8"),
], ids=["missing", "corrupt", "incomplete", "infinite", "negative", "folder", "other schema", "other host"])
def test_a_file_auto_cannot_use_means_onnxruntime_and_says_why(tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(runtime_choice, "_version", lambda package: "1.0")  # as if OpenVINO were installed
    path = tmp_path / "runtime.json"
    if content == "FOLDER":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    chosen = choose("int8", path)
    assert chosen.runtime == "onnxruntime" and message in chosen.reason and str(path) in chosen.reason


def test_auto_opens_the_measured_runtime_logs_why_once_and_leaves_other_formats(
        tiny_onnx, tiny_checkpoint, no_runtime_recommendation, caplog):
    from scratchdet.runtime.detector import Detector

    pytest.importorskip("openvino", reason="OpenVINO is in the dev extra: pip install -e '.[dev]'")
    with caplog.at_level(logging.INFO, logger="scratchdet"), Detector(tiny_onnx) as detector:
        assert detector.backend.name == "onnxruntime"  # no recommendation yet
    assert "runtime auto -> onnxruntime: no measurement of fp32 models for this host" in caplog.text
    record({"fp32": {"p50_ms": {"onnxruntime": 20.0, "openvino": 10.0}, "threads": 2}}, no_runtime_recommendation)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scratchdet"), Detector(tiny_onnx) as detector:
        assert (detector.backend.name, detector.backend.precision) == ("openvino", "fp32/f32")
        detector.detect(np.zeros((64, 64, 3), "uint8"))
    assert caplog.text.count("runtime auto ->") == 1 and "OpenVINO is faster here" in caplog.text
    assert "(2.00x)" in caplog.text
    with pytest.raises(ValueError, match="precision hint 'bf16' is an OpenVINO setting; pass --runtime openvino"):
        Detector(tiny_onnx, precision_hint="bf16")
    with Detector(tiny_checkpoint) as detector:  # .pt: its one runtime
        assert detector.backend.name == "pytorch"


def test_predict_and_val_default_to_auto_and_log_the_choice(tiny_onnx, synth_data, tmp_path, caplog):
    from scratchdet.cli import main

    image = sorted((synth_data / "images").iterdir())[0]
    with caplog.at_level(logging.INFO, logger="scratchdet"):
        assert main(["predict", str(image), "--model", str(tiny_onnx), "--save-dir", str(tmp_path / "p")]) == 0
        assert main(["val", "--model", str(tiny_onnx), "--data", str(synth_data), "--save-dir",
                     str(tmp_path / "v")]) == 0
    assert caplog.text.count("runtime auto -> onnxruntime: no measurement of fp32 models for this host") == 2
