import copy
import json

import pytest
from scratchdet.benchmarks.gate import GateResult, accuracy_checks, baseline_speed_checks, compare_configs
from scratchdet.benchmarks.harness import display_names, run_benchmark
from scratchdet.benchmarks.peak import Peak
from scratchdet.benchmarks.report import ReportError, read_report, validate_report, write_report
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.models.checkpoint import load_model
from scratchdet.models.config import CONFIG_DIR


@pytest.fixture(scope="module")
def report(tiny_checkpoint, synth_data, tmp_path_factory):
    model, checkpoint = load_model(tiny_checkpoint)
    onnx = export_onnx(model, checkpoint["class_names"], tmp_path_factory.mktemp("b") / "model.onnx",
                       ExportOptions()).path
    missing = tmp_path_factory.mktemp("b") / "missing.onnx"
    peak = Peak(fp32_gflops=400.0, int8_gops=1600.0, reference_ms=5.0)  # fixed: this test is about the harness
    return run_benchmark([tiny_checkpoint, onnx, missing], synth_data, (1, 4), repeats=2, per_round=3, peak=peak)


def test_report_rows_hold_speed_accuracy_and_failures(report):
    checkpoint, onnx, missing = report["rows"]
    assert checkpoint["format"] == "pytorch" and onnx["format"] == "onnx"
    for row in (checkpoint, onnx):
        assert row["status"] == "ok"
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["fps"] == pytest.approx(1000 / row["latency_ms"]["p50"])
        assert set(row["stages_p50_ms"]) == {"preprocess", "network", "postprocess"}
        assert row["throughput"]["4"] > 0 and row["gflops"] > 0 and row["size_mb"] > 0
        assert row["roofline_fps"] == pytest.approx(400.0 / row["gflops"])
        assert 0 <= row["map50"] <= 1
    assert abs(checkpoint["map50"] - onnx["map50"]) < 0.001
    assert missing["status"].startswith("failed to load: FileNotFoundError")
    assert report["environment"]["threads"] == 2 and report["environment"]["libraries"]["onnxruntime"]


def test_report_files_are_written_and_schema_checked(report, tmp_path):
    out = write_report(report, tmp_path / "bench")
    assert read_report(out / "report.json")["rows"][0]["name"] == report["rows"][0]["name"]
    assert (out / "fps_vs_map.png").stat().st_size > 5000
    assert "| model | format |" in (out / "report.md").read_text()
    broken = copy.deepcopy(report)
    del broken["rows"][0]["fps"]
    with pytest.raises(ReportError, match=r"row 0 missing \['fps'\]"):
        validate_report(broken)
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ReportError, match="key 'environment' missing"):
        read_report(tmp_path / "bad.json")


def test_accuracy_gate_passes_identical_and_fails_an_injected_drop(report):
    assert all(check.passed for check in accuracy_checks(report, report))
    dropped = copy.deepcopy(report)
    dropped["rows"][1]["map50"] -= 0.01  # one point
    checks = accuracy_checks(dropped, report, tolerance=0.002)
    failed = [c.name for c in checks if not c.passed]
    assert "mAP model.onnx vs baseline" in failed and "mAP model.onnx vs its checkpoint" in failed


def test_baseline_speed_gate_uses_reference_normalised_speed(report):
    slower = copy.deepcopy(report)
    for row in slower["rows"]:
        if row["relative_speed"]:
            row["relative_speed"] *= 0.6  # 40% slower: past the 30% cross-run tolerance
    assert all(c.passed for c in baseline_speed_checks(report, report))
    assert not any(c.passed for c in baseline_speed_checks(slower, report, advisory=False))
    warned = GateResult(baseline_speed_checks(slower, report))  # advisory by default: reported, not failing
    assert warned.passed and "WARN  speed" in warned.summary()


@pytest.mark.slow
def test_ab_gate_fails_a_twice_wider_candidate_and_passes_an_identical_one(tmp_path):
    wide = tmp_path / "tiny_wide.yaml"
    tiny = (CONFIG_DIR / "tiny.yaml").read_text()
    wide.write_text(tiny.replace("name: tiny", "name: tiny_wide").replace("width: 0.25", "width: 0.5"))
    slower = compare_configs("tiny", str(wide), tolerance=0.05)
    assert not slower.passed and slower.measured < 0.8, slower
    same = compare_configs("tiny", "tiny", tolerance=0.05)
    assert same.passed, same


def test_models_sharing_a_file_name_get_distinct_row_names():
    from pathlib import Path

    paths = [Path("runs/a/export/model.onnx"), Path("runs/b/export/model.onnx"), Path("runs/a/best.pt")]
    assert display_names(paths) == ["a/export/model.onnx", "b/export/model.onnx", "best.pt"]
    assert display_names([Path("runs/demo/best.pt")]) == ["best.pt"]
