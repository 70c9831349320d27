"""TensorRT engine builds and inference: run on a GPU host with `pytest -m tensorrt`."""

import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (no NVIDIA GPU stack on this machine)")
pytestmark = pytest.mark.tensorrt


def gpu_or_skip():
    from scratchdet.export.cuda_device import CudaError, gpu_info

    try:
        return gpu_info()
    except CudaError as error:
        pytest.skip(f"no usable NVIDIA GPU: {error}")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_detections_match_onnx_runtime(precision, bccd_models, bccd, tmp_path):
    from scratchdet.export.contract import load_checked
    from scratchdet.export.engine_plan import make_plan
    from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.runtime.detector import Detector
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import evaluate

    gpu_or_skip()
    fp32 = bccd_models["fp32"]
    onnx = (convert_fp16(fp32, tmp_path / "m-fp16.onnx") if precision == "fp16"
            else quantize_int8(fp32, bccd, "tensorrt", tmp_path / "m-int8.onnx", CalibrationOptions(images=32)))
    _, metadata = load_checked(onnx)
    plan = make_plan(onnx, metadata, precision, trt.__version__, (1, 1, 4), out=tmp_path / f"m-{precision}.engine")
    engine = build_engine(plan, metadata)
    data = load_dataset(bccd, "val")
    import cv2

    images = [cv2.imread(str(r.path)) for r in data.records[:20]]
    scores = {}
    for name, model in (("onnx", fp32), ("engine", engine)):
        results = Detector(model, conf=0.01).detect(images)
        detections = results
        scores[name] = evaluate(data.records[:20], detections, data.class_names).map50
    assert abs(scores["engine"] - scores["onnx"]) < 0.02
