"""Will TensorRT 10.x/11.x's ONNX parser take this graph? A static check, runnable without TensorRT.

Source of the operator table: onnx/onnx-tensorrt, docs/operators.md ("Supported ONNX Operators",
TensorRT 10.x: opsets 9 to 20; restrictions column). Only the operators a detector of this project
can contain are listed, each with the inputs that must be constants (initializers) and other rules;
an operator missing from the table is reported so that the table is extended deliberately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

OPSET_RANGE = (9, 20)  # TensorRT 10.0 parser, inclusive; 11.x parses the same range
MAX_TOPK = 3840  # TensorRT's TopK K limit

# op -> indices of inputs that must be initializers (constants), per docs/operators.md.
SUPPORTED_OPS: dict[str, tuple[int, ...]] = {
    "Add": (), "BatchNormalization": (), "Cast": (), "Clip": (), "Concat": (), "Constant": (),
    "ConstantOfShape": (), "Conv": (), "DequantizeLinear": (), "Div": (), "Exp": (), "Expand": (),
    "Flatten": (), "Gather": (), "GatherElements": (), "GatherND": (), "Greater": (), "Identity": (),
    "MaxPool": (), "Mul": (), "NonMaxSuppression": (2, 3, 4), "QuantizeLinear": (), "ReduceSum": (),
    "Relu": (), "Reshape": (), "ScatterND": (), "Shape": (), "Slice": (3,), "Softmax": (), "Split": (),
    "Squeeze": (1,), "Sub": (), "TopK": (1,), "Transpose": (), "Unsqueeze": (1,), "Where": (),
}
OUTPUT_TYPES = (TensorProto.FLOAT, TensorProto.INT32)


class TensorRTCompatibilityError(ValueError):
    """A graph that TensorRT's parser would reject; names the node and the rule."""


@dataclass(frozen=True)
class Finding:
    node: str
    rule: str

    def __str__(self) -> str:
        return f"{self.node}: {self.rule}"


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _node_findings(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> list[Finding]:
    name = f"{node.op_type} '{node.name or node.output[0]}'"
    if node.op_type not in SUPPORTED_OPS:
        return [Finding(name, "operator not in the TensorRT 10/11 support table")]
    findings = [Finding(name, f"input {i} ('{node.input[i]}') must be a constant initializer")
                for i in SUPPORTED_OPS[node.op_type] if i < len(node.input) and node.input[i]
                and node.input[i] not in constants]
    if node.op_type == "TopK" and node.input[1] in constants and int(constants[node.input[1]].max()) > MAX_TOPK:
        findings.append(Finding(name, f"K={int(constants[node.input[1]].max())} exceeds TensorRT's {MAX_TOPK}"))
    if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
        zero = constants.get(node.input[2])
        if zero is None or np.any(zero != 0):
            findings.append(Finding(name, "zero point must be a constant 0 (TensorRT INT8 is symmetric)"))
    return findings


def check_tensorrt_compatibility(model: onnx.ModelProto) -> list[Finding]:
    """Everything in `model` that breaks a TensorRT parser rule; empty when it is ready."""
    findings = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        findings.append(Finding("model", f"opset {opset} outside TensorRT's {OPSET_RANGE[0]}..{OPSET_RANGE[1]}"))
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if any(i != 0 for i in dynamic):
            findings.append(Finding(f"input '{graph_input.name}'", f"only the batch axis may be dynamic, "
                                    f"axes {dynamic} are"))
    for output in model.graph.output:
        if output.type.tensor_type.elem_type not in OUTPUT_TYPES:
            kind = TensorProto.DataType.Name(output.type.tensor_type.elem_type)
            findings.append(Finding(f"output '{output.name}'", f"type {kind}, must be FLOAT or INT32"))
    constants = _constants(model.graph)
    for node in model.graph.node:
        findings += _node_findings(node, constants)
    return findings


def require_tensorrt_compatible(model: onnx.ModelProto, source: str) -> None:
    findings = check_tensorrt_compatibility(model)
    if findings:
        listed = "\n  ".join(str(f) for f in findings[:20])
        raise TensorRTCompatibilityError(f"{source}: {len(findings)} TensorRT parser rule(s) broken:\n  {listed}")
