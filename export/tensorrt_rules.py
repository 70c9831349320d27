"""TensorRT's own rules for the operators our graphs contain, per TensorRT version, as data with sources.

Every operator, data type and restriction below is a row of onnx-tensorrt's docs/operators.md (copied verbatim,
runs of spaces collapsed) or a sentence of NVIDIA/TensorRT include/NvInfer.h; tensorrt_check.py applies them.
The table holds the operators that our FP32, FP16 (`quantize --precision fp16`) and both INT8 graphs
(`quantize --target ort|tensorrt`) contain, at every export opset (13..20) and config; an operator outside it
is reported, so that the table grows deliberately, with its row.

Versions:
  10.3  JetPack 6. onnx-tensorrt release/10.3-GA (commit 62bdde2, the parsers/onnx submodule of NVIDIA/TensorRT
        v10.3.0) is not in the stored mirror, so the rows are those of 10.1-GA (96e7811); docs/Changelog.md lists,
        for 10.2 and 10.3, only "Minor changes to op importers for GRU and Squeeze" and "Added support for tensor
        axes inputs for Slice nodes" among our operators, so Slice's "axes must be an initializer" is dropped.
  11.1  the TensorRT 11 line: onnx-tensorrt 7c51a63 (the parsers/onnx submodule of NVIDIA/TensorRT v11.1 and main).
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATORS_MD = "onnx/onnx-tensorrt docs/operators.md"
NVINFER_H = "NVIDIA/TensorRT include/NvInfer.h"
REF_10_3 = "10.1-GA 96e7811 (+ docs/Changelog.md 10.2, 10.3)"
REF_11_1 = "7c51a63 (= NVIDIA/TensorRT v11.1 parsers/onnx)"
ALL = None  # every input carries the row's types


@dataclass(frozen=True)
class Source:
    """Where a rule is written: file, git ref and the text of the row or sentence."""

    file: str
    ref: str
    text: str

    def __str__(self) -> str:
        return f'{self.file} @ {self.ref}: "{self.text}"'


@dataclass(frozen=True)
class OperatorRow:
    """One row of docs/operators.md; `typed_inputs` are the inputs its "Supported Types" column constrains.

    That column names the types of an operator's data tensors; index, shape, axes and K inputs are INT64 by the
    ONNX spec and are not listed (Reshape's shape, Gather's indices), so only the data inputs are checked.
    """

    op: str
    types: tuple[str, ...]  # in the order of the row
    restriction: str
    typed_inputs: tuple[int, ...] | None
    typed_output: bool
    constant_inputs: tuple[int, ...]
    source: Source


def _row(text: str, ref: str, typed: tuple[int, ...] | None = (0,), output: bool = False,
         constant: tuple[int, ...] = ()) -> OperatorRow:
    """Parses `| Op | Y | TYPES | restriction |` so that the checked types are exactly the cited ones."""
    cells = [cell.strip() for cell in text.strip().strip("|").split("|")]
    if len(cells) < 3 or cells[1] != "Y":
        raise ValueError(f"not a supported-operator row of {OPERATORS_MD}: {text!r}")
    types = tuple(t.strip() for t in cells[2].split(",") if t.strip())
    restriction = cells[3] if len(cells) > 3 else ""
    return OperatorRow(cells[0], types, restriction, typed, output, constant, Source(OPERATORS_MD, ref, text))


@dataclass(frozen=True)
class VersionTable:
    """Everything the checker knows about one TensorRT version."""

    version: str
    opsets: tuple[int, int]  # inclusive
    opset_source: Source
    data_types: frozenset[str]  # ONNX types TensorRT takes at all
    data_types_source: Source
    uint8_source: Source  # UINT8 only as network input or output
    quantized_source: Source  # INT8/FP8/INT4 only through Q/DQ
    ops: dict[str, OperatorRow]
    topk_max: int
    topk_source: Source
    nms_max_boxes: int  # per batch item; NMS_MAX_BOXES_SM_53_62 on SM 5.3 and 6.2
    nms_source: Source
    dq_source: Source  # IDequantizeLayer: input types, constants, positive scales, per-channel only for weights

    def __post_init__(self) -> None:
        wrong = [name for name, row in self.ops.items() if name != row.op]
        if wrong:
            raise ValueError(f"TensorRT {self.version} table: keys {wrong} differ from their rows' operators")


NMS_MAX_BOXES_SM_53_62 = 2000
NMS_LIMIT_SM = ((5, 3), (6, 2))


def _ops(*rows: OperatorRow) -> dict[str, OperatorRow]:
    return {row.op: row for row in rows}


def _common_rows(ref: str, texts: dict[str, str]) -> dict[str, OperatorRow]:
    """The rows of both versions; `texts` maps an operator to its row text in that version."""
    binary, every = (0, 1), ALL
    layout = {  # op -> (typed inputs, output typed too, inputs that must be constants)
        "Add": (binary, False, ()), "Sub": (binary, False, ()), "Mul": (binary, False, ()),
        "Div": (binary, False, ()), "Greater": (binary, False, ()), "Concat": (every, False, ()),
        "Where": ((1, 2), False, ()), "Cast": ((0,), True, ()), "Constant": ((), True, ()),
        "Conv": ((0, 1, 2), False, ()), "ScatterND": ((0, 2), False, ()), "NonMaxSuppression": ((0, 1), False, ()),
        "ReduceSum": ((0,), False, (1,)), "Unsqueeze": ((0,), False, (1,)), "ReduceMax": ((0,), False, (1,)),
        "And": (binary, False, ()), "Max": (binary, False, ()), "Min": (binary, False, ()),
        "MatMul": (binary, False, ()), "Loop": (every, False, ()),
        "Pad": ((0,), False, (3,)),  # input 3 is `axes` (opset 18)
    }
    rows = {}
    for op, text in texts.items():
        typed, output, constant = layout.get(op, ((0,), False, ()))
        rows[op] = _row(text, ref, typed, output, constant)
    return rows


# The greedy NMS loop of nms_graph.py (IoU matrix: Max, Min, And; loop body: MatMul, Min, Abs, ReduceMax).
# onnx-tensorrt 7c51a63 is not in the stored mirror either, so the 11.1 table carries these 10.1-GA rows too, with
# that ref: a real TensorRT-RTX 1.7 parser builds the tail (tests/export/test_nms_graph.py).
_NMS_LOOP_TEXTS = {
    "Abs": "| Abs | Y | FP32, FP16, BF16, INT32, INT64 |",
    "And": "| And | Y | BOOL |",
    "Loop": "| Loop | Y | FP32, FP16, BF16, INT32, INT64, BOOL | Scan output length cannot be dynamic. "
            "The shape of Loop carried dependencies must be the same across all loop iterations.",
    "MatMul": "| MatMul | Y | FP32, FP16, BF16 |",
    "Max": "| Max | Y | FP32, FP16, BF16, INT32, INT64 |",
    "Min": "| Min | Y | FP32, FP16, BF16, INT32, INT64 |",
    "ReduceMax": "| ReduceMax | Y | FP32, FP16, BF16, INT32, INT64 | `axes` must be an initializer |",
}

# Rows common to the graphs: network (Conv, Relu, Add, MaxPool), preprocessing (Sub, Div), box decoding (Slice,
# Exp, Mul, Concat, Clip, Softmax), the NMS tail (nms_graph.py), Q/DQ (INT8) and Cast (FP16), Pad (the ort
# flavour's 4-channel first conv, channel_pad.py).
_TEXTS_10_3 = {
    **_NMS_LOOP_TEXTS,
    "Add": "| Add | Y | FP32, FP16, BF16, INT32, INT64 |",
    "Cast": "| Cast | Y | FP32, FP16, BF16, INT32, INT64, UINT8, BOOL | |",
    "Clip": "| Clip | Y | FP32, FP16, BF16 | |",
    "Concat": "| Concat | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "Constant": "| Constant | Y | FP32, FP16, BF16, INT32, INT64, BOOL | `sparse_value`, `value_string`, and "
                "`value_strings` attributes are unsupported.",
    "Conv": "| Conv | Y | FP32, FP16, BF16 |",
    "DequantizeLinear": "| DequantizeLinear | Y | INT8, FP8, INT4 | `x_zero_point` must be zero |",
    "Div": "| Div | Y | FP32, FP16, BF16, INT32, INT64 |",
    "Exp": "| Exp | Y | FP32, FP16, BF16 |",
    "Expand": "| Expand | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "Gather": "| Gather | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "GatherElements": "| GatherElements | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "GatherND": "| GatherND | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "Greater": "| Greater | Y | FP32, FP16, BF16, INT32, INT64 |",
    "MaxPool": "| MaxPool | Y | FP32, FP16, BF16 | 2D or 3D pooling only. `Indices` output tensor unsupported. "
               "`dilations` must be empty or all ones",
    "Mul": "| Mul | Y | FP32, FP16, BF16, INT32, INT64 |",
    "NonMaxSuppression": "| NonMaxSuppression | Y | FP32, FP16 |",
    "Pad": "| Pad | Y | FP32, FP16, BF16, INT32, INT64 | `axes` must be an initializer |",
    "QuantizeLinear": "| QuantizeLinear | Y | FP32, FP16, BF16 | `y_zero_point` must be 0 |",
    "ReduceSum": "| ReduceSum | Y | FP32, FP16, BF16, INT32, INT64 | `axes` must be an initializer |",
    "Relu": "| Relu | Y | FP32, FP16, BF16, INT32, INT64 |",
    "Reshape": "| Reshape | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "ScatterND": "| ScatterND | Y | FP32, FP16, BF16, INT32, INT64 | `reduction` is not supported",
    "Shape": "| Shape | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "Slice": "| Slice | Y | FP32, FP16, BF16, INT32, INT64, BOOL | `axes` must be an initializer |",
    "Softmax": "| Softmax | Y | FP32, FP16, BF16 |",
    "Sub": "| Sub | Y | FP32, FP16, BF16, INT32, INT64 |",
    "TopK": "| TopK | Y | FP32, FP16, BF16, INT32, INT64 | `sorted` must be 1. `K` input must be less than 3840.",
    "Transpose": "| Transpose | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "Unsqueeze": "| Unsqueeze | Y | FP32, FP16, BF16, INT32, INT64, BOOL | `axes` must be a constant tensor |",
    "Where": "| Where | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
}
_TEXTS_11_1 = {
    **{op: text for op, text in _TEXTS_10_3.items() if op not in ("Constant", "DequantizeLinear", "Pad",
                                                                    "ScatterND", "Slice", "Unsqueeze",
                                                                    *_NMS_LOOP_TEXTS)},
    "Constant": "| Constant | Y | FP32, FP16, BF16, FP8, FP4, INT4, INT32, INT64, BOOL | `sparse_value`, "
                "`value_string`, and `value_strings` attributes are unsupported.",
    "DequantizeLinear": "| DequantizeLinear | Y | INT8, FP8, FP4, INT4 | `x_zero_point` must be zero |",
    "Pad": "| Pad | Y | FP32, FP16, BF16, INT32, INT64 |",
    "ScatterND": "| ScatterND | Y | FP32, FP16, BF16, INT32, INT64 | `reduction` other than `none` is not supported",
    "Slice": "| Slice | Y | FP32, FP16, BF16, INT32, INT64, BOOL |",
    "Unsqueeze": "| Unsqueeze | Y | FP32, FP16, BF16, INT32, INT64, BOOL | `axes` must be resolvable to a constant. |",
}


def _rows_10_3() -> dict[str, OperatorRow]:
    rows = _common_rows(REF_10_3, _TEXTS_10_3)
    # docs/Changelog.md, "TensorRT 10.3 GA Release": "Added support for tensor `axes` inputs for `Slice` nodes"
    slice_row = rows["Slice"]
    rows["Slice"] = OperatorRow(slice_row.op, slice_row.types, "", slice_row.typed_inputs, False, (), Source(
        OPERATORS_MD, REF_10_3, slice_row.source.text + " (axes restriction lifted in 10.3: docs/Changelog.md, "
        "'Added support for tensor `axes` inputs for `Slice` nodes')"))
    return rows


def _rows_11_1() -> dict[str, OperatorRow]:
    rows = {**_common_rows(REF_11_1, _TEXTS_11_1), **_common_rows(REF_10_3, _NMS_LOOP_TEXTS)}
    # 11.1's Pad row has no axes restriction (docs/Changelog.md 10.4: "Added support for tensor `axes` for `Pad`")
    rows["Pad"] = OperatorRow("Pad", rows["Pad"].types, "", (0,), False, (), rows["Pad"].source)
    return rows


def _nvinfer(ref: str, text: str) -> Source:
    return Source(NVINFER_H, ref, text)


_NVINFER_10_3 = "v10.3.0 c5b9de3"
_NVINFER_11_1 = "v11.1 82d1dca"
_NMS_TEXT = ("There is a hardware-dependent limit K such that only the K highest scoring boxes in each batch item "
             "will be considered for selection. The value of K is 2000 for SM 5.3 and 6.2 devices, and 5000 otherwise.")
_TOPK_TEXT = "ITopKLayer::setK: Currently only values up to 3840 are supported."
_UINT8_TEXT = "Note: UINT8 is only supported as network input or output tensor types."
_TYPES_10 = ("TensorRT supports the following ONNX data types: DOUBLE, FLOAT32, FLOAT16, BFLOAT16, INT32, INT64, FP8, "
             "INT8, INT4, UINT8, and BOOL")
_TYPES_11 = ("TensorRT supports the following ONNX data types: DOUBLE, FLOAT32, FLOAT16, BFLOAT16, FP8, FP4, INT32, "
             "INT64, INT8, INT4, UINT8, and BOOL")

TABLES: dict[str, VersionTable] = {
    "10.3": VersionTable(
        "10.3", (9, 20),
        Source(OPERATORS_MD, REF_10_3, "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset "
               "20."),
        frozenset({"DOUBLE", "FP32", "FP16", "BF16", "INT32", "INT64", "FP8", "INT8", "INT4", "UINT8", "BOOL"}),
        Source(OPERATORS_MD, REF_10_3, _TYPES_10),
        Source(OPERATORS_MD, REF_10_3, _UINT8_TEXT),
        Source(OPERATORS_MD, REF_10_3, "Note: INT8, INT4, and FP8 are treated as `Quantized Types` in TensorRT, "
               "where support is available only through quantization from a floating-point type with higher "
               "precision."),
        _rows_10_3(), 3840, _nvinfer(_NVINFER_10_3, _TOPK_TEXT), 5000, _nvinfer(_NVINFER_10_3, _NMS_TEXT),
        _nvinfer(_NVINFER_10_3, "IDequantizeLayer: The input type, if constrained, must be constrained to "
                 "DataType::kINT8, DataType::kFP8 or DataType::kINT4. [...] All scale coefficients must have positive "
                 "values. [...] The subgraph which terminates with the scale tensor must be a build-time constant. "
                 "The same restrictions apply to the zeroPt. [...] Per-channel dequantization is supported only for "
                 "input that is rooted at an IConstantLayer (i.e. weights).")),
    "11.1": VersionTable(
        "11.1", (9, 24),
        Source(OPERATORS_MD, REF_11_1, "TensorRT 11.1 supports operators in the inclusive range of opset 9 to opset "
               "24."),
        frozenset({"DOUBLE", "FP32", "FP16", "BF16", "FP8", "FP4", "INT32", "INT64", "INT8", "INT4", "UINT8",
                   "BOOL"}),
        Source(OPERATORS_MD, REF_11_1, _TYPES_11),
        Source(OPERATORS_MD, REF_11_1, _UINT8_TEXT),
        Source(OPERATORS_MD, REF_11_1, "Note: INT8, INT4, FP8 and FP4 are treated as `Quantized Types` in TensorRT, "
               "where support is available only through quantization from a floating-point type with higher "
               "precision."),
        _rows_11_1(), 3840, _nvinfer(_NVINFER_11_1, _TOPK_TEXT), 5000, _nvinfer(_NVINFER_11_1, _NMS_TEXT),
        _nvinfer(_NVINFER_11_1, "IDequantizeLayer: The input type, if constrained, must be constrained to "
                 "DataType::kINT8, DataType::kFP8, DataType::kINT4 or DataType::kFP4. [...] All scale coefficients "
                 "must have strictly positive values. [...] The subgraph which terminates with the zeroPt tensor "
                 "must be a build-time constant containing only zeros. [...] Per-channel dequantization is "
                 "supported only for input that is rooted at an IConstantLayer (i.e. weights).")),
}
SUPPORTED_VERSIONS = tuple(TABLES)


def table_for(version: str) -> VersionTable:
    """The table of `version` ("10.3", "11.1", or a full version such as "10.3.0.30").

    Raises:
        ValueError: a version without a table, naming the ones there are.
    """
    key = ".".join(version.split(".")[:2])
    if key not in TABLES:
        raise ValueError(f"no TensorRT rule table for version {version!r}; tables exist for {list(TABLES)}")
    return TABLES[key]
