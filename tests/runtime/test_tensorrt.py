"""TensorRT engine builds and inference: run on a GPU host with `pytest -m tensorrt` (`make gpu-check` counts any
skip here as a FAIL). Data: BCCD from ../shared, else the synthetic set (tests/conftest.py trained_data)."""

import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (no NVIDIA GPU stack on this machine)")
if not hasattr(trt, "Builder"):  # type stubs alone import as an empty namespace package
    pytest.skip("TensorRT bindings are not installed (only a `tensorrt` folder without them)", allow_module_level=True)
pytestmark = pytest.mark.tensorrt
IMAGES = 20  # at most, detected in one call: the engine's profile goes up to this batch


def gpu_or_skip():
    from scratchdet.models.inference.cuda_device import CudaError, gpu_info

    try:
        return gpu_info()
    except CudaError as error:
        pytest.skip(f"no usable NVIDIA GPU: {error}")


def _engine(onnx, precision, batches, out):
    from scratchdet.export.engine_plan import make_plan
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.models.contract import load_checked

    _, metadata = load_checked(onnx)
    return build_engine(make_plan(onnx, metadata, precision, trt.__version__, batches, out=out), metadata)


def _images(data, count):
    import cv2

    from scratchdet.train.data.load import load_dataset

    records = load_dataset(data, "val").records[:count]
    return records, [cv2.imread(str(r.path)) for r in records]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_detections_match_onnx_runtime(precision, gpu_models, trained_data, tmp_path):
    from scratchdet.runtime.detector import Detector
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import evaluate

    gpu_or_skip()
    records, images = _images(trained_data, IMAGES)
    engine = _engine(gpu_models[precision], precision, (1, 4, len(images)), tmp_path / f"m-{precision}.engine")
    class_names = load_dataset(trained_data, "val").class_names
    scores = {}
    for name, model in (("onnx", gpu_models["fp32"]), ("engine", engine)):
        with Detector(model, conf=0.01) as detector:
            scores[name] = evaluate(records, detector.detect(images), class_names).map50
    assert abs(scores["engine"] - scores["onnx"]) < 0.02


def test_cuda_graph_replays_other_images_at_alternating_batch_sizes(gpu_models, trained_data, tmp_path):
    """A graph that froze the capture-time detection count (the NMS output is data-dependent) fails here: each
    replay runs images the graph was not captured on, alternating batch 2 and 3, against the uncaptured run."""
    from scratchdet.runtime.detector import Detector

    gpu_or_skip()
    _, images = _images(trained_data, 10)
    assert len(images) >= 8, f"{trained_data} has {len(images)} val images; this test needs 8"
    engine = _engine(gpu_models["fp16"], "fp16", (1, 2, 4), tmp_path / "m-fp16.engine")
    with Detector(engine, conf=0.01) as plain, Detector(engine, conf=0.01, cuda_graph=True) as graphed:
        graphed.detect(images[:2])  # captures batch 2 (or falls back when TensorRT refuses the capture)
        graphed.detect(images[2:5])  # captures batch 3
        for start, batch in ((5, 2), (0, 3), (3, 2), (4, 3), (6, 2)):
            chunk = images[start: start + batch]
            for a, b in zip(plain.detect(chunk), graphed.detect(chunk)):
                assert len(a.scores) == len(b.scores)
                assert abs(a.scores - b.scores).max(initial=0) < 1e-5
                assert abs(a.boxes - b.boxes).max(initial=0) < 1e-3


def test_batch_beyond_the_profile_is_refused_with_the_tensor_name(gpu_models, tmp_path):
    import numpy as np

    from scratchdet.models.contract import load_checked
    from scratchdet.models.inference.tensorrt_backend import TensorRTBackend

    gpu_or_skip()
    backend = TensorRTBackend(_engine(gpu_models["fp32"], "fp32", (1, 1, 2), tmp_path / "m.engine"))
    size = load_checked(gpu_models["fp32"])[1]["input_size"]
    with pytest.raises(ValueError, match="batch 3 exceeds the engine profile's max 2"):
        backend.infer(np.zeros((3, 3, size, size), np.float32))
    with pytest.raises(ValueError, match=r"input 'images' shape \(1, 3, 8, 8\) is outside the engine profile"):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    backend.close()
