"""Hostile inputs: a bad --config, --data, --out (or another input or value) is refused in one line and leaves
the file system byte-identical, for every command.

Each case runs the command in a workspace holding a previous run (runs/old: last.pt, best.pt, export/), an
exported model and a bench report, snapshots every file's bytes and mode before and after, and asserts that
the command failed and that nothing was created, changed or removed. A new command or option gets a case here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import onnx
import pytest

from scratchdet.benchmarks import gpu_check
from scratchdet.cli import main

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "benchmarks" / "baselines" / "demo_tiny.json"


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under `root` (hidden ones too): its kind and mode, and a file's SHA-256."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
        entries[str(path.relative_to(root))] = (f"{stat.filemode(info.st_mode)}", digest)
    return entries


def _report(path: Path, **latency: object) -> Path:
    report = json.loads(BASELINE.read_text())
    report["rows"][0]["latency_ms"].update(latency)
    path.write_text(json.dumps(report))
    return path


def _outside_external_data(source: Path, path: Path) -> Path:
    """`source` with its largest weight moved to external data that points outside the model's folder."""
    model = onnx.load(str(source))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../outside.bin"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    out = tmp_path_factory.mktemp("hostile_model") / "model.onnx"
    return export_onnx(model, checkpoint["class_names"], out, ExportOptions(simplify=False)).path


@pytest.fixture
def workspace(tmp_path: Path, tiny_checkpoint: Path, tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    old = tmp_path / "runs" / "old"
    (old / "export").mkdir(parents=True)
    for name in ("last.pt", "best.pt"):
        shutil.copyfile(tiny_checkpoint, old / name)
    shutil.copyfile(tiny_onnx, old / "export" / "model.onnx")
    (old / "metrics.jsonl").write_text('{"epoch": 1}\n')
    shutil.copyfile(tiny_onnx, tmp_path / "model.onnx")
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    (tmp_path / "reports").mkdir()
    _report(tmp_path / "reports" / "string_median.json", round_median_min="fast", round_median_max="slow")
    _report(tmp_path / "reports" / "negative_median.json", round_median_min=-3.0)
    _report(tmp_path / "reports" / "infinite_p50.json", p50=float("inf"))
    (tmp_path / "external").mkdir()
    _outside_external_data(tiny_onnx, tmp_path / "external" / "model.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


DATA = "{data}"  # replaced by the synthetic dataset's path
BENCH = ["--batch", "1", "--repeats", "1", "--per-round", "1"]
CASES = {
    "train --exist-ok, bad --config": ["train", "--config", "nosuchconfig", "--data", DATA, "--out", "runs/old",
                                       "--epochs", "1", "--exist-ok"],
    "train --exist-ok, bad --data": ["train", "--config", "tiny", "--data", "nosuchdata", "--out", "runs/old",
                                     "--epochs", "1", "--exist-ok"],
    "train --out is a file": ["train", "--config", "tiny", "--data", DATA, "--out", "a_file.txt", "--epochs", "1"],
    "train --resume, bad --data": ["train", "--config", "tiny", "--data", "nosuchdata", "--out", "runs/old",
                                   "--resume"],
    "val, bad --data": ["val", "--model", "runs/old/best.pt", "--data", "nosuchdata", "--json", "new/val.json"],
    "val, bad --model": ["val", "--model", "nosuch.pt", "--data", DATA, "--json", "new/val.json"],
    "val --json is a folder": ["val", "--model", "runs/old/best.pt", "--data", DATA, "--json", "runs"],
    "val --json under a file": ["val", "--model", "runs/old/best.pt", "--data", DATA, "--json", "a_file.txt/v.json"],
    "export, bad --data": ["export", "--model", "runs/old/best.pt", "--data", "nosuchdata"],
    "export, bad --config": ["export", "--config", "nosuchconfig", "--out", "new/model.onnx"],
    "export --out is a folder": ["export", "--model", "runs/old/best.pt", "--out", "runs"],
    "export --check-tensorrt, external data outside": ["export", "--onnx", "external/model.onnx",
                                                       "--check-tensorrt"],
    "quantize, bad --data": ["quantize", "--model", "model.onnx", "--data", "nosuchdata"],
    "quantize --out is a folder": ["quantize", "--model", "model.onnx", "--data", DATA, "--out", "runs"],
    "quantize, external data outside": ["quantize", "--model", "external/model.onnx", "--data", DATA],
    "bundle, bad --data": ["bundle", "--model", "model.onnx", "--data", "nosuchdata", "--out", "new/bundle"],
    "bundle --out .": ["bundle", "--model", "model.onnx", "--data", DATA, "--out", "."],
    "bundle --out is a file": ["bundle", "--model", "model.onnx", "--data", DATA, "--out", "a_file.txt"],
    "predict, bad --model": ["predict", "model.onnx", "--model", "nosuch.onnx"],
    "predict, missing source": ["predict", "nosuch.png", "--model", "model.onnx"],
    "bench, bad --data": ["bench", "model.onnx", "--data", "nosuchdata", *BENCH],
    "bench --out is a file": ["bench", "model.onnx", "--out", "a_file.txt", *BENCH],
    "bench, runtime file is a folder": ["bench", "model.onnx", "--runtime", "ort,openvino", *BENCH],
    "check, report medians are strings": ["check", "--report", "reports/string_median.json", "--json", "g.json"],
    "check, report median negative": ["check", "--report", "reports/negative_median.json", "--json", "g.json"],
    "check, report p50 infinite": ["check", "--report", "reports/infinite_p50.json", "--json", "g.json"],
    "check --json is a folder": ["check", "--report", str(BASELINE), "--baseline", str(BASELINE), "--json", "runs"],
    "compare, bad --data": ["compare", "--baseline-config", "tiny", "--candidate-config", "tiny", "--data",
                            "nosuchdata", "--seeds", "2"],
}
ENVIRONMENT = {"bench, runtime file is a folder": {"SCRATCHDET_RUNTIME_FILE": "runs"}}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_refused_and_changes_nothing(case, workspace, synth_data, monkeypatch):
    """A traceback (an exception main does not turn into one line) fails the test as well."""
    for name, value in ENVIRONMENT.get(case, {}).items():
        monkeypatch.setenv(name, value)
    argv = [str(synth_data) if arg == DATA else arg for arg in CASES[case]]
    before = snapshot(workspace)
    try:
        code = main(argv)
    except SystemExit as error:  # argparse
        code = error.code
    assert code not in (0, None), f"{case}: exit code {code}"
    assert snapshot(workspace) == before, f"{case}: the file system changed"


GPU_CHECK_CASES = {
    "--max-batch 0": ["--data", DATA, "--dry-run", "--max-batch", "0"],
    "--iterations -5": ["--data", DATA, "--dry-run", "--iterations", "-5"],
    "--epochs 0": ["--data", DATA, "--dry-run", "--epochs", "0"],
    "--out is a file": ["--data", DATA, "--dry-run", "--out", "a_file.txt"],
    "--data missing": ["--data", "nosuchdata", "--dry-run"],
    "--model missing": ["--data", DATA, "--dry-run", "--model", "nosuch.pt"],
}


@pytest.mark.parametrize("case", GPU_CHECK_CASES)
def test_gpu_check_refuses_a_bad_input_before_any_stage(case, workspace, synth_data, capsys):
    argv = [str(synth_data) if arg == DATA else arg for arg in GPU_CHECK_CASES[case]]
    before = snapshot(workspace)
    try:
        code = gpu_check.main(argv)
    except SystemExit as error:
        code = error.code
    assert code not in (0, None)
    assert snapshot(workspace) == before
    error = capsys.readouterr().err
    assert "Traceback" not in error and ("gpu-check:" in error or "error: argument" in error)


def test_make_gpu_check_refuses_a_mistyped_dataset(tmp_path):
    typo = tmp_path / "runs" / "data" / "synht"
    result = subprocess.run(["make", "-s", "-C", str(REPO), "gpu-check", f"DATA={typo}"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "MAKEFLAGS": ""})
    assert result.returncode != 0
    assert f"DATA={typo}: no such dataset" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_train_exist_ok_replaces_the_previous_run_once_every_input_is_good(workspace, synth_data):
    assert main(["train", "--config", "tiny", "--data", str(synth_data), "--out", "runs/old", "--epochs", "1",
                 "--batch", "8", "--exist-ok"]) == 0
    assert not (workspace / "runs" / "old" / "export").exists()  # derived from the previous weights
    assert (workspace / "runs" / "old" / "last.pt").is_file()
