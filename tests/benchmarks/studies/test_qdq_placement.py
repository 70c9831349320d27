import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scratchdet.benchmarks.studies.qdq_placement import main, non_int8_dequantize, placement


def conv_with_bias(bias_type: int) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(w int8), b) -> Reshape: b either float or DQ(int32), the onnx-tensorrt#850 case."""
    init = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.int8(0), "z"),
            numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w_q"),
            numpy_helper.from_array(np.ones(2, np.float32) * 0.1, "w_s"),
            numpy_helper.from_array(np.zeros(2, np.int8), "w_z"),
            numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["x_q"], name="q"),
             helper.make_node("DequantizeLinear", ["x_q", "s", "z"], ["x_dq"], name="dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="w_dq", axis=0)]
    if bias_type == TensorProto.INT32:
        init += [numpy_helper.from_array(np.array([3, 4], np.int32), "b_q"),
                 numpy_helper.from_array(np.ones(2, np.float32) * 0.01, "b_s"),
                 numpy_helper.from_array(np.zeros(2, np.int32), "b_z")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], name="bias_dq", axis=0))
    else:
        init.append(numpy_helper.from_array(np.array([0.3, 0.4], np.float32), "b"))
    nodes += [helper.make_node("Conv", ["x_dq", "w", "b"], ["y"], name="conv"),
              helper.make_node("Reshape", ["y", "shape"], ["out"], name="reshape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 32])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int32_bias_dequantize_is_found_and_counted():
    model = conv_with_bias(TensorProto.INT32)
    onnx.checker.check_model(model)
    assert non_int8_dequantize(model) == ["bias_dq"]
    found = placement(model)
    assert found.dequantize_input_types == {"int8": 2, "int32": 1}
    assert found.biases == {"dequantized": 1}
    assert found.quantised_inputs["Conv.x"] == found.quantised_inputs["Conv.w"] == 1
    assert found.quantised_tensors == {"x"} and found.dequantize_into_shape_ops == 0


def test_float_bias_passes_and_the_cli_prints_both(tmp_path, capsys):
    int32, float_bias = conv_with_bias(TensorProto.INT32), conv_with_bias(TensorProto.FLOAT)
    assert non_int8_dequantize(float_bias) == []
    assert placement(float_bias).biases == {"float": 1}
    onnx.save(int32, tmp_path / "a.onnx")
    onnx.save(float_bias, tmp_path / "b.onnx")
    main([str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")])
    rows = {" ".join(line.split()[:3]): line.split()[3:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("Conv bias")}
    assert rows == {"Conv bias float": ["0", "1"], "Conv bias dequantized": ["1", "0"]}
