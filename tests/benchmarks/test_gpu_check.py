"""make gpu-check without a GPU: its stage runner, verdict rules and decisions, each a plain function."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from scratchdet.benchmarks.gpu_check import (
    STAGES,
    Outcome,
    Stage,
    StageError,
    batch_mismatches,
    convolution_precisions,
    gpu_tolerance,
    latency,
    main,
    markdown,
    memory_growth_mib,
    missing_requirements,
    pytest_outcome,
    run_stages,
    verdict,
)
from scratchdet.models.boxes import matched_count


def test_refuses_with_one_line_naming_what_is_missing(capsys):
    if not missing_requirements():
        pytest.skip("this host has TensorRT and a GPU: `make gpu-check` runs for real here")
    assert main(["--data", "runs/data/absent"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "missing: TensorRT Python bindings" in lines[0] and captured.out == ""


def _detections(boxes, scores, classes):
    return SimpleNamespace(boxes=np.array(boxes, np.float32).reshape(-1, 4), scores=np.array(scores, np.float32),
                           class_ids=np.array(classes, np.int64))


def test_engine_detections_are_matched_with_the_gpu_tolerances_of_the_box_library():
    reference = [_detections([[0, 0, 20, 20], [20, 20, 40, 40]], [0.9, 0.5], [0, 1])]
    same = [_detections([[0, 0, 20, 20], [20, 20, 40, 40]], [0.9, 0.5], [0, 1])]
    assert matched_count(reference, same, gpu_tolerance("fp32")) == (2, 2)
    shifted = [_detections([[1.5, 0, 21.5, 20], [20, 20, 40, 40]], [0.9, 0.5], [0, 2])]  # IoU 0.86; wrong class
    assert matched_count(reference, shifted, gpu_tolerance("int8")) == (1, 2)
    assert matched_count(reference, shifted, gpu_tolerance("fp16"))[0] == 0
    edge = [_detections([[5, 0, 5, 10]], [0.9], [0])]  # clipped to the image edge: no area, still the same box
    assert matched_count([edge[0]], edge, gpu_tolerance("fp32")) == (1, 1)
    rescored = [_detections([[0, 0, 20, 20]], [0.94], [0])]
    assert matched_count(reference, rescored, gpu_tolerance("int8"))[0] == 1
    assert matched_count(reference, rescored, gpu_tolerance("fp16"))[0] == 0


def test_latency_percentiles_and_throughput():
    calls: list = []
    stats = latency(calls.append, np.zeros((4, 3, 8, 8), np.float32), warmup=2, iterations=10)
    assert len(calls) == 12 and stats["batch"] == 4
    assert stats["p50"] <= stats["p90"] <= stats["p95"] <= stats["p99"]
    assert stats["throughput"] == pytest.approx(4e3 / stats["mean"])


# junit XML as pytest 9.2 writes it (--junitxml): {skip} is one test skipped in its body; COLLECTION_SKIP is
# what `pytest -m tensorrt --junitxml=...` wrote on this CPU machine (exit code 0), the module skipped at import.
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0"
failures="{failures}" skipped="1" tests="3"><testcase classname="tests.runtime.test_tensorrt"
name="test_engine_detections_match_onnx_runtime[fp16]" time="1.0">{failure}</testcase>
<testcase classname="tests.runtime.test_tensorrt" name="test_batch_beyond_the_profile" time="0.1">{skip}</testcase>
<testcase classname="tests.runtime.test_tensorrt" name="test_cuda_graph" time="0.1" /></testsuite></testsuites>"""
SKIP = '<skipped type="pytest.skip" message="no usable NVIDIA GPU: CUDA error 35">tests/runtime/x.py:17</skipped>'
COLLECTION_SKIP = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest"
errors="0" failures="0" skipped="1" tests="1" time="0.149"><testcase classname="" name="tests.runtime.test_tensorrt"
time="0.000"><skipped message="collection skipped">('/work/tests/runtime/test_tensorrt.py', 5, 'Skipped: TensorRT is
not installed (no NVIDIA GPU stack on this machine)')</skipped></testcase></testsuite></testsuites>"""


def test_a_skipped_gpu_test_makes_pytest_fail():
    skipped = pytest_outcome(JUNIT.format(failures=0, failure="", skip=SKIP))
    assert not skipped.passed and skipped.tests == 3 and skipped.failures == 0
    assert skipped.skipped == ["tests.runtime.test_tensorrt.test_batch_beyond_the_profile: no usable NVIDIA GPU: "
                               "CUDA error 35"]
    assert "1 skipped (skipped counts as FAIL: tests.runtime" in skipped.summary()
    module = pytest_outcome(COLLECTION_SKIP)
    assert not module.passed
    assert module.skipped == ["tests.runtime.test_tensorrt: TensorRT is\nnot installed (no NVIDIA GPU stack on this "
                              "machine)"]
    clean = pytest_outcome(JUNIT.format(failures=0, failure="", skip=""))
    assert clean.passed and clean.summary() == "3 tests: 3 passed, 0 failed, 0 errors, 0 skipped"
    failed = pytest_outcome(JUNIT.format(failures=1, failure='<failure message="assert 1 == 2" />', skip=""))
    assert not failed.passed and failed.failures == 1
    none = pytest_outcome('<testsuites><testsuite name="pytest" tests="0" /></testsuites>')
    assert not none.passed  # nothing ran: no proof of anything


def test_a_skipped_gpu_test_makes_the_gpu_check_stage_fail(tmp_path, monkeypatch):
    from scratchdet.benchmarks import gpu_check

    def fake_pytest(command, **kwargs):
        report = next(a for a in command if a.startswith("--junitxml=")).split("=", 1)[1]
        (tmp_path / "out" / "pytest-tensorrt.xml").write_text(JUNIT.format(failures=0, failure="", skip=SKIP))
        assert report == str(tmp_path / "out" / "pytest-tensorrt.xml") and "-m" in command
        return SimpleNamespace(returncode=0, stdout="3 passed, 1 skipped", stderr="")  # pytest's exit 0 on a skip

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_pytest)
    (tmp_path / "out").mkdir()
    context = gpu_check.Context(tmp_path, tmp_path / "out", None, None, False, 8, 10, 1)
    stage = next(s for s in STAGES if s.name == "pytest -m tensorrt")
    (row,) = run_stages([stage], context, dry_run=False, write=lambda rows: None)
    assert row["status"] == "FAIL" and "skipped counts as FAIL" in row["detail"]
    assert verdict([row], dry_run=False) == "FAIL"


def test_every_stage_runs_and_reports_even_after_one_raises():
    written = []

    def broken(context):
        raise RuntimeError("TensorRT returned no engine")

    stages = [Stage("a", "first", lambda c: Outcome("ok")), Stage("b", "build", broken),
              Stage("c", "after", lambda c: Outcome("still ran"))]
    rows = run_stages(stages, None, dry_run=False, write=lambda r: written.append([row["status"] for row in r]))
    assert [row["status"] for row in rows] == ["PASS", "FAIL", "PASS"]
    assert rows[1]["detail"] == "RuntimeError: TensorRT returned no engine" and rows[2]["detail"] == "still ran"
    assert written == [["PASS"], ["PASS", "FAIL"], ["PASS", "FAIL", "PASS"]]  # the report after every stage
    assert verdict(rows, dry_run=False) == "FAIL"
    assert verdict([rows[0], rows[2]], dry_run=False) == "PASS"


def test_dry_run_marks_tensorrt_only_stages_not_run_and_is_never_pass():
    ran = []

    def stage(name):
        def run(context):
            ran.append(name)
            return Outcome("ok")
        return run

    stages = [Stage("ort", "runs anywhere", stage("ort"), "the ONNX models"),
              Stage("gpu", "needs TensorRT", stage("gpu"))]
    rows = run_stages(stages, None, dry_run=True, write=lambda r: None)
    assert ran == ["ort"] and [r["status"] for r in rows] == ["PASS", "NOT RUN"]
    assert rows[0]["ran_on"] == "ONNX Runtime" and "would run on TensorRT" in rows[1]["detail"]
    assert verdict(rows, dry_run=True) == "DRY RUN OK" and verdict(rows, dry_run=False) == "FAIL"
    assert all(any(s.name == name for s in STAGES) for name in ("build int8", "int8 layers", "cuda graph",
                                                                  "device memory", "bundle engines", "nms tail"))


def test_batch_mismatches_name_the_image_and_batch():
    one = [_detections([[0, 0, 10, 10]], [0.9], [1]), _detections([[5, 5, 9, 9]], [0.5], [0])]
    same = [_detections([[0, 0, 10, 10]], [0.9], [1]), _detections([[5, 5, 9, 9]], [0.5 + 1e-6], [0])]
    dropped = [_detections([[0, 0, 10, 10]], [0.9], [1]), _detections([], [], [])]
    assert batch_mismatches({1: one, 3: same}, atol=1e-4) == []
    assert batch_mismatches({1: one, 3: same, 8: dropped}, atol=1e-4) == ["image 1 at batch 8: 1 vs 0 detections"]


def test_memory_growth_counts_only_memory_lost():
    assert memory_growth_mib([8 << 30, 8 << 30]) == 0.0
    assert memory_growth_mib([8 << 30, (8 << 30) - (40 << 20)]) == pytest.approx(40.0)


def _layer(name, kind, weights):
    return {"Name": name, "LayerType": "CaskConvolution", "ParameterType": kind, "Weights": {"Type": weights}}


def test_int8_engine_inspection_finds_a_float_convolution():
    info = json.dumps({"Layers": [_layer("conv1 + relu", "Convolution", "Int8"), _layer("pool", "Pooling", "Float"),
                                  _layer("head.loc", "Convolution", "Half")]})
    assert convolution_precisions(info) == (2, ["head.loc"])
    with pytest.raises(StageError, match="ProfilingVerbosity.DETAILED"):
        convolution_precisions(json.dumps({"Layers": ["conv1 + relu", "pool"]}))  # LAYER_NAMES_ONLY


def test_report_shows_every_stage_and_the_verdict():
    rows = run_stages([Stage("models", "ONNX files", lambda c: Outcome("3 files"), "the same files"),
                       Stage("build int8", "int8 engine", lambda c: Outcome("x"))], None, True, lambda r: None)
    text = markdown({"dry_run": True, "max_batch": 8, "stages": rows, "verdict": verdict(rows, True)})
    assert text.startswith("**DRY RUN: no TensorRT engine was built or run.")
    assert "| models | ONNX files (dry run: the same files) | ONNX Runtime | PASS | 3 files |" in text
    assert "| build int8 | int8 engine | - | NOT RUN | would run on TensorRT (needs a GPU) |" in text
    assert text.rstrip().endswith("Overall: DRY RUN OK")
