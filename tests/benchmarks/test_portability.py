import numpy as np
import onnx
import pytest

from scratchdet.benchmarks.portability import tensor_differences, with_quantized_outputs


def test_every_quantised_tensor_becomes_an_output_and_runs(bccd_models, tmp_path):
    from scratchdet.models.inference.onnxruntime_backend import create_session

    model = onnx.load(str(bccd_models["int8"]))
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
