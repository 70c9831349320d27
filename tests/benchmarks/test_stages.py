"""The acceptance runners' shared stage runner, dependency failures, verdict and report writer."""

import json
from types import SimpleNamespace

import pytest

from scratchdet.benchmarks.stages import (
    DETAIL_CHARACTERS,
    Outcome,
    Skip,
    StageError,
    require,
    run_stage,
    verdict,
    write_report,
)


def _raise(error):
    def stage():
        raise error
    return stage


def test_a_stage_passes_or_fails_as_its_outcome_says_and_keeps_its_numbers():
    passed = run_stage(lambda: Outcome("3 engines", {"engines": 3}))
    failed = run_stage(lambda: Outcome("loss rose", {"loss": [1.0, 2.0]}, passed=False))
    assert (passed.status, passed.detail, passed.data) == ("PASS", "3 engines", {"engines": 3})
    assert (failed.status, failed.detail, failed.data) == ("FAIL", "loss rose", {"loss": [1.0, 2.0]})
    assert passed.seconds >= 0


def test_an_exception_is_a_fail_row_of_its_first_line_and_a_skip_says_why():
    failed = run_stage(_raise(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronous")))
    assert (failed.status, failed.detail, failed.data) == ("FAIL", "RuntimeError: CUDA error: out of memory", {})
    assert run_stage(_raise(StageError(""))).detail == "StageError: "
    long = run_stage(_raise(ValueError("x" * 1000))).detail
    assert len(long) == DETAIL_CHARACTERS and long.startswith("ValueError: xxx")
    skipped = run_stage(_raise(Skip("pycocotools not installed")))
    assert (skipped.status, skipped.detail) == ("SKIP", "pycocotools not installed")


def test_require_names_what_an_earlier_stage_did_not_make():
    context = SimpleNamespace(engines={}, onnx={"fp32": "m.onnx"}, images=None)
    require(context, "onnx")
    with pytest.raises(StageError, match=r"^needs engines, images from an earlier stage, which failed$"):
        require(context, "engines", "onnx", "images")
    assert run_stage(lambda: require(context, "engines")).status == "FAIL"


@pytest.mark.parametrize(("statuses", "dry_run", "allowed", "expected"), [
    (["PASS", "PASS"], False, ("PASS",), "PASS"),
    (["PASS", "SKIP"], False, ("PASS",), "FAIL"),  # gpu_check: a skip on a GPU host is a fault
    (["PASS", "SKIP"], False, ("PASS", "SKIP"), "PASS"),  # gpu_train_check: a stage this host cannot run
    (["PASS", "NOT RUN"], False, ("PASS",), "FAIL"),
    ([], False, ("PASS",), "FAIL"),  # no stage ran: nothing was proved
    (["PASS", "NOT RUN"], True, ("PASS",), "DRY RUN OK"),  # a dry run is never PASS
    (["PASS", "FAIL", "NOT RUN"], True, ("PASS",), "DRY RUN FAILED"),
])
def test_verdict(statuses, dry_run, allowed, expected):
    assert verdict([{"status": s} for s in statuses], dry_run, allowed) == expected


def test_the_report_pair_is_replaced_whole_or_not_at_all(tmp_path):
    def markdown(report):
        return f"{len(report['stages'])} stage(s)"

    write_report(tmp_path, {"stages": [{"status": "PASS", "path": tmp_path}]}, markdown)
    assert json.loads((tmp_path / "report.json").read_text()) == {"stages": [{"status": "PASS", "path": str(tmp_path)}]}
    assert (tmp_path / "report.md").read_text() == "1 stage(s)"

    def broken(report):
        raise KeyError("verdict")

    with pytest.raises(KeyError):
        write_report(tmp_path, {"stages": []}, broken)
    assert json.loads((tmp_path / "report.json").read_text())["stages"][0]["status"] == "PASS"  # the previous pair
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]  # no temporary left
