"""Where a Q/DQ ONNX quantises: per-op counts of DequantizeLinear-fed inputs, bias handling, DQ input types.

`python -m scratchdet.benchmarks.studies.qdq_placement A.onnx B.onnx` prints both side by side (e.g. our tensorrt
flavour against NVIDIA ModelOpt's output for the same FP32 model), then the activation tensors only one quantises.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx

QUANTIZE, DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"


@dataclass
class Placement:
    quantize: int = 0
    dequantize: int = 0
    dequantize_input_types: Counter[str] = field(default_factory=Counter)  # element type of each DQ's input
    quantised_inputs: Counter[str] = field(default_factory=Counter)  # "Conv.x", "Conv.w", "Add.x" ...: DQ-fed inputs
    float_inputs: Counter[str] = field(default_factory=Counter)  # the same inputs of those op types, left float
    biases: Counter[str] = field(default_factory=Counter)  # "float" or "dequantized" per Conv bias
    quantised_tensors: set[str] = field(default_factory=set)  # activations entering a QuantizeLinear
    nonzero_zero_points: int = 0
    dequantize_into_shape_ops: int = 0  # DQ outputs read by Shape/Reshape (TensorRT guide: keep those float)


ROLES = {"Conv": ("x", "w", "b"), "Add": ("x", "x"), "Relu": ("x",), "MaxPool": ("x",), "Concat": None,
         "Reshape": ("x", "shape"), "Transpose": ("x",), "Pad": ("x", "pads", "value"), "TopK": ("x", "k")}
SHAPE_OPS = ("Shape", "Reshape")


def _element_type(model: onnx.ModelProto, name: str, producers: dict[str, onnx.NodeProto]) -> str:
    """The element type of a DQ input: from its initializer, or from the QuantizeLinear making it."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
    producer = producers.get(name)
    if producer is not None and producer.op_type == QUANTIZE:
        zero_point = next((t for t in model.graph.initializer if len(producer.input) > 2
                           and t.name == producer.input[2]), None)
        return onnx.helper.tensor_dtype_to_np_dtype(zero_point.data_type).name if zero_point else "uint8"
    return "unknown"


def placement(model: onnx.ModelProto) -> Placement:
    """Count what `model` quantises and how."""
    from onnx import numpy_helper

    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = {t.name: t for t in model.graph.initializer}
    result = Placement()
    for node in model.graph.node:
        if node.op_type == QUANTIZE:
            result.quantize += 1
            if node.input[0] not in initializers:
                result.quantised_tensors.add(node.input[0])
        if node.op_type == DEQUANTIZE:
            result.dequantize += 1
            result.dequantize_input_types[_element_type(model, node.input[0], producers)] += 1
        if node.op_type in (QUANTIZE, DEQUANTIZE) and len(node.input) > 2 and node.input[2] in initializers:
            result.nonzero_zero_points += int(numpy_helper.to_array(initializers[node.input[2]]).any())
        if node.op_type in SHAPE_OPS and any(producers.get(i) is not None and producers[i].op_type == DEQUANTIZE
                                             for i in node.input):
            result.dequantize_into_shape_ops += 1
        if node.op_type not in ROLES:
            continue
        roles = ROLES[node.op_type] or ("x",) * len(node.input)
        for role, name in zip(roles, node.input):
            if not name:
                continue
            fed = producers.get(name)
            quantised = fed is not None and fed.op_type == DEQUANTIZE
            if node.op_type == "Conv" and role == "b":
                result.biases["dequantized" if quantised else "float"] += 1
                continue
            (result.quantised_inputs if quantised else result.float_inputs)[f"{node.op_type}.{role}"] += 1
    return result


def non_int8_dequantize(model: onnx.ModelProto) -> list[str]:
    """DequantizeLinear nodes whose input is not INT8: what TensorRT's ONNX parser refuses (onnx-tensorrt
    docs/operators.md, DequantizeLinear: only activation types; onnx/onnx-tensorrt#850)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    return [node.name for node in model.graph.node if node.op_type == DEQUANTIZE
            and _element_type(model, node.input[0], producers) != "int8"]


def table(placements: dict[str, Placement]) -> str:
    """The placements as aligned rows, one column per model."""
    names = list(placements)
    rows: list[tuple[str, ...]] = [("", *names)]

    def add(label: str, values: list[object]) -> None:
        rows.append((label, *(str(v) for v in values)))

    add("QuantizeLinear", [p.quantize for p in placements.values()])
    add("DequantizeLinear", [p.dequantize for p in placements.values()])
    for dtype in sorted(set().union(*(p.dequantize_input_types for p in placements.values()))):
        add(f"  DQ input {dtype}", [p.dequantize_input_types[dtype] for p in placements.values()])
    add("non-zero zero points", [p.nonzero_zero_points for p in placements.values()])
    add("DQ into Shape/Reshape", [p.dequantize_into_shape_ops for p in placements.values()])
    for bias in ("float", "dequantized"):
        add(f"Conv bias {bias}", [p.biases[bias] for p in placements.values()])
    inputs = sorted(set().union(*(set(p.quantised_inputs) | set(p.float_inputs) for p in placements.values())))
    for key in inputs:
        add(f"{key} quantised/float", [f"{p.quantised_inputs[key]}/{p.float_inputs[key]}"
                                       for p in placements.values()])
    add("quantised activations", [len(p.quantised_tensors) for p in placements.values()])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="Q/DQ ONNX files")
    args = parser.parse_args(argv)
    placements = {}
    for path in args.models:
        if not path.is_file():
            parser.error(f"{path}: no such file")
        placements[path.name] = placement(onnx.load(str(path)))
    print(table(placements))
    if len(placements) == 2:
        (a, pa), (b, pb) = placements.items()
        for name, only in ((a, pa.quantised_tensors - pb.quantised_tensors),
                           (b, pb.quantised_tensors - pa.quantised_tensors)):
            print(f"\nquantised only in {name} ({len(only)}):")
            for tensor in sorted(only):
                print(f"  {tensor}")


if __name__ == "__main__":
    main()
