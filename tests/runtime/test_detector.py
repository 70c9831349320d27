from dataclasses import replace

import cv2
import numpy as np
import pytest

from scratchdet.export.verify import compare
from scratchdet.models.boxes import tolerance
from scratchdet.models.config import PostprocessConfig
from scratchdet.models.detections import Detections
from scratchdet.runtime.detector import Detector
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import evaluate, validate


def val_images(trained_data, count):
    data = load_dataset(trained_data, "val")
    return data, [cv2.imread(str(r.path)) for r in data.records[:count]]


def test_pytorch_and_onnx_fp32_give_the_same_detections(trained_models, trained_data):
    _, images = val_images(trained_data, 6)
    torch_results = Detector(trained_models["pt"], conf=0.01).detect(images)
    onnx_results = Detector(trained_models["fp32"], conf=0.01).detect(images)
    # boxes are in original pixels (up to longest side / input_size times larger), so the tolerance scales with them
    scale = max(max(image.shape[:2]) for image in images) / 128
    fp32 = tolerance("export-fp32")
    report = compare(torch_results, onnx_results, tolerance=replace(fp32, box_px=fp32.box_px * scale))
    assert report.detections > 0
    assert not report.count_mismatches and report.unmatched == 0
    assert report.max_box_diff_px < 0.1 * scale and report.max_score_diff < 1e-4


def test_int8_onnx_keeps_the_accuracy_of_fp32(trained_models, trained_data):
    data, images = val_images(trained_data, 30)
    scores = {}
    for name in ("fp32", "int8"):
        results = Detector(trained_models[name], conf=0.01).detect(images)
        scores[name] = evaluate(data.records[:30], results, data.class_names).map50
    assert scores["fp32"] > 0.05, "the fixture model should detect something"
    assert abs(scores["int8"] - scores["fp32"]) < 0.05


class BrightBoxBackend:
    """A stand-in network for coordinate tests: 'detects' the white rectangles of its input batch."""

    name, provider, precision, class_names, input_size = "oracle", "cpu", "fp32", ["box"], 300
    postprocess = PostprocessConfig()

    def __init__(self, max_batch: int = 4) -> None:
        self.max_batch, self.calls = max_batch, []

    def close(self) -> None:
        self.closed = True

    def infer(self, batch):
        if len(batch) > self.max_batch:
            raise AssertionError(f"batch of {len(batch)} exceeds max_batch {self.max_batch}")
        self.calls.append(len(batch))
        results = []
        for image in batch:
            mask = (image.min(axis=0) > 200).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in map(cv2.boundingRect, contours)], np.float32)
            results.append(Detections.from_arrays(boxes, np.ones(len(boxes)), np.zeros(len(boxes))))
        return results


@pytest.mark.parametrize("size", [(640, 480), (300, 300), (200, 700), (1280, 360)])
@pytest.mark.parametrize("kind", ["bgr", "gray", "bgra", "rgb16"])
def test_boxes_come_back_in_original_image_coordinates(size, kind):
    width, height = size
    truth = np.array([[0.1, 0.2, 0.3, 0.5], [0.55, 0.6, 0.9, 0.95]]) * [width, height, width, height]
    canvas = np.full((height, width, 3), 40, np.uint8)
    for x1, y1, x2, y2 in truth.astype(int):
        canvas[y1:y2, x1:x2] = 255
    image = {"bgr": canvas, "gray": canvas[..., 0], "bgra": cv2.cvtColor(canvas, cv2.COLOR_BGR2BGRA),
             "rgb16": canvas[..., ::-1].astype(np.uint16) * 257}[kind]
    (result,) = Detector(BrightBoxBackend(), conf=0.5).detect(image, color="rgb" if kind == "rgb16" else "bgr")
    found = result.boxes[np.argsort(result.boxes[:, 0])]
    # one input pixel of resize blur, scaled back to the original
    tolerance = 1.5 * max(width, height) / 300
    np.testing.assert_allclose(found, truth, atol=tolerance)
    assert result.frame == "image" and result.class_ids.tolist() == [0, 0]


def test_detector_chunks_batches_to_the_backend_maximum_and_closes_it():
    backend = BrightBoxBackend(max_batch=3)
    images = [np.full((100, 100, 3), 40, np.uint8)] * 8
    with Detector(backend) as detector:
        results = detector.detect(images)
        assert detector.last_times.total >= detector.last_times.backend > 0
    assert backend.calls == [3, 3, 2] and len(results) == 8 and backend.closed


def test_detector_rejects_unknown_options_bad_conf_and_unknown_classes():
    with pytest.raises(TypeError, match="unexpected keyword argument 'treads'"):
        Detector(BrightBoxBackend(), treads=2)
    for conf in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="conf must be within"):
            Detector(BrightBoxBackend(), conf=conf)
    with pytest.raises(ValueError, match=r"classes \[3\] are not ids of this model"):
        Detector(BrightBoxBackend(), classes=[0, 3])


def test_default_conf_is_the_models_deployment_threshold():
    assert Detector(BrightBoxBackend()).conf == PostprocessConfig().deploy_score_threshold == 0.25


def test_onnx_and_pytorch_map_are_equal_through_the_one_dataset_path(trained_models, trained_data):
    data = load_dataset(trained_data, "val")
    results = {name: validate(Detector(trained_models[name], conf=0.0), data) for name in ("pt", "fp32")}
    assert results["pt"].map50 > 0.05, "the fixture model should detect something"
    assert results["fp32"].map50 == pytest.approx(results["pt"].map50, abs=1e-3)
    assert results["fp32"].coco_ap == pytest.approx(results["pt"].coco_ap, abs=1e-3)


def test_unknown_suffix_and_contract_violations_are_refused(tmp_path):
    import onnx

    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown model format '.tflite'"):
        Detector(tmp_path / "model.tflite")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match=r"plain.onnx: missing output\(s\)"):
        Detector(tmp_path / "plain.onnx")


def test_engine_without_sidecar_is_refused(tmp_path):
    from scratchdet.models.contract import read_sidecar

    (tmp_path / "m.engine").write_bytes(b"plan")
    with pytest.raises(FileNotFoundError, match="m.engine: no sidecar m.json"):
        read_sidecar(tmp_path / "m.engine")


def test_buffer_sizes_follow_the_profile_and_refuse_dynamic_shapes():
    from scratchdet.models.inference.tensorrt_backend import TensorSpec, buffer_bytes

    specs = [TensorSpec("images", True, np.dtype(np.float32), (8, 3, 300, 300)),
             TensorSpec("num_dets", False, np.dtype(np.int32), (8, 1))]
    assert buffer_bytes(specs) == {"images": 8 * 3 * 300 * 300 * 4, "num_dets": 32}
    with pytest.raises(ValueError, match="'images' has a dynamic shape"):
        buffer_bytes([TensorSpec("images", True, np.dtype(np.float32), (-1, 3, 300, 300))])
