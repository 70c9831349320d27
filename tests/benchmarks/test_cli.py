import json

from scratchdet.cli import main
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.models.checkpoint import load_model


def test_bench_exits_nonzero_when_a_model_fails_and_keeps_its_row(tiny_checkpoint, tmp_path):
    model, checkpoint = load_model(tiny_checkpoint)
    good = export_onnx(model, checkpoint["class_names"], tmp_path / "model.onnx", ExportOptions()).path
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    arguments = ["bench", "--model", str(good), "--batch", "1", "--repeats", "1", "--per-round", "2",
                 "--out", str(tmp_path / "bench")]
    assert main(arguments) == 0
    assert main([*arguments[:3], str(broken), *arguments[3:]]) == 1
    rows = json.loads((tmp_path / "bench" / "report.json").read_text())["rows"]
    assert rows[0]["status"] == "ok"
    assert rows[1]["path"] == str(broken) and rows[1]["status"].startswith("failed to load")
