"""The command line as a user meets it: bad values refused by argparse, bad files reported in one line naming
the file and the problem (a traceback only with -v)."""

import json
import math
import subprocess
import sys

import onnx
import pytest
import torch

from scratchdet.arguments import positive_int_list, probability
from scratchdet.cli import main


@pytest.fixture(scope="module")
def onnx_model(tiny_checkpoint, tmp_path_factory):
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    return export_onnx(model, checkpoint["class_names"], tmp_path_factory.mktemp("cli") / "model.onnx",
                       ExportOptions()).path


BAD_VALUES = {
    "epochs 0": (["train", "--config", "tiny", "--data", "d", "--out", "o", "--epochs", "0"],
                 "argument --epochs: 0 is not a positive integer"),
    "batch 0": (["train", "--config", "tiny", "--data", "d", "--out", "o", "--batch", "0"],
                "argument --batch: 0 is not a positive integer"),
    "lr nan": (["train", "--config", "tiny", "--data", "d", "--out", "o", "--lr", "nan"],
               "argument --lr: 'nan' is not a finite number"),
    "conf 1.5": (["predict", "x.jpg", "--model", "m.onnx", "--conf", "1.5"], "argument --conf: 1.5 is outside [0, 1]"),
    "conf nan": (["predict", "x.jpg", "--model", "m.onnx", "--conf", "nan"], "argument --conf: 'nan' is not a finite"),
    "threads -4": (["predict", "x.jpg", "--model", "m.onnx", "--threads", "-4"],
                   "argument --threads: -4 is not a positive integer"),
    "classes -1": (["predict", "x.jpg", "--model", "m.onnx", "--classes", "-1"], "argument --classes: -1 is negative"),
    "bench batch 0": (["bench", "--model", "m.onnx", "--batch", "1,0"], "argument --batch: 0 is not a positive"),
    "opset 99": (["export", "--config", "tiny", "--opset", "99"], "argument --opset: 99 is outside 13..20"),
    "score-thr 2": (["export", "--config", "tiny", "--score-thr", "2"], "argument --score-thr: 2.0 is outside [0, 1]"),
    "calib-images 0": (["quantize", "--onnx", "m.onnx", "--calib-images", "0"], "argument --calib-images: 0 is not"),
    "map-tolerance -1": (["check", "--report", "r.json", "--map-tolerance", "-1"], "argument --map-tolerance: -1.0 is"),
}


@pytest.mark.parametrize("argv, message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused_by_argparse(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_value_types_accept_the_edges():
    assert probability("0") == 0.0 and probability("1") == 1.0
    assert positive_int_list("1, 8") == (1, 8)
    assert not math.isnan(probability("0.5"))


def _png_header(width: int, height: int) -> bytes:
    from tests.train.data.test_coco import _png_header as png

    return png(width, height)


def _tamper(source, folder, **values):
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key in values:
            prop.value = json.dumps(values[prop.key])
    path = folder / "tampered.onnx"
    onnx.save(model, str(path))
    return path


def _report(folder, **row_values):
    from scratchdet.benchmarks.harness import Row

    row = {**Row("m", "m.onnx", "onnx", "fp32").__dict__, "fps": 10.0, "latency_ms": {"p50": 100.0}, **row_values}
    report = {"environment": {}, "peak": {}, "paper_fps": 25.0, "data": None, "batches": [1], "rows": [row]}
    (folder / "r.json").write_text(json.dumps(report))
    return ["check", "--report", str(folder / "r.json")]


def _setup(case, tmp, checkpoint, onnx_model, synth):
    """argv for each case of a bad input that used to end in a raw traceback or a misleading message."""
    if case == "annotations.json is []":
        (tmp / "d" / "images").mkdir(parents=True)
        (tmp / "d" / "annotations.json").write_text("[]")
        return ["train", "--config", "tiny", "--data", str(tmp / "d"), "--out", str(tmp / "run")]
    if case == "image without file_name":
        import shutil

        shutil.copytree(synth, tmp / "d")
        coco = json.loads((tmp / "d" / "annotations.json").read_text())
        del coco["images"][3]["file_name"]
        coco["annotations"][0]["category_id"] = 99
        (tmp / "d" / "annotations.json").write_text(json.dumps(coco))
        return ["val", "--weights", str(checkpoint), "--data", str(tmp / "d")]
    if case == "oversized image":
        (tmp / "huge.png").write_bytes(_png_header(40000, 30000))
        return ["predict", str(tmp / "huge.png"), "--model", str(onnx_model), "--save-dir", str(tmp / "out")]
    if case == "checkpoint without class names":
        data = torch.load(checkpoint, weights_only=True)
        del data["class_names"]
        torch.save(data, tmp / "bad.pt")
        return ["export", "--weights", str(tmp / "bad.pt"), "--out", str(tmp / "m.onnx")]
    if case == "ONNX with a short class list":
        return ["predict", str(tmp), "--model", str(_tamper(onnx_model, tmp, class_names=["one"]))]
    if case == "ONNX input size contradicting the graph":
        return ["predict", str(tmp), "--model", str(_tamper(onnx_model, tmp, input_size=300))]
    if case == "ONNX non-numeric threshold":
        return ["predict", str(tmp), "--model", str(_tamper(onnx_model, tmp, score_threshold="low"))]
    if case == "report field of the wrong type":
        return _report(tmp, fps="fast")
    if case == "classes beyond the model's":
        (tmp / "in").mkdir()
        return ["predict", str(tmp / "in"), "--model", str(onnx_model), "--classes", "7"]
    if case == "empty ONNX":
        (tmp / "empty.onnx").write_bytes(b"")
        return ["predict", str(tmp), "--model", str(tmp / "empty.onnx")]
    if case == "verify an INT8 model":
        return ["export", "--weights", str(checkpoint), "--onnx", str(_tamper(onnx_model, tmp, precision="int8-ort")),
                "--verify"]
    if case == "not a checkpoint":
        (tmp / "junk.pt").write_text("hello")
        return ["val", "--model", str(tmp / "junk.pt"), "--data", str(synth)]
    raise AssertionError(case)


CASES = {
    "annotations.json is []": r"annotations.json: expected a COCO object .* found a JSON list",
    "image without file_name": r"annotations.json: image 4 \(images\[3\]\) has missing or invalid file_name"
                               r"[\s\S]*annotation 1 has unknown category_id 99",
    "oversized image": r"huge.png: OpenCV cannot read the image",
    "checkpoint without class names": r"bad.pt: 'class_names' must list 3 names .* found None",
    "ONNX with a short class list": r"tampered.onnx: metadata contradicts .* 1 class_names for a model of 3 classes",
    "ONNX input size contradicting the graph": r"tampered.onnx: .* input_size 300 but the graph's input is",
    "ONNX non-numeric threshold": r"tampered.onnx: .* score_threshold must be a number in \[0, 1\], found 'low'",
    "report field of the wrong type": r"r.json: row 0 has fields of the wrong type: 'fps' is str 'fast'",
    "classes beyond the model's": r"classes \[7\] are not ids of this model: 0..2 \(circle, square, triangle\)",
    "empty ONNX": r"empty.onnx: empty file, not an ONNX model",
    "verify an INT8 model": r"tampered.onnx: --verify checks an FP32 export .* this model is int8-ort",
    "not a checkpoint": r"junk.pt: not a checkpoint written by torch.save \(starts with b'hell', neither",
}


@pytest.mark.parametrize("case, message", CASES.items(), ids=CASES.keys())
def test_bad_inputs_end_in_one_error_naming_file_and_problem(tmp_path, tiny_checkpoint, onnx_model, synth_data,
                                                             caplog, case, message):
    argv = _setup(case, tmp_path, tiny_checkpoint, onnx_model, synth_data)
    assert main(argv) == 1  # before: raw tracebacks (KeyError, TypeError, cv2.error) or misleading messages
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info is None
    assert __import__("re").search(message, record.getMessage()), record.getMessage()


def test_verbose_shows_the_traceback(tmp_path, synth_data):
    (tmp_path / "junk.pt").write_text("hello")
    from scratchdet.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="junk.pt: not a checkpoint written by torch.save"):
        main(["-v", "val", "--model", str(tmp_path / "junk.pt"), "--data", str(synth_data)])


def test_nms_overhead_on_a_bad_checkpoint_is_one_line(tmp_path):
    (tmp_path / "junk.pt").write_text("hello")
    result = subprocess.run([sys.executable, "-m", "scratchdet.benchmarks.studies.nms_overhead", "--model",
                             str(tmp_path / "junk.pt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: {tmp_path / 'junk.pt'}: not a checkpoint written by torch")
