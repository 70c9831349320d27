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
from types import SimpleNamespace

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


def _read_only_under(stats: os.statvfs_result, path: object, mount: Path) -> object:
    """`stats` with the read-only flag for `path` in or under `mount`."""
    inside = Path(os.path.abspath(str(path)))
    if inside != mount and mount not in inside.parents:
        return stats
    return SimpleNamespace(f_bavail=stats.f_bavail, f_frsize=stats.f_frsize, f_flag=stats.f_flag | os.ST_RDONLY)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    out = tmp_path_factory.mktemp("hostile_model") / "model.onnx"
    return export_onnx(model, checkpoint["class_names"], out, ExportOptions(simplify=False)).path


@pytest.fixture
def workspace(tmp_path: Path, tiny_checkpoint: Path, tiny_onnx: Path, synth_data: Path,
              monkeypatch: pytest.MonkeyPatch) -> Path:
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
    shutil.copytree(synth_data, tmp_path / "data")  # a source inside the workspace, for `data convert`
    shutil.copyfile(synth_data / "images" / "synth_00000.png", tmp_path / "image.png")
    (tmp_path / "read_only.engine").write_bytes(b"an engine")
    (tmp_path / "read_only_dir").mkdir()
    (tmp_path / "read_only_dir" / "detections.json").write_text("[]")
    for path in (tmp_path / "read_only.engine", tmp_path / "read_only_dir" / "detections.json"):
        path.chmod(0o444)
    (tmp_path / "read_only_mount").mkdir()  # statvfs says so: root writes anywhere, and tests cannot mount
    real_statvfs = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda path: _read_only_under(real_statvfs(path), path,
                                                                       tmp_path / "read_only_mount"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


DATA = "{data}"  # replaced by the synthetic dataset's path
ENGINE_RUNTIMES = ("", " --runtime tensorrt-rtx")  # TensorRT is absent here: its refusal must come first as well
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
    "predict, bad --model": ["predict", "a_file.txt", "--model", "nosuch.onnx"],
    "predict, missing source": ["predict", "nosuch.png", "--model", "model.onnx"],
    "bench, bad --data": ["bench", "--model", "model.onnx", "--data", "nosuchdata", *BENCH],
    "bench --out is a file": ["bench", "--model", "model.onnx", "--out", "a_file.txt", *BENCH],
    "bench, runtime file is a folder": ["bench", "--model", "model.onnx", "--runtime", "ort,openvino", *BENCH],
    "check, report medians are strings": ["check", "--report", "reports/string_median.json", "--json", "g.json"],
    "check, report median negative": ["check", "--report", "reports/negative_median.json", "--json", "g.json"],
    "check, report p50 infinite": ["check", "--report", "reports/infinite_p50.json", "--json", "g.json"],
    "check --json is a folder": ["check", "--report", str(BASELINE), "--baseline", str(BASELINE), "--json", "runs"],
    "compare, bad --data": ["compare", "--baseline-config", "tiny", "--candidate-config", "tiny", "--data",
                            "nosuchdata", "--seeds", "2"],
    **{f"engine{flag}, {what}": [*argv, *flag.split()] for flag in ENGINE_RUNTIMES for what, argv in {
        "bad --model": ["engine", "--model", "nosuch.onnx", "--precision", "fp32"],
        "--model is not an ONNX": ["engine", "--model", "a_file.txt", "--precision", "fp32"],
        "precision not the ONNX's": ["engine", "--model", "model.onnx", "--precision", "int8"],
        "--out is a folder": ["engine", "--model", "model.onnx", "--precision", "fp32", "--out", "runs"],
        "--out under a file": ["engine", "--model", "model.onnx", "--precision", "fp32", "--out",
                               "a_file.txt/m.engine"],
        "--out read-only": ["engine", "--model", "model.onnx", "--precision", "fp32", "--out", "read_only.engine"],
        "--out on a read-only mount": ["engine", "--model", "model.onnx", "--precision", "fp32", "--out",
                                       "read_only_mount/m.engine"],
        "--max-batch below --min-batch": ["engine", "--model", "model.onnx", "--precision", "fp32", "--min-batch", "4",
                                          "--max-batch", "2", "--out", "new/m.engine"],
    }.items()},
    "engine, --sm without tensorrt-rtx": ["engine", "--model", "model.onnx", "--precision", "fp32", "--sm", "SM86"],
    "engine tensorrt-rtx, --sm a Jetson": ["engine", "--model", "model.onnx", "--precision", "fp32", "--runtime",
                                           "tensorrt-rtx", "--sm", "SM87"],
    "engine tensorrt-rtx, --dla-core": ["engine", "--model", "model.onnx", "--precision", "fp32", "--runtime",
                                        "tensorrt-rtx", "--dla-core", "0"],
    "data synth --out is a file": ["data", "synth", "--out", "a_file.txt", "--images", "2"],
    "data synth --out under a file": ["data", "synth", "--out", "a_file.txt/synth", "--images", "2"],
    "data synth --out holds a run": ["data", "synth", "--out", "runs/old", "--images", "2"],
    "data synth --out .": ["data", "synth", "--out", ".", "--images", "2"],
    "data synth --out on a read-only mount": ["data", "synth", "--out", "read_only_mount/synth", "--images", "2"],
    "data synth --images 0": ["data", "synth", "--out", "new/synth", "--images", "0"],
    "data convert, bad source": ["data", "convert", "nosuchdata", "--to", "coco", "--out", "new/converted"],
    "data convert, source not a dataset": ["data", "convert", "runs/old", "--to", "coco", "--out", "new/converted"],
    "data convert, bad format": ["data", "convert", "data", "--to", "voc", "--out", "new/converted"],
    "data convert --out exists": ["data", "convert", "data", "--to", "yolo", "--out", "runs/old"],
    "data convert --out is a file": ["data", "convert", "data", "--to", "yolo", "--out", "a_file.txt"],
    "data convert --out under a file": ["data", "convert", "data", "--to", "yolo", "--out", "a_file.txt/converted"],
    "data convert --out inside the source": ["data", "convert", "data", "--to", "yolo", "--out", "data/converted"],
    "data convert --out .": ["data", "convert", "data", "--to", "yolo", "--out", "."],
    "data convert --out on a read-only mount": ["data", "convert", "data", "--to", "coco", "--out",
                                                "read_only_mount/converted"],
    "predict --save-dir is a file": ["predict", "image.png", "--model", "model.onnx", "--save-dir", "a_file.txt"],
    "predict --save-dir under a file": ["predict", "image.png", "--model", "model.onnx", "--save-dir",
                                        "a_file.txt/predict"],
    "predict --save-dir on a read-only mount": ["predict", "image.png", "--model", "model.onnx", "--save-dir",
                                                "read_only_mount/predict"],
    "predict --save-dir read-only detections.json": ["predict", "image.png", "--model", "model.onnx", "--save-dir",
                                                     "read_only_dir", "--exist-ok"],
    "bundle, bad --model": ["bundle", "--model", "nosuch.onnx", "--data", DATA, "--out", "new/bundle"],
    "bundle, --model not an ONNX": ["bundle", "--model", "a_file.txt", "--data", DATA, "--out", "new/bundle"],
    "bundle --out under a file": ["bundle", "--model", "model.onnx", "--data", DATA, "--out", "a_file.txt/bundle"],
    "bundle --out on a read-only mount": ["bundle", "--model", "model.onnx", "--data", DATA, "--out",
                                          "read_only_mount/bundle"],
    "bundle --out holds a run": ["bundle", "--model", "model.onnx", "--data", DATA, "--out", "runs/old"],
    "bundle --rtx-sm without --rtx": ["bundle", "--model", "model.onnx", "--data", DATA, "--out", "new/bundle",
                                      "--rtx-sm", "SM86"],
    "bundle --rtx, --rtx-sm a Jetson": ["bundle", "--model", "model.onnx", "--data", DATA, "--out", "new/bundle",
                                        "--rtx", "--rtx-sm", "SM87"],
}
ENVIRONMENT = {"bench, runtime file is a folder": {"SCRATCHDET_RUNTIME_FILE": "runs"}}
NAMED = {  # case -> what the first line of its refusal names
    **{f"engine{flag}, {what}": named for flag in ENGINE_RUNTIMES for what, named in {
        "bad --model": "nosuch.onnx: ONNX file not found",
        "--model is not an ONNX": "a_file.txt: not a readable ONNX model",
        "precision not the ONNX's": "model.onnx: an int8 engine needs an ONNX of precision int8-tensorrt",
        "--out is a folder": "runs: is a folder; give a file name",
        "--out under a file": "a_file.txt/m.engine: cannot write the file there",
        "--out read-only": "read_only.engine: the file is read-only",
        "--out on a read-only mount": "read_only_mount/m.engine: cannot write in read_only_mount",
        "--max-batch below --min-batch": "model.onnx: batch profile must satisfy 1 <= min <= opt <= max, got 4/1/2",
    }.items()},
    "engine, --sm without tensorrt-rtx": "--sm names TensorRT-RTX targets",
    "engine tensorrt-rtx, --sm a Jetson": "--sm 'SM87': TensorRT-RTX cannot build for SM87",
    "engine tensorrt-rtx, --dla-core": "--dla-core is for Jetson's TensorRT",
    "data synth --out is a file": "a_file.txt/annotations.json: cannot write the file there",
    "data synth --out under a file": "a_file.txt/synth/annotations.json: cannot write the file there",
    "data synth --out holds a run": "runs/old: holds other files (best.pt, export, last.pt, metrics.jsonl)",
    "data synth --out .": ".: names a folder by '.' alone",
    "data synth --out on a read-only mount": "read_only_mount/synth/annotations.json: cannot write in read_only_mount",
    "data synth --images 0": "argument --images: 0 is not a positive integer",
    "data convert, bad source": "nosuchdata: no such dataset folder or data.yaml",
    "data convert, source not a dataset": "runs/old: not a dataset folder",
    "data convert, bad format": "argument --to: invalid choice: 'voc'",
    "data convert --out exists": "runs/old: exists and is not an empty folder",
    "data convert --out is a file": "a_file.txt: is a file, not a folder",
    "data convert --out under a file": "a_file.txt/converted: cannot write the file there",
    "data convert --out inside the source": "data/converted: the output folder must lie outside the dataset",
    "data convert --out .": ".: names a folder by '.' alone",
    "data convert --out on a read-only mount": "read_only_mount/converted: cannot write in read_only_mount",
    "predict --save-dir is a file": "a_file.txt: is a file, not a folder",
    "predict --save-dir under a file": "a_file.txt/predict: cannot write the file there",
    "predict --save-dir on a read-only mount": "read_only_mount/predict: cannot write in read_only_mount",
    "predict --save-dir read-only detections.json": "read_only_dir/detections.json: the file is read-only",
    "bundle, bad --model": "nosuch.onnx: ONNX file not found",
    "bundle, --model not an ONNX": "a_file.txt: not a readable ONNX model",
    "bundle --out under a file": "a_file.txt/bundle: cannot write the file there",
    "bundle --out on a read-only mount": "read_only_mount/bundle: cannot write in read_only_mount",
    "bundle --out holds a run": "runs/old: exists and is not a bundle",
    "bundle --rtx-sm without --rtx": "--rtx-sm names the targets of TensorRT-RTX engines: add --rtx",
    "bundle --rtx, --rtx-sm a Jetson": "--sm 'SM87': TensorRT-RTX cannot build for SM87",
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_refused_and_changes_nothing(case, workspace, synth_data, monkeypatch, caplog, capsys):
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
    if case in NAMED:  # the refusal's first line names the culprit (a file, or the option of a value)
        refusals = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        refusals += [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]  # argparse
        assert refusals and NAMED[case] in refusals[0].splitlines()[0], f"{case}: {refusals}"


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


def _work_must_not_run(*args, **kwargs):
    raise AssertionError("the work ran before the destination was checked")


LATE = {  # case -> (argv, the long step that must not start, the refusal)
    "bench --out is a file": (["bench", "--model", "model.onnx", "--out", "a_file.txt", *BENCH],
                              "scratchdet.benchmarks.cli.run_benchmark", "a_file.txt/report.json: cannot write"),
    "bench, runtime file is a folder": (["bench", "--model", "model.onnx", "--runtime", "ort,openvino", *BENCH],
                                        "scratchdet.benchmarks.cli.run_benchmark", "runs: is a folder"),
    "val --json read-only": (["val", "--model", "runs/old/best.pt", "--data", DATA, "--json", "read_only.json"],
                             "scratchdet.train.evaluate.detect_dataset", "read_only.json: the file is read-only"),
    "val --json in a file": (["val", "--model", "runs/old/best.pt", "--data", DATA, "--json", "a_file.txt/v.json"],
                             "scratchdet.train.evaluate.detect_dataset", "cannot write the file there"),
    "bundle --out .": (["bundle", "--model", "model.onnx", "--data", DATA, "--out", "."],
                       "scratchdet.export.bundle._fill", "names a folder by '.' alone; give the output a name"),
    "export --out is a folder": (["export", "--model", "runs/old/best.pt", "--out", "runs"],
                                 "scratchdet.export.cli.export_onnx", "runs: is a folder; give a file name"),
    "engine --out is a folder": (["engine", "--model", "model.onnx", "--precision", "fp32", "--out", "runs"],
                                 "scratchdet.export.tensorrt_build.build_engine", "runs: is a folder"),
    "engine tensorrt-rtx --out is a folder": (["engine", "--model", "model.onnx", "--precision", "fp32", "--runtime",
                                               "tensorrt-rtx", "--out", "runs"],
                                              "scratchdet.export.tensorrt_rtx.build_rtx", "runs: is a folder"),
    "data synth --out holds a run": (["data", "synth", "--out", "runs/old", "--images", "2"],
                                     "scratchdet.train.data.synth._fill", "runs/old: holds other files"),
    "data convert --out on a read-only mount": (["data", "convert", "data", "--to", "coco", "--out",
                                                 "read_only_mount/converted"],
                                                "scratchdet.train.data.convert.write_coco",
                                                "cannot write in read_only_mount"),
    "predict --save-dir is a file": (["predict", "image.png", "--model", "model.onnx", "--save-dir", "a_file.txt"],
                                     "scratchdet.runtime.predict.detect_results", "a_file.txt: is a file"),
}


@pytest.mark.parametrize("case", LATE)
def test_a_bad_destination_is_refused_before_the_work(case, workspace, synth_data, monkeypatch, caplog):
    argv, work, refusal = LATE[case]
    monkeypatch.setattr(work, _work_must_not_run)
    monkeypatch.setenv("SCRATCHDET_RUNTIME_FILE", "runs")
    (workspace / "read_only.json").write_text("{}")
    (workspace / "read_only.json").chmod(0o444)
    assert main([str(synth_data) if arg == DATA else arg for arg in argv]) == 1
    assert refusal in caplog.text


def test_check_names_the_report_field_and_the_accepted_range(workspace, caplog):
    for report, field in (("string_median", "'latency_ms.round_median_min' is 'fast'"),
                          ("negative_median", "'latency_ms.round_median_min' is -3.0"),
                          ("infinite_p50", "'latency_ms.p50' is inf")):
        caplog.clear()
        assert main(["check", "--report", f"reports/{report}.json"]) == 1
        assert f"reports/{report}.json: row 0 has fields of the wrong type" in caplog.text
        assert f"{field}, expected a finite number >= 0" in caplog.text


def test_check_tensorrt_refuses_external_data_outside_the_folder_in_one_line(workspace, caplog):
    assert main(["export", "--onnx", "external/model.onnx", "--check-tensorrt"]) == 1
    assert "external/model.onnx: not a readable ONNX model (ValidationError" in caplog.text
