"""TensorRT engine builds and inference: run on a GPU host with `pytest -m tensorrt`."""

import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (no NVIDIA GPU stack on this machine)")
if not hasattr(trt, "Builder"):  # type stubs alone import as an empty namespace package
    pytest.skip("TensorRT bindings are not installed (only a `tensorrt` folder without them)", allow_module_level=True)
pytestmark = pytest.mark.tensorrt
IMAGES = 20  # detected in one call: the engine's profile goes up to this batch


def gpu_or_skip():
    from scratchdet.models.inference.cuda_device import CudaError, gpu_info

    try:
        return gpu_info()
    except CudaError as error:
        pytest.skip(f"no usable NVIDIA GPU: {error}")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_detections_match_onnx_runtime(precision, trained_models, trained_data, tmp_path):
    from scratchdet.export.engine_plan import make_plan
    from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.models.contract import load_checked
    from scratchdet.runtime.detector import Detector
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import evaluate

    gpu_or_skip()
    fp32 = trained_models["fp32"]
    onnx = (convert_fp16(fp32, tmp_path / "m-fp16.onnx") if precision == "fp16"
            else quantize_int8(fp32, trained_data, "tensorrt", tmp_path / "m-int8.onnx", CalibrationOptions(images=32)))
    _, metadata = load_checked(onnx)
    plan = make_plan(onnx, metadata, precision, trt.__version__, (1, 4, IMAGES),
                     out=tmp_path / f"m-{precision}.engine")
    engine = build_engine(plan, metadata)
    data = load_dataset(trained_data, "val")
    import cv2

    images = [cv2.imread(str(r.path)) for r in data.records[:IMAGES]]
    scores = {}
    for name, model in (("onnx", fp32), ("engine", engine)):
        results = Detector(model, conf=0.01).detect(images)
        detections = results
        scores[name] = evaluate(data.records[:IMAGES], detections, data.class_names).map50
    assert abs(scores["engine"] - scores["onnx"]) < 0.02
    plain = Detector(engine, conf=0.01).detect(images[:4])
    graphed = Detector(engine, conf=0.01, cuda_graph=True)  # falls back when capture is refused
    for _ in range(2):  # the second call replays the graph when capture worked
        for a, b in zip(plain, graphed.detect(images[:4])):
            assert len(a.scores) == len(b.scores) and abs(a.scores - b.scores).max(initial=0) < 1e-5
    graphed.backend.close()


def test_batch_beyond_the_profile_is_refused_with_the_tensor_name(trained_models, tmp_path):
    import numpy as np

    from scratchdet.export.engine_plan import make_plan
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.models.contract import load_checked
    from scratchdet.models.inference.tensorrt_backend import TensorRTBackend

    gpu_or_skip()
    _, metadata = load_checked(trained_models["fp32"])
    plan = make_plan(trained_models["fp32"], metadata, "fp32", trt.__version__, (1, 1, 2), out=tmp_path / "m.engine")
    backend = TensorRTBackend(build_engine(plan, metadata))
    size = metadata["input_size"]
    with pytest.raises(ValueError, match="batch 3 exceeds the engine profile's max 2"):
        backend.infer(np.zeros((3, 3, size, size), np.float32))
    with pytest.raises(ValueError, match=r"input 'images' shape \(1, 3, 8, 8\) is outside the engine profile"):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    backend.close()
