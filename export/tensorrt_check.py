"""Will TensorRT's ONNX parser take this graph, and build what ONNX Runtime runs? A static check without TensorRT.

The rules are TensorRT's own, per version (tensorrt_rules.py: onnx-tensorrt docs/operators.md rows and
NvInfer.h layer limits, each with its source). Data types come from ONNX type inference. A finding names
the node, the rule broken and where the rule is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from scratchdet.export.tensorrt_rules import (
    NMS_LIMIT_SM,
    NMS_MAX_BOXES_SM_53_62,
    SUPPORTED_VERSIONS,
    OperatorRow,
    Source,
    VersionTable,
    table_for,
)

# ONNX element type -> the name docs/operators.md uses
TYPE_NAMES = {
    TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
    TensorProto.DOUBLE: "DOUBLE", TensorProto.INT32: "INT32", TensorProto.INT64: "INT64",
    TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL", TensorProto.INT4: "INT4",
    TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.FLOAT4E2M1: "FP4",
}
QUANTIZED = ("INT8", "INT4", "FP8", "FP4")


class TensorRTCompatibilityError(ValueError):
    """A graph that TensorRT's parser would reject; names the node, the rule and its source."""


@dataclass(frozen=True)
class Finding:
    node: str
    rule: str
    source: Source

    def __str__(self) -> str:
        return f"{self.node}: {self.rule} [{self.source.file} @ {self.source.ref}]"


def _scopes(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """`graph` and every subgraph in it (a Loop's body): TensorRT parses a body's nodes like any others."""
    inner = [a.g for node in graph.node for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
    return [graph, *[scope for body in inner for scope in _scopes(body)]]


class _Graph:
    """The facts about a graph the rules need: element types (after inference), shapes, constants, producers.

    Subgraphs are flattened into one namespace (ONNX names are unique across a graph and its subgraphs), so a
    Loop body's nodes are checked like the outer ones, with the types of the outer tensors they read."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except onnx.shape_inference.InferenceError as error:
            raise TensorRTCompatibilityError(f"ONNX type inference failed, so types cannot be checked: {error}") \
                from None
        scopes = _scopes(inferred.graph)
        infos = [v for g in scopes for v in [*g.input, *g.output, *g.value_info]]
        self.types = {v.name: v.type.tensor_type.elem_type for v in infos if v.type.tensor_type.elem_type}
        self.shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                       for v in infos if v.type.tensor_type.HasField("shape")}
        self.nodes = [node for g in scopes for node in g.node]
        self.constants = {t.name: numpy_helper.to_array(t) for g in scopes for t in g.initializer}
        self.producers = {out: node for node in self.nodes for out in node.output}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        for name, value in self.constants.items():
            self.types.setdefault(name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
            self.shapes.setdefault(name, list(value.shape))
        graph = inferred.graph
        self.graph_io = {v.name for v in [*graph.input, *graph.output]}
        self.opset = next((o.version for o in inferred.opset_import if o.domain in ("", "ai.onnx")), None)

    def type_name(self, tensor: str) -> str | None:
        code = self.types.get(tensor)
        return None if code is None else TYPE_NAMES.get(code, TensorProto.DataType.Name(code))

    def rooted_at_constant(self, tensor: str) -> bool:
        """A build-time constant, possibly through Q, Cast or Identity (IDequantizeLayer's "weights")."""
        if tensor in self.constants:
            return True
        node = self.producers.get(tensor)
        return node is not None and node.op_type in ("QuantizeLinear", "Cast", "Identity") \
            and self.rooted_at_constant(node.input[0])


def _label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


def _type_findings(node: onnx.NodeProto, row: OperatorRow, graph: _Graph, version: str) -> list[Finding]:
    indices = range(len(node.input)) if row.typed_inputs is None else row.typed_inputs
    tensors = [(f"input {i} '{node.input[i]}'", node.input[i]) for i in indices
               if i < len(node.input) and node.input[i]]
    if row.typed_output:
        tensors.append((f"output '{node.output[0]}'", node.output[0]))
    findings = []
    for what, tensor in tensors:
        kind = graph.type_name(tensor)
        if kind is None:
            findings.append(Finding(_label(node), f"{what} has no type after ONNX type inference", row.source))
        elif kind not in row.types:
            findings.append(Finding(_label(node), f"{what} is {kind}; TensorRT {version} {node.op_type} takes "
                                    f"{', '.join(row.types)}", row.source))
    return findings


def _constant_findings(node: onnx.NodeProto, row: OperatorRow, graph: _Graph) -> list[Finding]:
    return [Finding(_label(node), f"input {i} ('{node.input[i]}') must be an initializer: {row.restriction}",
                    row.source) for i in row.constant_inputs
            if i < len(node.input) and node.input[i] and node.input[i] not in graph.constants]


def _quantize_findings(node: onnx.NodeProto, graph: _Graph, table: VersionTable) -> list[Finding]:
    """Q/DQ: zero point a constant 0, scale a positive constant, per-channel only on weights."""
    row, findings = table.ops[node.op_type], []
    if len(node.input) > 2 and node.input[2]:
        zero = graph.constants.get(node.input[2])
        if zero is None:
            findings.append(Finding(_label(node), "zero point is not a build-time constant", table.dq_source))
        elif np.any(zero != 0):
            findings.append(Finding(_label(node), f"zero point {int(np.max(np.abs(zero)))} is not 0 (TensorRT "
                                    f"quantisation is symmetric): {row.restriction}", row.source))
    scale = graph.constants.get(node.input[1])
    if scale is None:
        findings.append(Finding(_label(node), "scale is not a build-time constant", table.dq_source))
    else:
        if np.any(scale <= 0):
            findings.append(Finding(_label(node), "scale has coefficients <= 0", table.dq_source))
        if scale.size > 1 and not graph.rooted_at_constant(node.input[0]):
            findings.append(Finding(_label(node), f"per-channel scale ({scale.size}) on an activation; only weights "
                                    "may be quantised per channel", table.dq_source))
    return findings


def _topk_findings(node: onnx.NodeProto, graph: _Graph, table: VersionTable) -> list[Finding]:
    row, findings = table.ops["TopK"], []
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("sorted", 1) != 1:
        findings.append(Finding(_label(node), "`sorted` is 0, must be 1", row.source))
    k = graph.constants.get(node.input[1])
    # operators.md says "less than 3840", NvInfer.h "up to 3840"; the layer's own limit is used.
    # A K computed at run time is allowed (dynamic K since 8.6) and then checked by TensorRT at run time.
    if k is not None and int(np.max(k)) > table.topk_max:
        findings.append(Finding(_label(node), f"K={int(np.max(k))} exceeds TensorRT's {table.topk_max}",
                                table.topk_source))
    return findings


def _nms_findings(node: onnx.NodeProto, graph: _Graph, table: VersionTable,
                  compute_capability: tuple[int, int] | None) -> list[Finding]:
    """INMSLayer: 3D boxes and scores, scalar options, and the per-batch-item candidate limit."""
    row, findings = table.ops["NonMaxSuppression"], []
    boxes, scores = graph.shapes.get(node.input[0]), graph.shapes.get(node.input[1])
    for what, shape in (("boxes", boxes), ("scores", scores)):
        if shape is not None and len(shape) != 3:
            findings.append(Finding(_label(node), f"{what} must be 3D, is {len(shape)}D", row.source))
    for i in range(2, min(len(node.input), 5)):
        shape = graph.shapes.get(node.input[i])
        if node.input[i] and shape is not None and int(np.prod([d or 2 for d in shape])) != 1:
            findings.append(Finding(_label(node), f"input {i} must hold a single value, has shape {shape}",
                                    row.source))
    center = next((a.i for a in node.attribute if a.name == "center_point_box"), 0)
    if center not in (0, 1):
        findings.append(Finding(_label(node), f"center_point_box={center}, must be 0 or 1", row.source))
    limit = NMS_MAX_BOXES_SM_53_62 if compute_capability in NMS_LIMIT_SM else table.nms_max_boxes
    if boxes and scores and len(boxes) == 3 and len(scores) == 3 and boxes[1] and scores[1]:
        candidates = boxes[1] * scores[1]  # boxes x classes of one batch item
        if candidates > limit:
            findings.append(Finding(_label(node), f"{candidates} candidate boxes per batch item; TensorRT considers "
                                    f"only the {limit} highest-scoring, so detections would differ from ONNX "
                                    "Runtime", table.nms_source))
    return findings


def _loop_findings(node: onnx.NodeProto, graph: _Graph, table: VersionTable) -> list[Finding]:
    """A loop-carried value keeps its shape: each body state input and its next value have the same shape."""
    row = table.ops["Loop"]
    body = next(a.g for a in node.attribute if a.name == "body")
    findings = []
    # body inputs: iteration, condition, states...; body outputs: condition, states..., scan outputs
    for state_in, state_out in zip(body.input[2:], body.output[1:]):
        before, after = graph.shapes.get(state_in.name), graph.shapes.get(state_out.name)
        if before is not None and after is not None and (len(before) != len(after) or any(
                a is not None and b is not None and a != b for a, b in zip(before, after))):
            findings.append(Finding(_label(node), f"loop-carried '{state_in.name}' is {before} but its next value "
                                    f"'{state_out.name}' is {after}: {row.restriction}", row.source))
    return findings


def _attribute_findings(node: onnx.NodeProto, _: _Graph, table: VersionTable) -> list[Finding]:
    """The attribute restrictions of MaxPool, ScatterND and Constant rows."""
    row = table.ops[node.op_type]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    problems = []
    if node.op_type == "MaxPool":
        if len(attrs.get("kernel_shape", [])) not in (2, 3):
            problems.append("only 2D or 3D pooling")
        if any(d != 1 for d in attrs.get("dilations", [])):
            problems.append(f"dilations {attrs['dilations']} must be all ones")
        if len(node.output) > 1 and node.output[1]:
            problems.append("the Indices output is unsupported")
    elif node.op_type == "ScatterND" and attrs.get("reduction", b"none") not in (b"none", "none"):
        problems.append(f"reduction {attrs['reduction']!r} is unsupported")
    elif node.op_type == "Constant" and set(attrs) & {"sparse_value", "value_string", "value_strings"}:
        problems.append(f"attribute {sorted(set(attrs) & {'sparse_value', 'value_string', 'value_strings'})}")
    return [Finding(_label(node), f"{problem}: {row.restriction}", row.source) for problem in problems]


_NODE_RULES: dict[str, Callable[[onnx.NodeProto, _Graph, VersionTable], list[Finding]]] = {
    "QuantizeLinear": _quantize_findings, "DequantizeLinear": _quantize_findings, "TopK": _topk_findings,
    "MaxPool": _attribute_findings, "ScatterND": _attribute_findings, "Constant": _attribute_findings,
    "Loop": _loop_findings,
}


def _graph_findings(graph: _Graph, table: VersionTable) -> list[Finding]:
    """Opset range, types TensorRT has at all, UINT8 only at the network's edges, quantised types only via Q/DQ."""
    findings = []
    low, high = table.opsets
    if graph.opset is None or not low <= graph.opset <= high:
        findings.append(Finding("model", f"opset {graph.opset} outside TensorRT {table.version}'s {low}..{high}",
                                table.opset_source))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for tensor in sorted(set(graph.types) & (set(graph.producers) | set(consumers))):
        kind = graph.type_name(tensor)
        if kind not in table.data_types:
            findings.append(Finding(f"tensor '{tensor}'", f"type {kind} is not a TensorRT type",
                                    table.data_types_source))
        elif kind == "UINT8" and tensor in graph.producers and tensor not in graph.graph_io:
            # ModelImporter.cpp: "TensorRT does not support UINT8 types for intermediate tensors!" (node outputs)
            findings.append(Finding(f"tensor '{tensor}'", "UINT8 inside the network", table.uint8_source))
        elif kind in QUANTIZED and tensor not in graph.graph_io:
            # a quantised tensor may only be dequantised, or be a Q/DQ zero point
            users = [n for n in consumers.get(tensor, []) if n.op_type != "DequantizeLinear"
                     and not (n.op_type == "QuantizeLinear" and list(n.input).index(tensor) == 2)]
            if users:
                findings.append(Finding(f"tensor '{tensor}'", f"{kind} feeds {_label(users[0])}, not a "
                                        "DequantizeLinear", table.quantized_source))
    return findings


def check_tensorrt_compatibility(model: onnx.ModelProto, version: str,
                                 compute_capability: tuple[int, int] | None = None) -> list[Finding]:
    """Every rule of TensorRT `version` (tensorrt_rules.TABLES) that `model` breaks; empty when it parses.

    Args:
        compute_capability: the GPU's (major, minor), for NvInfer.h's SM-dependent NMS limit; None: not SM 5.3/6.2.

    Raises:
        ValueError: no table for `version`. TensorRTCompatibilityError: ONNX type inference fails.
    """
    return _check(_Graph(model), table_for(version), compute_capability)


def _check(graph: _Graph, table: VersionTable, compute_capability: tuple[int, int] | None) -> list[Finding]:
    findings = _graph_findings(graph, table)
    for node in graph.nodes:
        row = table.ops.get(node.op_type)
        if row is None:
            findings.append(Finding(_label(node), f"operator {node.op_type} is not in the TensorRT {table.version} "
                                    "table; add its docs/operators.md row to tensorrt_rules.py to check it",
                                    replace(table.opset_source, text="no row in tensorrt_rules.py")))
            continue
        findings += _type_findings(node, row, graph, table.version) + _constant_findings(node, row, graph)
        if node.op_type == "NonMaxSuppression":
            findings += _nms_findings(node, graph, table, compute_capability)
        elif node.op_type in _NODE_RULES:
            findings += _NODE_RULES[node.op_type](node, graph, table)
    return findings


def tensorrt_verdicts(model: onnx.ModelProto, versions: Sequence[str] = SUPPORTED_VERSIONS) -> dict[str, list[Finding]]:
    """The findings of every TensorRT version we have rules for (10.3 for JetPack 6, 11.1 for the 11 line)."""
    tables = [table_for(version) for version in versions]
    graph = _Graph(model)  # type inference once for all versions
    return {table.version: _check(graph, table, None) for table in tables}


def summarise(findings: list[Finding]) -> str:
    """One line: each rule broken (names and numbers aside), how many nodes break it, and the first of them."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.node.split(" ")[0], f.source.text, re.sub(r"'[^']*'|\d+", "", f.rule)), []).append(f)
    return "; ".join(f"{len(group)} x {group[0]}" for group in sorted(groups.values(), key=len, reverse=True))


NOT_FOR_TENSORRT = ("not for TensorRT (the ort flavour has unsigned U8 activations for CPU runtimes; build engines "
                    "from `quantize --target tensorrt`)")


def _is_ort_flavour(model: onnx.ModelProto) -> bool:
    return any(p.key == "precision" and p.value.strip('"') == "int8-ort" for p in model.metadata_props)


def verdict_lines(model: onnx.ModelProto) -> list[str]:
    """What the CLIs print: one line per TensorRT version, plain about INT8 files not made for TensorRT."""
    lines = []
    for version, findings in tensorrt_verdicts(model).items():
        if not findings:
            lines.append(f"TensorRT {version}: parser rules OK")
        elif _is_ort_flavour(model):
            lines.append(f"TensorRT {version}: {NOT_FOR_TENSORRT}: {len(findings)} findings")
        else:
            lines.append(f"TensorRT {version}: {len(findings)} findings: {summarise(findings)}")
    return lines


def require_tensorrt_compatible(model: onnx.ModelProto, source: str,
                                versions: Sequence[str] = SUPPORTED_VERSIONS) -> None:
    """Raises TensorRTCompatibilityError naming `source` and each version's findings (first 20) unless none."""
    broken = {v: f for v, f in tensorrt_verdicts(model, versions).items() if f}
    if broken:
        listed = "\n".join(f"TensorRT {v}: {len(f)} finding(s):\n  " + "\n  ".join(map(str, f[:20]))
                           for v, f in broken.items())
        note = f" ({NOT_FOR_TENSORRT})" if _is_ort_flavour(model) else ""
        raise TensorRTCompatibilityError(f"{source}: TensorRT parser rules broken{note}\n{listed}")
