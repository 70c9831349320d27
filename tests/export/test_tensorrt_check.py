"""TensorRT's rules as the checker: must-fail graphs from public failure reports, and our own four graphs."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scratchdet.export.nms_graph import nms_tail_model
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
from scratchdet.export.tensorrt_check import (
    TensorRTCompatibilityError,
    check_tensorrt_compatibility,
    require_tensorrt_compatible,
    tensorrt_verdicts,
    verdict_lines,
)
from scratchdet.export.tensorrt_rtx import rtx_available, rtx_version
from scratchdet.export.tensorrt_rules import SUPPORTED_VERSIONS, TABLES, table_for
from scratchdet.models.checkpoint import load_model
from scratchdet.models.config import PostprocessConfig
from scratchdet.models.contract import read_metadata

VERSIONS = ["10.3", "11.1"]


def qdq_conv(bias: np.ndarray | None = None, zero_point: int = 0, activation=np.int8, activation_scale=(0.1,),
             opset: int = 17) -> onnx.ModelProto:
    """images -> Q/DQ -> Conv(DQ(int8 weights), bias): the Q/DQ pattern of our INT8 graphs, in small."""
    const = numpy_helper.from_array
    initializers = [
        const(np.array(activation_scale, np.float32).reshape(() if len(activation_scale) == 1 else (-1,)), "s"),
        const(np.full(() if len(activation_scale) == 1 else (len(activation_scale),), zero_point, activation), "z"),
        const(np.ones((4, 3, 1, 1), np.int8), "w"), const(np.full(4, 0.01, np.float32), "ws"),
        const(np.zeros(4, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"], name="dq"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], name="w_dq", axis=0)]
    conv_inputs = ["x", "wf"]
    if bias is not None and bias.dtype == np.float32:
        initializers.append(const(bias, "b"))
        conv_inputs.append("b")
    elif bias is not None:  # quantised bias, as quantize_static writes it without QuantizeBias: False
        initializers += [const(bias, "bq"), const(np.full(4, 0.001, np.float32), "bs"), const(np.zeros(4, bias.dtype),
                                                                                                "bz")]
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["b"], name="conv.bias_DequantizeLinear",
                                      axis=0))
        conv_inputs.append("b")
    nodes.append(helper.make_node("Conv", conv_inputs, ["out"], name="conv"))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def rules_broken(model: onnx.ModelProto, version: str, **kwargs) -> list[str]:
    return [str(f) for f in check_tensorrt_compatibility(model, version, **kwargs)]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_clean_qdq_conv_passes(version):
    assert rules_broken(qdq_conv(np.zeros(4, np.float32)), version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_int32_bias_dequantize_is_reported(version):
    # microsoft/onnxruntime#14229, onnx/onnx-tensorrt#850, lyuwenyu/RT-DETR#343: quantize_static's INT32 conv
    # biases stop the parser with "..._bias_DequantizeLinear: only activation types allowed as input to this layer".
    broken = rules_broken(qdq_conv(np.arange(4, dtype=np.int32)), version)
    assert len(broken) == 1
    assert broken[0].startswith("DequantizeLinear 'conv.bias_DequantizeLinear': input 0 'bq' is INT32")
    assert "onnx/onnx-tensorrt docs/operators.md" in broken[0] and TABLES[version].ops["DequantizeLinear"].types[0] \
        == "INT8"


@pytest.mark.parametrize("version", VERSIONS)
def test_non_zero_zero_point_is_reported(version):
    # NVIDIA/TensorRT#2774 ("TRT only supports symmetric quantization - zeroPt must be all zeros") and #4698
    # (TensorRT 10: "Non-zero zero point is not supported"), from asymmetric Q/DQ.
    broken = rules_broken(qdq_conv(np.zeros(4, np.float32), zero_point=3), version)
    assert [b.split(":")[0] for b in broken] == ["QuantizeLinear 'q'", "DequantizeLinear 'dq'"]
    assert all("zero point 3 is not 0" in b for b in broken)


@pytest.mark.parametrize("version", VERSIONS)
def test_uint8_activations_are_reported(version):
    # onnx-tensorrt warns "TensorRT doesn't support QuantizeLinear/DequantizeLinear with UINT8 zero_point. TensorRT
    # will use INT8 instead" (leimao/PyTorch-Eager-Mode-Quantization-TensorRT-Acceleration#1; NVIDIA/TensorRT#2081
    # asks for UINT8 after ReLU: "not on our roadmap"): a [0, 255] range read as INT8 saturates at 127.
    broken = rules_broken(qdq_conv(np.zeros(4, np.float32), activation=np.uint8), version)
    assert any(b.startswith("DequantizeLinear 'dq': input 0 'xq' is UINT8") for b in broken)
    assert any(b.startswith("tensor 'xq': UINT8 inside the network") for b in broken)


@pytest.mark.parametrize("version", VERSIONS)
def test_per_channel_activation_scale_is_reported(version):
    # NvInfer.h IDequantizeLayer: "Per-channel dequantization is supported only for input that is rooted at an
    # IConstantLayer (i.e. weights). Activations cannot be quantized per-channel."
    broken = rules_broken(qdq_conv(np.zeros(4, np.float32), activation_scale=(0.1, 0.2, 0.3)), version)
    assert [b.split(" (")[0] for b in broken] == ["QuantizeLinear 'q': per-channel scale", "DequantizeLinear 'dq': "
                                                  "per-channel scale"]


def test_opset_outside_each_versions_range_is_reported():
    # operators.md: "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20" (10.x up to 10.5),
    # 11.1: "opset 9 to opset 24". NVIDIA/TensorRT#284: graphs of a newer opset than the parser's do not parse.
    model = qdq_conv(np.zeros(4, np.float32), opset=21)
    assert rules_broken(model, "10.3") == [
        "model: opset 21 outside TensorRT 10.3's 9..20 [onnx/onnx-tensorrt docs/operators.md @ 10.1-GA 96e7811 "
        "(+ docs/Changelog.md 10.2, 10.3)]"]
    assert rules_broken(model, "11.1") == []


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory):
    model, checkpoint = load_model(tiny_checkpoint)
    path = tmp_path_factory.mktemp("trt") / "model.onnx"
    export_onnx(model, checkpoint["class_names"], path, ExportOptions())
    return path


def topk_with_k(path, k: int) -> onnx.ModelProto:
    model = onnx.load(str(path))
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    model.graph.initializer.append(numpy_helper.from_array(np.array([k], np.int64), "big_k"))
    topk.input[1] = "big_k"
    return model


@pytest.mark.parametrize("version", VERSIONS)
def test_topk_k_over_3840_is_reported(fp32, version):
    # NvInfer.h ITopKLayer::setK: "Currently only values up to 3840 are supported"; the parse fails with
    # "condition: k > 0 && k <= MAX_TOPK_K" (PeterL1n/BackgroundMattingV2#130).
    assert rules_broken(topk_with_k(fp32, 3840), version) == []
    broken = rules_broken(topk_with_k(fp32, 3841), version)
    assert len(broken) == 1 and "K=3841 exceeds TensorRT's 3840 [NVIDIA/TensorRT include/NvInfer.h" in broken[0]


def test_topk_computed_k_and_unsorted_topk(fp32):
    model = onnx.load(str(fp32))
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    # A K computed in the graph parses since TensorRT 8.6 (docs/Changelog.md: "TopK operators with dynamic K").
    model.graph.node.insert(0, helper.make_node("Identity", [topk.input[1]], ["computed_k"], name="k_id"))
    model.graph.node.insert(1, helper.make_node("NonZero", ["images"], ["nz"], name="odd"))
    topk.input[1] = "computed_k"
    topk.attribute.append(helper.make_attribute("sorted", 0))
    broken = rules_broken(model, "10.3")
    assert [b.split(" [")[0] for b in broken] == [
        "Identity 'k_id': operator Identity is not in the TensorRT 10.3 table; add its docs/operators.md row to "
        "tensorrt_rules.py to check it",
        "NonZero 'odd': operator NonZero is not in the TensorRT 10.3 table; add its docs/operators.md row to "
        "tensorrt_rules.py to check it",
        f"TopK '{topk.name}': `sorted` is 0, must be 1"]


def test_nms_candidates_beyond_the_layer_limit_are_reported():
    # NvInfer.h INMSLayer: "only the K highest scoring boxes in each batch item will be considered for selection.
    # The value of K is 2000 for SM 5.3 and 6.2 devices, and 5000 otherwise."
    model = nms_tail_model(6000, 2, PostprocessConfig(pre_nms_topk=3000))
    assert rules_broken(model, "11.1") == []
    broken = rules_broken(model, "11.1", compute_capability=(5, 3))
    assert len(broken) == 1 and "3000 candidate boxes per batch item; TensorRT considers only the 2000" in broken[0]


def test_version_lookup():
    assert table_for("10.3.0.30").version == "10.3" and table_for("11.1").version == "11.1"
    assert SUPPORTED_VERSIONS == ("10.3", "11.1")
    with pytest.raises(ValueError, match=r"no TensorRT rule table for version '8.6'; tables exist for \['10.3'"):
        table_for("8.6")


def test_every_row_cites_its_own_text():
    for table in TABLES.values():
        for op, row in table.ops.items():
            assert row.source.text.startswith(f"| {op} | Y | {', '.join(row.types)} |")
            assert row.restriction in row.source.text


@pytest.fixture(scope="module")
def flavours(fp32, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("flavours")
    paths = {"fp32": fp32, "fp16": convert_fp16(fp32, out / "fp16.onnx")}
    for target in ("ort", "tensorrt"):
        paths[target] = quantize_int8(fp32, synth_data, target, out / f"{target}.onnx", CalibrationOptions(images=8))
    return paths


@pytest.mark.parametrize("flavour", ["fp32", "fp16"])
def test_our_float_graphs_pass_every_version(flavours, flavour):
    assert tensorrt_verdicts(onnx.load(str(flavours[flavour]))) == {"10.3": [], "11.1": []}


def test_tensorrt_flavour_verdict_agrees_with_its_dequantize_inputs(flavours):
    # Every DequantizeLinear whose input is not INT8 (an INT32 conv bias) is a finding, named; the tensorrt
    # flavour keeps its biases in float, so the set is empty, and a file with INT32 bias DQs is reported.
    model = onnx.load(str(flavours["tensorrt"]))
    types = {t.name: t.data_type for t in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    non_int8 = {f"DequantizeLinear '{n.name}'" for n in model.graph.node if n.op_type == "DequantizeLinear"
                and types.get(n.input[0], TensorProto.INT8 if producers.get(n.input[0]) else None) != TensorProto.INT8}
    for version, findings in tensorrt_verdicts(model).items():
        assert {f.node for f in findings} == non_int8, version
        assert all("is INT32; TensorRT" in f.rule for f in findings)


def test_ort_flavour_is_reported_as_not_meant_for_tensorrt(flavours):
    model = onnx.load(str(flavours["ort"]))
    assert read_metadata(model)["precision"] == "int8-ort"
    assert all(tensorrt_verdicts(model).values())
    lines = verdict_lines(model)
    assert [line.split(":")[0] for line in lines] == ["TensorRT 10.3", "TensorRT 11.1"]
    assert all("not for TensorRT (the ort flavour has unsigned U8 activations" in line for line in lines)
    with pytest.raises(TensorRTCompatibilityError, match=r"ort.onnx: TensorRT parser rules broken \(not for TensorRT"):
        require_tensorrt_compatible(model, "ort.onnx")


def test_require_names_the_file_and_each_version():
    with pytest.raises(TensorRTCompatibilityError, match=r"m.onnx: TensorRT parser rules broken\nTensorRT 10.3: 1 "
                       r"finding\(s\):\n  DequantizeLinear 'conv.bias_DequantizeLinear'"):
        require_tensorrt_compatible(qdq_conv(np.arange(4, dtype=np.int32)), "m.onnx")


def test_quantize_cli_prints_the_verdict_per_version(fp32, synth_data, tmp_path, capsys):
    from scratchdet.cli import main

    assert main(["quantize", "--model", str(fp32), "--precision", "fp16", "--out", str(tmp_path / "h.onnx")]) == 0
    lines = capsys.readouterr().out.splitlines()
    if not rtx_available():
        assert lines[-2:] == ["TensorRT 10.3: parser rules OK", "TensorRT 11.1: parser rules OK"]
        return
    assert lines[-3:-1] == ["TensorRT 10.3: parser rules OK", "TensorRT 11.1: parser rules OK"]
    # the real parser and builder where TensorRT-RTX is installed (the dev extra): the FP16 file parses, and the
    # build's outcome is printed whichever it is
    assert lines[-1].startswith(f"TensorRT-RTX {rtx_version()}: parse OK, build (default targets) ")
