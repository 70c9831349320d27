import numpy as np
import onnx
import pytest

from scratchdet.benchmarks.portability import (
    found_again,
    near_match_fraction,
    parity_problems,
    tensor_differences,
    with_quantized_outputs,
)
from scratchdet.models.detections import Detections


def test_every_quantised_tensor_becomes_an_output_and_runs(trained_models, tmp_path):
    from scratchdet.models.inference.onnxruntime_backend import create_session

    model = onnx.load(str(trained_models["int8"]))
    debug, names = with_quantized_outputs(model)
    assert names == [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(debug.graph.output) == len(model.graph.output) + len(names)
    assert len(model.graph.output) == 4  # the original is untouched
    path = tmp_path / "debug.onnx"
    onnx.save(debug, str(path))
    images = np.random.default_rng(0).uniform(0, 255, (1, 3, 128, 128)).astype(np.float32)
    outputs = create_session(path).run(names, {"images": images})
    assert all(o.dtype == np.uint8 for o in outputs)


def test_a_float_model_is_refused():
    model = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    with pytest.raises(ValueError, match="no QuantizeLinear"):
        with_quantized_outputs(model)


def test_tensor_differences_count_elements_and_steps():
    host = {"a": np.array([1, 2, 3], np.uint8), "b": np.array([[0, 255]], np.uint8)}
    other = {"a": np.array([1, 2, 3], np.uint8), "b": np.array([[2, 250]], np.uint8)}
    a, b = tensor_differences(host, other, ["a", "b"])
    assert (a.differing, a.size, a.max_difference) == (0, 3, 0)
    assert (b.differing, b.size, b.max_difference) == (2, 2, 5)


def outputs(boxes, scores, classes):
    """One image's raw NMS outputs (num_dets, det_boxes, det_scores, det_classes) padded to 4 rows."""
    count = len(scores)
    pad = 4 - count
    return {"num_dets": np.array([[count]], np.int32),
            "det_boxes": np.array([[*boxes, *[[0, 0, 0, 0]] * pad]], np.float32),
            "det_scores": np.array([[*scores, *[0] * pad]], np.float32),
            "det_classes": np.array([[*classes, *[0] * pad]], np.int32)}


def test_arm_comparisons_use_the_arm_tolerances():
    host = outputs([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.5], [0, 1])
    rounded = outputs([[0, 0, 10, 10.0005], [20, 20, 30, 30]], [0.9, 0.5], [0, 1])  # within 1e-3 px
    assert parity_problems(host, rounded, exact=False) == [] and parity_problems(host, rounded, exact=True) != []
    near = outputs([[1, 0, 11, 10], [20, 20, 30, 31.5]], [0.91, 0.5], [0, 1])  # 1 px and 0.01 away; 1.5 px away
    assert parity_problems(host, near, exact=False) != []
    assert near_match_fraction(host, near) == 0.5


def test_found_again_counts_confident_reference_detections_at_iou_07():
    reference = [Detections.from_arrays([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.5, 0.1],
                                        [0, 0, 0])]
    candidate = [Detections.from_arrays([[0, 0, 10, 7], [20, 20, 30, 28]], [0.85, 0.5], [0, 0])]  # IoU 0.7, 0.8
    assert found_again(reference, candidate) == (2, 2)  # the 0.1 detection is below 0.25: not counted
    moved = [Detections.from_arrays([[0, 0, 10, 6.5], [20, 20, 30, 28]], [0.85, 0.35], [0, 0])]
    assert found_again(reference, moved) == (0, 2)  # IoU 0.65; score 0.15 away
