"""Small ONNX graphs that show where OpenVINO 2026.4.1's INT8 results depart from the ONNX specification.

    python -m scratchdet.benchmarks.studies.openvino_repro OUT_FOLDER     # writes both graphs as .onnx files

`residual_add_graph` (10 nodes): x -> Q -> DQ -> MaxPool -> Q -> DQ (the residual) and DQ(x) -> Conv -> Q -> DQ
added together and quantised, the shape of every ResNet block after the stem's max-pool. OpenVINO fuses Conv, the
Q on its output, the Add and the final Q into one kernel that clamps the Conv output to that Q's range but does
not round it, so about a fifth of the outputs are one step off the specification (ONNX Runtime: none; OpenVINO
equals the clamped, unrounded float64 result exactly). Without the MaxPool on the residual OpenVINO does not
fuse and follows the specification. A one-step difference, not an accuracy problem.

`bias_gathernd_graph` (3 nodes) is the defect that costs accuracy: x -> Conv (with its bias input) ->
QuantizeLinear = y, and a GatherND with batch_dims=1 anywhere in the graph (here on y), the batch axis dynamic.
OpenVINO then adds channel 0's bias to every output channel of that Conv: y[:, c] is off the specification by
b[0] - b[c]. Each of these single changes makes it vanish (found by delta debugging from our exported model,
335 nodes, whose NMS tail gathers each class's candidate boxes with GatherND(batch_dims=1)): the batch fixed
before compiling, no GatherND, GatherND with batch_dims=0 or a Gather instead, no QuantizeLinear on the Conv
output, the bias as a separate Add. The GatherND need not read the Conv (one on the graph input also
triggers it); NMS, TopK, normalisation, Q/DQ of the weights and kernel size do not matter. ONNX Runtime and
OpenVINO with a fixed batch follow the specification exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scratchdet.models.files import atomic_write

CHANNELS, SIZE = 16, 16
INPUT_SCALE, CONV_SCALE, CONV_ZERO, OUTPUT_SCALE = 0.02, 0.037, 131, 0.045
BIAS_CHANNELS, BIAS_SIZE = 4, 8


def residual_add_graph(seed: int = 0) -> onnx.ModelProto:
    """The 10-node Q/DQ residual block (U8 activations, per-channel S8 weights, int32 bias) described above."""
    rng = np.random.default_rng(seed)
    weight_scale = rng.uniform(0.001, 0.003, CHANNELS).astype(np.float32)
    tensors: dict[str, np.ndarray] = {
        "s_in": np.array(INPUT_SCALE, np.float32), "z_in": np.array(0, np.uint8),
        "w_q": rng.integers(-64, 64, (CHANNELS, CHANNELS, 3, 3)).astype(np.int8), "w_s": weight_scale,
        "w_z": np.zeros(CHANNELS, np.int8),
        "b_q": rng.integers(-2000, 2000, CHANNELS).astype(np.int32), "b_s": INPUT_SCALE * weight_scale,
        "b_z": np.zeros(CHANNELS, np.int32),
        "s_c": np.array(CONV_SCALE, np.float32), "z_c": np.array(CONV_ZERO, np.uint8),
        "s_o": np.array(OUTPUT_SCALE, np.float32), "z_o": np.array(0, np.uint8),
    }
    node = helper.make_node
    nodes = [
        node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"], name="q_in"),
        node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"], name="dq_in"),
        node("MaxPool", ["xd"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        node("QuantizeLinear", ["p", "s_in", "z_in"], ["pq"], name="q_pool"),
        node("DequantizeLinear", ["pq", "s_in", "z_in"], ["pd"], name="dq_pool"),
        node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dq_w", axis=0),
        node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], name="dq_b", axis=0),
        node("Conv", ["xd", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        node("QuantizeLinear", ["c", "s_c", "z_c"], ["cq"], name="q_conv"),
        node("DequantizeLinear", ["cq", "s_c", "z_c"], ["cd"], name="dq_conv"),
        node("Add", ["cd", "pd"], ["a"], name="add"),
        node("QuantizeLinear", ["a", "s_o", "z_o"], ["y"], name="q_out"),
    ]
    shape = [1, CHANNELS, SIZE, SIZE]
    graph = helper.make_graph(nodes, "residual_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, shape)],
                              [numpy_helper.from_array(value, name) for name, value in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def residual_add_input(seed: int = 1) -> np.ndarray:
    """An input whose quantisation is exact (multiples of the input scale), so only the block's arithmetic counts."""
    steps = np.random.default_rng(seed).integers(0, 250, (1, CHANNELS, SIZE, SIZE))
    return (steps * INPUT_SCALE).astype(np.float32)


def bias_gathernd_graph(seed: int = 0, gathernd: bool = True) -> onnx.ModelProto:
    """The 3-node repro of the bias defect (dynamic batch B): inputs x [B, 3, 8, 8] and idx [B, 4, 1]
    (int64), outputs y = Q(Conv(x, w, b)) (uint8, scale 1, zero point 0) and g = GatherND(y, idx, batch_dims=1).
    The bias (20-200) dwarfs the conv term (|w . x| <= 3), so y never saturates and one step is 1.0."""
    rng = np.random.default_rng(seed)
    weight = rng.uniform(-1, 1, (BIAS_CHANNELS, 3, 1, 1)).astype(np.float32)
    tensors: dict[str, np.ndarray] = {"w": weight, "b": rng.uniform(20, 200, BIAS_CHANNELS).astype(np.float32),
               "scale": np.array(1.0, np.float32), "zero": np.array(0, np.uint8)}
    node = helper.make_node
    nodes = [node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             node("QuantizeLinear", ["c", "scale", "zero"], ["y"], name="q")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, BIAS_SIZE, BIAS_SIZE])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.UINT8, ["B", BIAS_CHANNELS, BIAS_SIZE, BIAS_SIZE])]
    if gathernd:
        nodes.append(node("GatherND", ["y", "idx"], ["g"], name="gather", batch_dims=1))
        inputs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, ["B", BIAS_CHANNELS, 1]))
        outputs.append(helper.make_tensor_value_info("g", TensorProto.UINT8,
                                                     ["B", BIAS_CHANNELS, BIAS_SIZE, BIAS_SIZE]))
    graph = helper.make_graph(nodes, "conv_bias_gathernd", inputs, outputs,
                              [numpy_helper.from_array(value, name) for name, value in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model


def bias_gathernd_inputs(batch: int = 2, seed: int = 1) -> dict[str, np.ndarray]:
    """x in [0, 1) and, per image, a permutation of the channels as GatherND indices."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, 3, BIAS_SIZE, BIAS_SIZE)).astype(np.float32)
    idx = np.stack([rng.permutation(BIAS_CHANNELS) for _ in range(batch)])[..., None].astype(np.int64)
    return {"x": x, "idx": idx}


def bias_gathernd_specification(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """y of the repro in float64 from its own weights, rounded half-to-even and clamped as QuantizeLinear does."""
    tensors = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    conv = np.einsum("oc,bchw->bohw", tensors["w"][:, :, 0, 0], x.astype(np.float64))
    return np.clip(np.rint(conv + tensors["b"][None, :, None, None]), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder for residual_add.onnx and conv_bias_gathernd.onnx")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, model in (("residual_add", residual_add_graph()), ("conv_bias_gathernd", bias_gathernd_graph())):
        path = out / f"{name}.onnx"
        with atomic_write(path) as temporary:
            onnx.save(model, str(temporary))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
