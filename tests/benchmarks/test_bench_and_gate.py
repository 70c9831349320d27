import copy
import json
import os
import re
import shutil

import pytest

from scratchdet.benchmarks.gate import (
    GateResult,
    accuracy_checks,
    baseline_speed_checks,
    compare_configs,
    dataset_check,
    speed_check,
)
from scratchdet.benchmarks.harness import display_names, run_benchmark
from scratchdet.benchmarks.peak import Peak
from scratchdet.benchmarks.receipts import NOISY_BOUND, is_noisy, round_fps_ratio
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
    return quiet(run_benchmark([tiny_checkpoint, onnx, missing], synth_data, (1, 4), repeats=2, per_round=3,
                               peak=peak))


def quiet(report):
    """The report with every round at the p50: the gate tests below must not depend on the machine's load, which
    would make rows noisy (test_noisy_* make rows noisy on purpose)."""
    for row in report["rows"]:
        if row["latency_ms"]:
            p50 = row["latency_ms"]["p50"]
            row["latency_ms"].update(round_median_min=p50, round_median_max=p50)
            row["noisy"] = False
    return report


def test_report_rows_hold_speed_accuracy_and_failures(report):
    checkpoint, onnx, missing = report["rows"]
    assert checkpoint["format"] == "pytorch" and onnx["format"] == "onnx"
    for row in (checkpoint, onnx):
        assert row["status"] == "ok"
        latency = row["latency_ms"]
        assert latency["n"] == 6 and 0 < latency["min"] <= latency["p50"] <= latency["max"]
        assert latency["p95"] is None and latency["p99"] is None  # 6 samples: too few for either
        assert row["fps"] == pytest.approx(1000 / row["latency_ms"]["p50"])
        assert set(row["stages_p50_ms"]) == {"preprocess", "network", "postprocess"}
        assert row["throughput"]["4"] > 0 and row["gflops"] > 0 and row["size_mb"] > 0
        assert row["roofline_fps"] == pytest.approx(400.0 / row["gflops"])
        assert 0 <= row["map50"] <= 1
    assert abs(checkpoint["map50"] - onnx["map50"]) < 0.001
    assert missing["status"].startswith("failed to load: FileNotFoundError")
    assert report["environment"]["threads"] == 2 and report["environment"]["libraries"]["onnxruntime"]


def test_stages_add_up_within_end_to_end(report):
    for row in report["rows"][:2]:
        latency, p50s, means = row["latency_ms"], row["stages_p50_ms"], row["stages_mean_ms"]
        # the same calls: each call's end-to-end time contains its stages, so its order statistics do too
        assert all(latency["p50"] >= p50s[stage] > 0 for stage in ("preprocess", "network")), row
        assert latency["p50"] >= p50s["postprocess"] >= 0
        total = sum(means.values())
        # at least half: a preemption between stages (a loaded machine) adds to the call but to no stage
        assert total <= latency["mean"] and total >= 0.5 * latency["mean"], (total, latency["mean"])


def test_report_files_are_written_and_schema_checked(report, tmp_path):
    out = write_report(report, tmp_path / "bench")
    assert read_report(out / "report.json")["rows"][0]["name"] == report["rows"][0]["name"]
    assert (out / "fps_vs_map.png").stat().st_size > 5000
    table = (out / "report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model |"))
    assert [c.strip() for c in header.split("|")[7:14]] == ["n", "mean (pre/net/post)", "min", "p50", "p95",
                                                            "p99", "max"]
    assert "paper, GPU (Tesla P40)" in table
    older = copy.deepcopy(report)  # a report written before stages_mean_ms existed still reads
    for row in older["rows"]:
        del row["stages_mean_ms"]
    assert validate_report(older)["rows"][0]["stages_mean_ms"] == {}
    broken = copy.deepcopy(report)
    del broken["rows"][0]["fps"]
    with pytest.raises(ReportError, match=r"row 0 missing \['fps'\]"):
        validate_report(broken)
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ReportError, match="key 'environment' missing"):
        read_report(tmp_path / "bad.json")


def without_failed_rows(report):
    return {**report, "rows": [r for r in report["rows"] if r["status"] == "ok"]}


def test_accuracy_gate_passes_identical_and_fails_an_injected_drop(report):
    assert [c.name for c in accuracy_checks(report, report) if not c.passed] == ["missing.onnx ran"]
    report = without_failed_rows(report)
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
    # The direction, with margins a loaded machine keeps: width 0.5 is 2.8x slower (docs/results/formats.md;
    # 0.50 measured under load 7 on 2 cores), identical models measured 0.936 and 1.14 under load: inside the
    # 0.8 bar, not always the gate's default 0.95 (test_speed_check_takes_the_median_round checks that
    # verdict on fixed ratios).
    slower = compare_configs("tiny", str(wide), tolerance=0.2)
    assert not slower.passed and slower.measured < 0.75, slower
    same = compare_configs("tiny", "tiny", tolerance=0.2)
    assert same.passed, same


def test_speed_check_takes_the_median_round_against_one_minus_the_tolerance():
    """The gate's verdict on given per-round ratios: one slow round (a load spike) does not fail it."""
    identical = speed_check("speed tiny vs tiny", [0.70, 0.97, 0.99, 1.01, 1.02], tolerance=0.05)
    assert identical.passed and identical.measured == 0.99 and identical.target == 0.95
    assert "rounds min 0.700 max 1.020" in identical.detail
    slower = speed_check("speed wide vs tiny", [0.90, 0.93, 0.94, 0.96, 1.10], tolerance=0.05)
    assert not slower.passed and slower.measured == 0.94


def test_models_sharing_a_file_name_get_distinct_row_names():
    from pathlib import Path

    paths = [Path("runs/a/export/model.onnx"), Path("runs/b/export/model.onnx"), Path("runs/a/best.pt")]
    assert display_names(paths) == ["a/export/model.onnx", "b/export/model.onnx", "best.pt"]
    assert display_names([Path("runs/demo/best.pt")]) == ["best.pt"]


def _gate(tmp_path, candidate, baseline, *extra):
    from scratchdet.cli import main

    write_report(candidate, tmp_path / "candidate")
    write_report(baseline, tmp_path / "baseline")
    return main(["check", "--report", str(tmp_path / "candidate" / "report.json"), "--baseline",
                 str(tmp_path / "baseline" / "report.json"), *extra])


def _failed(report, index):
    report = copy.deepcopy(report)
    report["rows"][index].update(status="failed to load: ContractError: broken", map50=None, fps=0.0)
    return report


@pytest.mark.parametrize("change", ["failed", "missing", "no accuracy"])
def test_gate_fails_closed_when_a_baseline_format_failed_or_is_missing(report, tmp_path, capsys, change):
    # Before: "gate PASSED: 5/5 checks" with the candidate's ONNX row failed or absent.
    baseline = without_failed_rows(report)
    candidate = {"failed": lambda: _failed(baseline, 1),
                 "missing": lambda: {**baseline, "rows": baseline["rows"][:1]},
                 "no accuracy": lambda: {**baseline, "rows": [baseline["rows"][0],
                                                              {**baseline["rows"][1], "map50": None}]}}[change]()
    assert _gate(tmp_path, candidate, baseline) == 1
    out = capsys.readouterr().out
    expected = {"failed": "FAIL  model.onnx ran", "missing": "FAIL  onnx fp32 (baseline row model.onnx) in the "
                "candidate", "no accuracy": "FAIL  onnx fp32 (baseline row model.onnx) accuracy in the candidate"}
    assert expected[change] in out
    assert re.search(r"gate FAILED: \d+ passed, [1-9]\d* failed, \d+ warned", out)


def test_gate_summary_counts_passed_failed_and_warned(report, tmp_path, capsys):
    baseline = without_failed_rows(report)
    slower = copy.deepcopy(baseline)
    for row in slower["rows"]:
        row["relative_speed"] *= 0.5
    assert _gate(tmp_path, slower, baseline) == 0
    out = capsys.readouterr().out
    passed, warned = out.count("\nPASS  ") + out.startswith("PASS  "), out.count("WARN  ")
    assert f"gate PASSED: {passed} passed, 0 failed, {warned} warned" in out and warned == 2


def test_a_baseline_of_another_dataset_fails_unless_allowed(report, tmp_path, capsys):
    baseline = without_failed_rows(report)
    other = {**baseline, "data": "../shared/datasets/bccd", "classes": ["Platelets", "RBC", "WBC"]}
    assert _gate(tmp_path, baseline, other) == 1
    assert "FAIL  same dataset as the baseline" in capsys.readouterr().out
    assert _gate(tmp_path, baseline, other, "--allow-other-data") == 0
    assert "WARN  same dataset as the baseline" in capsys.readouterr().out


BAD_REPORTS = {
    "fps a string": (lambda r: r["rows"][0].update(fps="fast"), r"row 0 has fields of the wrong type: 'fps' is str"),
    "map50 a bool": (lambda r: r["rows"][0].update(map50=True), r"'map50' is bool True"),
    "row a list": (lambda r: r["rows"].append([1]), r"row 2 is not an object"),
    "rows an object": (lambda r: r.update(rows={}), r"key 'rows' missing or not <class 'list'>"),
    "latency a list": (lambda r: r["rows"][0].update(latency_ms=[1]), r"'latency_ms' is list"),
}


@pytest.mark.parametrize("change, message", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
def test_report_fields_of_the_wrong_type_are_named(report, tmp_path, change, message):
    broken = copy.deepcopy(without_failed_rows(report))
    change(broken)
    (tmp_path / "r.json").write_text(json.dumps(broken))
    with pytest.raises(ReportError, match=r"r.json: .*" + message):
        read_report(tmp_path / "r.json")


def test_check_names_the_missing_partner_option(tmp_path, caplog):
    from scratchdet.cli import main

    assert main(["check", "--baseline", "b.json"]) == 1
    assert "check --baseline b.json needs --report too" in caplog.text
    assert main(["check", "--baseline-config", "tiny"]) == 1
    assert "needs --candidate-config too" in caplog.text


def test_bench_on_a_dataset_of_other_classes_fails_the_row_and_exit_code(tiny_checkpoint, tmp_path, caplog):
    # Before: bench scored the model against foreign classes and exited 0.
    from scratchdet.cli import main
    from scratchdet.train.data.synth import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", images=10, seed=1)
    coco = json.loads((data / "annotations.json").read_text())
    coco["categories"][0]["name"] = "ellipse"
    (data / "annotations.json").write_text(json.dumps(coco))
    code = main(["bench", "--model", str(tiny_checkpoint), "--data", str(data), "--out", str(tmp_path / "bench"),
                 "--repeats", "1", "--per-round", "1", "--batch", "1"])
    assert code == 1 and "every model failed (last.pt)" in caplog.text
    (row,) = read_report(tmp_path / "bench" / "report.json")["rows"]
    assert "classes ['circle', 'square', 'triangle'] differ from the dataset's ['ellipse'" in row["status"]


def test_report_carries_its_receipts(report, tmp_path):
    receipts = report["receipts"]
    for moment in ("before", "after"):
        assert len(receipts[moment]["load_average"]) == 3 and all(v >= 0 for v in receipts[moment]["load_average"])
        assert set(receipts[moment]["frequency_mhz"]) == {str(cpu) for cpu in receipts["affinity"]}
    assert receipts["threads"] == 2 and receipts["affinity"] == sorted(os.sched_getaffinity(0))
    assert set(receipts["governor"]) == {str(cpu) for cpu in receipts["affinity"]}
    assert receipts["cpu"] == report["environment"]["cpu"] and receipts["noisy_bound"] == NOISY_BOUND
    for command in ("nvpmodel", "jetson_clocks"):  # a value, or "n/a: <why>" (here: no such command)
        assert receipts[command] and (shutil.which(command) or receipts[command].startswith("n/a: no "))
    for value in receipts["governor"].values():  # read from sysfs, or why not
        assert value.startswith("n/a: cpufreq/scaling_governor: ") or value.isalpha()
    table = (write_report(report, tmp_path / "bench") / "report.md").read_text()
    assert "Receipts: load average (1/5/15 min) " in table and "jetson_clocks n/a" in table


def test_noisy_rounds_flag_the_row(tiny_checkpoint, monkeypatch, tmp_path):
    # Rounds of the checkpoint at 10 ms and 12 ms: 100 FPS against 83 FPS, a spread of 1.2 > 1.15.
    def rounds(calls, repeats, per_round, on_sample=None):
        result = {}
        for name in calls:
            result[name] = [[10.0] * per_round, [12.0] * per_round]
            for _ in range(repeats * per_round):
                calls[name]()
                if on_sample:
                    on_sample(name)
        return result

    monkeypatch.setattr("scratchdet.benchmarks.harness.interleave", rounds)
    report = run_benchmark([tiny_checkpoint], None, (1,), repeats=2, per_round=2,
                           peak=Peak(fp32_gflops=400.0, int8_gops=1600.0, reference_ms=5.0))
    (row,) = report["rows"]
    assert row["latency_ms"]["round_median_max"] / row["latency_ms"]["round_median_min"] == pytest.approx(1.2)
    assert row["noisy"] is True and round_fps_ratio(row["latency_ms"]) == pytest.approx(1.2)
    assert not is_noisy({"round_median_min": 10.0, "round_median_max": 11.0})  # 1.1: within the bound
    assert "| ok, noisy |" in (write_report(report, tmp_path / "b") / "report.md").read_text()


def test_check_refuses_speed_from_a_noisy_report_unless_allowed(report, tmp_path, capsys):
    baseline = without_failed_rows(report)
    noisy = copy.deepcopy(baseline)
    noisy["rows"][1]["latency_ms"]["round_median_max"] = noisy["rows"][1]["latency_ms"]["round_median_min"] * 1.3
    assert _gate(tmp_path, noisy, baseline, "--enforce-baseline-speed") == 1
    out = capsys.readouterr().out
    assert "FAIL  speed from reports without noisy rows" in out and "candidate model.onnx" in out
    assert "speed not compared" in out and "vs baseline (reference-normalised)" not in out
    assert _gate(tmp_path, noisy, baseline, "--enforce-baseline-speed", "--allow-noisy") == 0
    out = capsys.readouterr().out
    assert "WARN  speed from reports without noisy rows" in out and "compared anyway (--allow-noisy)" in out
    assert "PASS  speed model.onnx vs baseline (reference-normalised)" in out
    assert _gate(tmp_path, baseline, baseline, "--enforce-baseline-speed") == 0
    assert "noisy" not in capsys.readouterr().out


def test_yaml_datasets_are_told_apart_by_their_folder(report):
    # Before: both were "data.yaml", so a report on one dataset passed against a baseline on another.
    bccd, synth = ({**report, "data": f"/data/{name}/data.yaml", "classes": None} for name in ("bccd", "synth"))
    assert not dataset_check(bccd, synth).passed
    assert dataset_check(bccd, {**synth, "data": "../elsewhere/bccd"}).passed


@pytest.mark.openvino
def test_bench_with_ort_and_openvino_writes_what_auto_reads(tiny_checkpoint, tmp_path, no_runtime_recommendation):
    pytest.importorskip("openvino", reason="OpenVINO is in the dev extra: pip install -e '.[dev]'")
    from scratchdet.cli import main
    from scratchdet.models.inference.runtime_choice import choose, host_key

    model, checkpoint = load_model(tiny_checkpoint)
    onnx = export_onnx(model, checkpoint["class_names"], tmp_path / "model.onnx", ExportOptions()).path
    assert main(["bench", "--model", str(onnx), "--runtime", "ort,openvino", "--out", str(tmp_path / "bench"),
                 "--repeats", "2", "--per-round", "2", "--batch", "1"]) == 0
    rows = read_report(tmp_path / "bench" / "report.json")["rows"]
    entry = json.loads(no_runtime_recommendation.read_text())["entries"][host_key("fp32")]
    assert entry["p50_ms"] == {"onnxruntime": rows[0]["latency_ms"]["p50"], "openvino": rows[1]["latency_ms"]["p50"]}
    assert entry["threads"] == 2 and entry["model"] == str(onnx)
    expected = "openvino" if entry["p50_ms"]["onnxruntime"] / entry["p50_ms"]["openvino"] >= 1.05 else "onnxruntime"
    chosen = choose("fp32")
    assert chosen.runtime == expected and str(no_runtime_recommendation) in chosen.reason
