import pytest

from export.onnx_export import ExportOptions, export_onnx
from export.quantize import CalibrationOptions, quantize_int8
from models.checkpoint import load_model


@pytest.fixture(scope="session")
def bccd_models(bccd_checkpoint, bccd, tmp_path_factory):
    """The BCCD-trained tiny model as checkpoint, FP32 ONNX and INT8 (ort) ONNX."""
    model, checkpoint = load_model(bccd_checkpoint)
    folder = tmp_path_factory.mktemp("bccd_models")
    fp32 = export_onnx(model, checkpoint["class_names"], folder / "model.onnx", ExportOptions()).path
    int8 = quantize_int8(fp32, bccd, "ort", folder / "model-int8-ort.onnx", CalibrationOptions(images=32))
    return {"pt": bccd_checkpoint, "fp32": fp32, "int8": int8}
