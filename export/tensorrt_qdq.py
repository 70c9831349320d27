"""Q/DQ placement for TensorRT: the onnxruntime.quantization options and the one graph edit that give it.

TensorRT's "Working with Quantized Types" guide (Explicit Quantization, Q/DQ Layer-Placement
Recommendations, https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-quantized-types.html)
asks for: Q/DQ on all inputs of weighted ops (Conv), not on their outputs; the residual input of a skip Add
quantised, so that Conv + Add fuse into one INT8 kernel; no ReLU simulated between its own Q/DQ (TensorRT fuses
it into the Conv). NVIDIA's own ONNX quantiser, TensorRT Model Optimizer, implements exactly these rules on top of
`quantize_static` (modelopt/onnx/quantization/ort_utils.py `configure_ort`: QuantizeBias False,
ActivationSymmetric, OpTypesToExcludeOutputQuantization = every op type, Relu removed from the Q/DQ registry;
graph_utils.py `build_non_residual_input_map` + `remove_partial_input_qdq` for the Add). We follow the same rules.
Biases stay float: TensorRT's ONNX parser takes only activation types (INT8/FP8/INT4) into DequantizeLinear
(onnx-tensorrt docs/operators.md, DequantizeLinear; onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229).
"""

from __future__ import annotations

from collections import deque

import onnx

OPS = ("Conv", "Add", "MaxPool")  # quantised op inputs; Relu is fused by TensorRT, never Q/DQ'd itself


def extra_options(model: onnx.ModelProto) -> dict:
    """`quantize_static` extra_options for the TensorRT flavour (ModelOpt's `configure_ort` settings)."""
    return {
        "QuantizeBias": False,  # float biases: the parser refuses DequantizeLinear of INT32
        "ActivationSymmetric": True, "WeightSymmetric": True,  # TensorRT INT8 is symmetric, zero point 0
        "OpTypesToExcludeOutputQuantization": sorted({n.op_type for n in model.graph.node}),  # inputs only
        "ForceQuantizeNoInputCheck": True,  # MaxPool's input is quantised even though Relu (float) feeds it
        "DedicatedQDQPair": False,
    }


def _distances(model: onnx.ModelProto, start: str) -> dict[str, int]:
    """Hops from tensor `start` up to each ancestor tensor."""
    producers = {output: node for node in model.graph.node for output in node.output}
    distance, queue = {start: 0}, deque([start])
    while queue:
        tensor = queue.popleft()
        node = producers.get(tensor)
        for parent in node.input if node is not None else ():
            if parent and parent not in distance:
                distance[parent] = distance[tensor] + 1
                queue.append(parent)
    return distance


def non_residual_add_inputs(model: onnx.ModelProto, adds: list[str]) -> dict[str, str]:
    """Add name -> its non-residual input: the Conv output on the longer path from the two inputs' lowest
    common ancestor (ModelOpt graph_utils.py `build_non_residual_input_map`). Adds without one are left out."""
    producers = {output: node for node in model.graph.node for output in node.output}
    found = {}
    for node in model.graph.node:
        if node.name not in adds or len(node.input) != 2 or not all(i in producers for i in node.input):
            continue
        first, second = (_distances(model, i) for i in node.input)
        common = set(first) & set(second)
        if not common:
            continue
        ancestor = min(common, key=lambda t: first[t] + second[t])
        longer = node.input[0] if first[ancestor] >= second[ancestor] else node.input[1]
        if producers[longer].op_type == "Conv":
            found[node.name] = longer
    return found


def unquantize_inputs(model: onnx.ModelProto, inputs: dict[str, str]) -> int:
    """Feed each named node input (node name -> original tensor) straight from the float tensor, bypassing the
    QuantizeLinear -> DequantizeLinear pair quantize_static put there; drop the pair (and its scale and zero
    point) when nothing else reads it. Returns how many inputs were changed."""
    producers = {output: node for node in model.graph.node for output in node.output}
    changed = 0
    for node in model.graph.node:
        if node.name not in inputs:
            continue
        for index, name in enumerate(node.input):
            dequantize = producers.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            quantize = producers.get(dequantize.input[0])
            if quantize is not None and quantize.op_type == "QuantizeLinear" and quantize.input[0] == inputs[node.name]:
                node.input[index] = quantize.input[0]
                changed += 1
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    for _ in range(2):  # the DQ first, then the Q that only it read
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        for n in dead:
            model.graph.node.remove(n)
        read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    for tensor in [t for t in model.graph.initializer if t.name not in read]:
        model.graph.initializer.remove(tensor)
    return changed
