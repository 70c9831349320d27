import pytest

from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.models import contract
from scratchdet.models.config import load_model_config
from scratchdet.models.inference.formats import AUTO, open_backend
from scratchdet.models.ssd import SSD


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    config = load_model_config("tiny")
    classes = [f"c{i}" for i in range(1, config.num_classes)]
    return export_onnx(SSD(config).eval(), classes, tmp_path_factory.mktemp("formats") / "model.onnx",
                       ExportOptions()).path


@pytest.mark.parametrize("runtime", [AUTO, "onnxruntime"])
def test_opening_an_onnx_model_reads_the_file_once(onnx_model, monkeypatch, onnx_reads, runtime):
    reads = []
    read_onnx = contract.read_onnx
    monkeypatch.setattr(contract, "read_onnx", lambda path: reads.append(path) or read_onnx(path))
    with onnx_reads.during() as opened:
        backend = open_backend(onnx_model, runtime)
    assert backend.name == "onnxruntime" and backend.class_names == ["c1", "c2", "c3"]
    assert reads == [onnx_model]  # the contract check reads it...
    assert opened == {"python open": 1}  # ...and the session is made from that model, not from the file
