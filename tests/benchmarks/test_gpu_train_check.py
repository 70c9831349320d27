"""make gpu-train-check: one line naming what is missing without a GPU, one row per stage whatever fails, and
the dry run end to end through the Make target (the host-Python path: scratchdet from the checkout on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scratchdet.benchmarks import gpu_train_check
from scratchdet.benchmarks.gpu_train_check import DRY_BUDGET, STAGES, Context, main, markdown, run_stage

REPO = Path(__file__).resolve().parents[2]


def test_refuses_without_a_gpu_with_one_line(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA GPU: make gpu-train-check runs for real here")
    assert main(["--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert lines[0].startswith("gpu-train-check: cannot run here, missing: a CUDA GPU visible to PyTorch (torch ")
    assert not (tmp_path / "out").exists()


def test_a_failing_stage_is_a_fail_row_and_skips_say_why(monkeypatch, tmp_path):
    def broken(ctx):
        raise RuntimeError("CUDA error: out of memory\nmore lines")

    def skipped(ctx):
        raise gpu_train_check.Skip("onnxruntime not installed")

    monkeypatch.setitem(STAGES, "broken", broken)
    monkeypatch.setitem(STAGES, "skipped", skipped)
    ctx = Context(tmp_path, tmp_path, True, DRY_BUDGET)
    rows = [run_stage(name, ctx) for name in ("broken", "skipped")]
    assert rows[0]["status"] == "FAIL" and rows[0]["detail"] == "RuntimeError: CUDA error: out of memory"
    assert rows[1] == {"status": "SKIP", "detail": "onnxruntime not installed", "stage": "skipped",
                       "seconds": rows[1]["seconds"]}
    report = {"dry_run": True, "environment": {"cuda": None, "torch": "2", "cudnn": None, "python": "3", "cpus": 2,
                                               "scratchdet": "x"}, "stages": rows, "seconds": 1.0, "passed": False}
    text = markdown(report)
    assert text.startswith("**DRY RUN on the CPU") and "| broken | FAIL |" in text and "Overall: FAIL" in text


def test_the_report_is_rewritten_after_every_stage(monkeypatch, tmp_path):
    seen = []

    def first(ctx):
        return gpu_train_check.Outcome("ran", {"images_per_s": 1.5})

    def second(ctx):  # what a run killed now would leave behind
        seen.append(json.loads((ctx.out / "report.json").read_text()))
        seen.append((ctx.out / "report.md").read_text())
        raise RuntimeError("killed")

    monkeypatch.setitem(STAGES, "first", first)
    monkeypatch.setitem(STAGES, "second", second)
    report = gpu_train_check.run(tmp_path, True, ["first", "second"])
    assert [r["stage"] for r in seen[0]["stages"]] == ["first"] and seen[0]["stages_left"] == ["second"]
    assert seen[0]["stages"][0]["images_per_s"] == 1.5 and seen[0]["passed"]
    assert "Overall: RUNNING, 1 stage(s) left: second in " in seen[1]
    assert report["stages_left"] == [] and not report["passed"]
    assert "Overall: FAIL in " in (tmp_path / "report.md").read_text()


def _strict(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_dry_run_through_make_passes_every_stage(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["make", "-s", "gpu-train-check", f"GPU_PYTHON={sys.executable}",
                             f"GPU_TRAIN_CHECK_ARGS=--dry-run --out {out}"], cwd=REPO, capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = _strict((out / "report.json").read_text())
    status = {row["stage"]: row["status"] for row in report["stages"]}
    assert status == {"train-fp16": "SKIP", "train-bf16": "PASS", "resume-cpu-checkpoint": "PASS",
                      "kill-resume": "PASS", "ddp": "PASS", "train-throughput": "PASS", "inference": "PASS",
                      "onnxruntime-cuda": "SKIP"}
    rows = {row["stage"]: row for row in report["stages"]}
    assert rows["kill-resume"]["identical"] and rows["ddp"]["backend"] == "gloo"
    assert len(set(rows["ddp"]["param_sha256"])) == 1
    assert [(r["precision"], r["batch"]) for r in rows["inference"]["rows"]] == [
        ("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)]
    assert (out / "report.md").read_text().startswith("**DRY RUN on the CPU")
    assert report["environment"]["scratchdet"] == str(REPO / "scratchdet")
    # What a host without the package installed imports: the venv's editable-install finder, which would take
    # precedence over PYTHONPATH, is taken off sys.meta_path first.
    code = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
            "import scratchdet.models.config, scratchdet.train.trainer, scratchdet.benchmarks.gpu_train_check as g; "
            "print(scratchdet.models.config.__file__, g.__file__)")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.split() == [str(REPO / "scratchdet" / "models" / "config.py"),
                                       str(REPO / "scratchdet" / "benchmarks" / "gpu_train_check.py")]


def test_a_failed_command_reports_the_ranks_cause_and_keeps_its_output(tmp_path):
    # torchrun's last lines only name the signal; the aborting rank's own line comes much earlier
    script = ("import os, sys; sys.stderr.write(\"terminate called after throwing an instance of 'gloo::IoException'"
              "\\n  what():  Connection closed by peer\\n\" + 'noise\\n' * 50); sys.stderr.flush(); os.abort()")
    with pytest.raises(RuntimeError) as raised:
        gpu_train_check._run([sys.executable, "-c", script], log=tmp_path / "ddp.log")
    message = str(raised.value)
    assert "exited -6" in message and f"(whole output: {tmp_path / 'ddp.log'})" in message
    assert "terminate called after throwing an instance of 'gloo::IoException'" in message
    assert "what():  Connection closed by peer" in message
    assert (tmp_path / "ddp.log").read_text().split("--- stderr")[1].count("noise") == 50


def test_under_torchrun_the_failing_rank_leads_not_the_one_torchrun_stopped(tmp_path):
    # torchrun stops the other rank with SIGTERM and lists it too; the rank that failed, and why, come first
    script = tmp_path / "rank.py"
    script.write_text("import os, time\n"
                      "if os.environ['RANK'] == '1':\n"
                      "    raise ValueError('rank 1 fails here')\n"
                      "time.sleep(120)\n")
    with pytest.raises(RuntimeError) as raised:
        gpu_train_check._run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(script)], timeout=120)
    causes = str(raised.value).split(": ", 1)[1].split(" | ")
    assert causes[0].startswith("root cause: rank 1 (local_rank: 1), exitcode 1 (pid: "), causes
    assert "ValueError: rank 1 fails here" in causes[1:]
    assert not any("SIGTERM" in cause for cause in causes)
