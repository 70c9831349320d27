"""The rules checker (tensorrt_rules.py, read from documentation) held against a real parser: TensorRT-RTX 1.7.

Every must-fail case of test_tensorrt_check.py and a single-node graph per rules row, each through the rules
(TensorRT 11.1's table, the nearest to RTX 1.7's parser) and through TensorRT-RTX (parse, then SM86 build).
Where they differ the case names why (EXPECTED_DIFFERENCES); any other difference fails. `pytest -s` prints
the table of docs/results/tensorrt-rtx.md.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scratchdet.export.tensorrt_check import check_tensorrt_compatibility
from scratchdet.export.tensorrt_rtx import build_rtx
from scratchdet.export.tensorrt_rules import TABLES
from tests.export.test_tensorrt_check import qdq_conv

pytest.importorskip("tensorrt_rtx_bindings", reason="the dev extra installs TensorRT for RTX")

RULES_VERSION = "11.1"
ELEMENT = {"FP32": TensorProto.FLOAT, "FP16": TensorProto.FLOAT16, "INT32": TensorProto.INT32,
           "INT64": TensorProto.INT64, "BOOL": TensorProto.BOOL}
# case -> why the real parser's verdict differs from the rules (each checked, so a fixed one shows up)
EXPECTED_DIFFERENCES = {
    "uint8 activations (Q/DQ)": "RTX's parser reads a UINT8 zero point as INT8 with a warning (onnx-tensorrt "
                                "'TensorRT will use INT8 instead') and builds; the rules refuse it because the "
                                "[0, 255] range saturates at 127: a numerics rule, not a parse rule",
    "per-channel activation scale": "RTX 1.7 builds it; NvInfer.h 10.3 and 11.1 (IDequantizeLayer) forbid "
                                    "per-channel activations: an RTX difference, the rule stays for TensorRT 10/11",
    "Relu INT32": "RTX 1.7's parser rejects INT32 Relu ('Found unsupported input type of INT32') though INT64 "
                  "builds; the 11.1 row lists INT32: an RTX difference (our Relus are float or Q/DQ)",
    "Clip INT32 (not in row)": "RTX 1.7 builds integer Clip, the 11.1 row lists float types only: the rule is "
                               "stricter than RTX (our Clip is float32)",
    "Clip INT64 (not in row)": "as Clip INT32",
}


def _graph(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "case", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def topk(k: int, sorted_: int = 1) -> onnx.ModelProto:
    return _graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, sorted=sorted_)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])],
                  [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, k]),
                   helper.make_tensor_value_info("i", TensorProto.INT64, [1, k])],
                  [numpy_helper.from_array(np.array([k], np.int64), "k")])


def nonzero() -> onnx.ModelProto:
    return _graph([helper.make_node("NonZero", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                              [2, 2])],
                  [helper.make_tensor_value_info("y", TensorProto.INT64, [2, None])])


MUST_FAIL = {
    "clean Q/DQ conv (control)": lambda: qdq_conv(np.zeros(4, np.float32)),
    "INT32 bias DequantizeLinear": lambda: qdq_conv(np.arange(4, dtype=np.int32)),
    "non-zero zero point": lambda: qdq_conv(np.zeros(4, np.float32), zero_point=3),
    "uint8 activations (Q/DQ)": lambda: qdq_conv(np.zeros(4, np.float32), activation=np.uint8),
    "per-channel activation scale": lambda: qdq_conv(np.zeros(4, np.float32), activation_scale=(0.1, 0.2, 0.3)),
    "opset 21": lambda: qdq_conv(np.zeros(4, np.float32), opset=21),
    "TopK K=3840": lambda: topk(3840),
    "TopK K=3841": lambda: topk(3841),
    "NonZero (no rules row)": nonzero,
}


def _unary(op: str, kind: str, **attrs) -> onnx.ModelProto:
    t = ELEMENT[kind]
    return _graph([helper.make_node(op, ["x"], ["y"], **attrs)], [helper.make_tensor_value_info("x", t, [2, 3])],
                  [helper.make_tensor_value_info("y", t, None)])


def _binary(op: str, kind: str, out: int | None = None) -> onnx.ModelProto:
    t = ELEMENT[kind]
    return _graph([helper.make_node(op, ["a", "b"], ["y"])], [helper.make_tensor_value_info("a", t, [2, 3]),
                                                              helper.make_tensor_value_info("b", t, [2, 3])],
                  [helper.make_tensor_value_info("y", out or t, None)])


# rows that a single node of one data type exercises; the others (Conv, MaxPool, Q/DQ, Pad, Slice, Gather*,
# ScatterND, ...) are held by the must-fail cases and by every shipped graph building (test_tensorrt_rtx.py)
ROW_CASES = {
    "Add": lambda k: _binary("Add", k), "Sub": lambda k: _binary("Sub", k), "Mul": lambda k: _binary("Mul", k),
    "Div": lambda k: _binary("Div", k), "Greater": lambda k: _binary("Greater", k, TensorProto.BOOL),
    "Relu": lambda k: _unary("Relu", k), "Exp": lambda k: _unary("Exp", k), "Softmax": lambda k: _unary("Softmax", k),
    "Transpose": lambda k: _unary("Transpose", k, perm=[1, 0]), "Clip": lambda k: _unary("Clip", k),
    "Concat": lambda k: _unary("Concat", k, axis=0), "Shape": lambda k: _unary("Shape", k),
}


def verdicts(model: onnx.ModelProto) -> tuple[bool, str]:
    """(rules say it parses, TensorRT-RTX's verdict: "builds" / "parse fails" / "build fails")."""
    rules_ok = not check_tensorrt_compatibility(model, RULES_VERSION)
    build = build_rtx(model, ("SM86",), batches=(1, 1, 1))
    return rules_ok, "builds" if build.built else ("parse fails" if not build.parsed else "build fails")


def _row(case: str, rules_ok: bool, real: str) -> str:
    agree = rules_ok == (real == "builds")
    note = "" if agree else EXPECTED_DIFFERENCES.get(case, "UNEXPLAINED")
    return f"| {case} | {'OK' if rules_ok else 'fails'} | {real} | {'yes' if agree else 'no'} | {note} |"


def test_must_fail_cases_agree_with_the_real_parser():
    lines, unexplained = [], []
    for case, make in MUST_FAIL.items():
        rules_ok, real = verdicts(make())
        lines.append(_row(case, rules_ok, real))
        if rules_ok != (real == "builds") and case not in EXPECTED_DIFFERENCES:
            unexplained.append(lines[-1])
    print("\n| case | rules 11.1 | TensorRT-RTX 1.7 | agree | why not |\n|---|---|---|---|---|\n" + "\n".join(lines))
    assert not unexplained, unexplained


def test_rules_rows_agree_with_the_real_parser():
    lines, unexplained = [], []
    for op, make in ROW_CASES.items():
        row = TABLES[RULES_VERSION].ops[op]
        for kind in ELEMENT:
            rules_ok, real = verdicts(make(kind))
            listed = kind in row.types
            case = f"{op} {kind}{'' if listed else ' (not in row)'}"
            lines.append(_row(case, rules_ok, real))
            if rules_ok != (real == "builds") and case not in EXPECTED_DIFFERENCES:
                unexplained.append(lines[-1])
    print("\n| row, type | rules 11.1 | TensorRT-RTX 1.7 | agree | why not |\n|---|---|---|---|---|\n"
          + "\n".join(lines))
    assert not unexplained, unexplained
