"""make gpu-check without a GPU: one line naming what is missing; its comparison and timing helpers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from scratchdet.benchmarks.gpu_check import TOLERANCES, latency, main, markdown, matched_fraction, missing_requirements


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


def test_matched_fraction_needs_class_overlap_and_score():
    reference = [_detections([[0, 0, 20, 20], [20, 20, 40, 40]], [0.9, 0.5], [0, 1])]
    same = [_detections([[0, 0, 20, 20], [20, 20, 40, 40]], [0.9, 0.5], [0, 1])]
    assert matched_fraction(reference, same, TOLERANCES["fp32"]) == (1.0, 2, 2)
    shifted = [_detections([[1.5, 0, 21.5, 20], [20, 20, 40, 40]], [0.9, 0.5], [0, 2])]  # IoU 0.86; wrong class
    assert matched_fraction(reference, shifted, TOLERANCES["int8"]) == (0.5, 2, 2)
    assert matched_fraction(reference, shifted, TOLERANCES["fp16"])[0] == 0.0
    edge = [_detections([[5, 0, 5, 10]], [0.9], [0])]  # clipped to the image edge: no area, still the same box
    assert matched_fraction([edge[0]], edge, TOLERANCES["fp32"])[0] == 1.0
    rescored = [_detections([[0, 0, 20, 20]], [0.94], [0])]
    assert matched_fraction(reference, rescored, TOLERANCES["int8"])[0] == 0.5
    assert matched_fraction(reference, rescored, TOLERANCES["fp16"])[0] == 0.0


def test_latency_percentiles_and_throughput():
    calls = []
    stats = latency(calls.append, np.zeros((4, 3, 8, 8), np.float32), warmup=2, iterations=10)
    assert len(calls) == 12 and stats["batch"] == 4
    assert stats["p50"] <= stats["p90"] <= stats["p95"] <= stats["p99"]
    assert stats["throughput"] == pytest.approx(4e3 / stats["mean"])


def test_dry_run_report_says_so_first():
    timing = {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": 1.0, "throughput": 1000.0}
    row = {"name": "ONNX Runtime fp32 (reference)", "map50": 0.5, "coco_ap": 0.3, "batch_1": timing, "batch_8": timing}
    report = {"dry_run": True, "max_batch": 8, "images": 3, "deploy_conf": 0.25, "passed": True,
              "pytest_tensorrt": {"summary": "not run (dry run)"}, "rows": [row]}
    text = markdown(report)
    assert text.startswith("**DRY RUN on ONNX Runtime") and "| reference |" in text and "Overall: PASS" in text
