"""INT8 on OpenVINO: the divergence trace, the defect it found, and agreement with FP32 as on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from scratchdet.benchmarks.portability import found_again
from scratchdet.benchmarks.studies.openvino_divergence import (
    _Graph,
    channel_offsets,
    layer_reports,
    requantize,
    run_both,
)
from scratchdet.benchmarks.studies.openvino_repro import (
    CONV_SCALE,
    CONV_ZERO,
    INPUT_SCALE,
    OUTPUT_SCALE,
    bias_gathernd_graph,
    bias_gathernd_inputs,
    bias_gathernd_specification,
    residual_add_graph,
    residual_add_input,
)
from scratchdet.export.quantize import CalibrationOptions, quantize_int8
from scratchdet.models.contract import read_metadata
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend, create_session
from scratchdet.models.inference.openvino_backend import OpenVinoBackend, compile_onnx, run_compiled
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch

pytestmark = pytest.mark.openvino
openvino = pytest.importorskip("openvino", reason="OpenVINO is in the dev extra: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def models(trained_models: dict[str, Path], trained_data: Path,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained tiny model: FP32, INT8 for ORT (U8S8) and INT8 for TensorRT (S8S8 symmetric)."""
    tensorrt = quantize_int8(trained_models["fp32"], trained_data, "tensorrt",
                             tmp_path_factory.mktemp("trt") / "model-int8-tensorrt.onnx", CalibrationOptions(images=32))
    return {"fp32": trained_models["fp32"], "int8-ort": trained_models["int8"], "int8-tensorrt": tensorrt}


@pytest.fixture(scope="module")
def images(models: dict[str, Path], trained_data: Path) -> np.ndarray:
    size = read_metadata(onnx.load(str(models["fp32"])))["input_size"]
    return dataset_batch(load_dataset(trained_data, "val").records[:30], size)


def has_int8_dot_product() -> bool:
    """Whether this CPU multiplies u8*s8 pairs without int16 saturation (VNNI or AMX), as /proc/cpuinfo says."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _logits(path: Path, images: np.ndarray, runtime: str, batch: int | None = None) -> np.ndarray:
    """The class logits the network hands to the in-graph Softmax (the float tensor after the Q/DQ network)."""
    model = onnx.load(str(path))
    name = next(node.input[0] for node in model.graph.node if node.op_type == "Softmax")
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(name)])
    debug = path.with_name(f"{path.stem}-logits.onnx")
    onnx.save(model, str(debug))
    if runtime == "ort":
        return create_session(debug, 2).run([name], {"images": images})[0]
    return run_compiled(compile_onnx(debug, 2, batch=batch), images)[name]


@pytest.mark.parametrize("flavour", ["int8-ort", "int8-tensorrt"])
def test_int8_agrees_with_fp32_on_openvino_as_on_onnxruntime(models, images, flavour):
    """The issue's measure (reference: FP32 ONNX Runtime detections scoring >= 0.25; found again = same class,
    IoU >= 0.7, score within 0.1) on OpenVINO through our backend, against the same on ONNX Runtime; and the
    network's logits as far from FP32 on both. Before the static-batch compile OpenVINO's logits were 4-20x
    farther from FP32 than ONNX Runtime's (next test)."""
    def one_by_one(backend) -> list:
        return [backend.infer(images[i : i + 1])[0] for i in range(len(images))]

    reference = one_by_one(OnnxBackend(models["fp32"], threads=2))
    found_ort, total = found_again(reference, one_by_one(OnnxBackend(models[flavour], threads=2)))
    found_ov, _ = found_again(reference, one_by_one(OpenVinoBackend(models[flavour], threads=2)))
    print(f"{flavour}: found again {found_ort}/{total} on ONNX Runtime, {found_ov}/{total} on OpenVINO")
    assert total >= 30
    if flavour == "int8-tensorrt" and not has_int8_dot_product():
        pytest.skip(f"this CPU has no VNNI/AMX: OpenVINO's u8*s8 products saturate in int16 on the tensorrt "
                    f"flavour's 8-bit weights (found again {found_ov}/{total}); the ort flavour's 7-bit weights are "
                    f"for such CPUs (docs/results/arm.md)")
    assert found_ov / total >= found_ort / total - 0.1
    fp32 = _logits(models["fp32"], images, "ort")
    rms_ort = float(np.sqrt(((_logits(models[flavour], images, "ort") - fp32) ** 2).mean()))
    rms_ov = float(np.sqrt(((_logits(models[flavour], images, "openvino", batch=len(images)) - fp32) ** 2).mean()))
    print(f"{flavour}: logits RMS vs FP32: ONNX Runtime {rms_ort:.4f}, OpenVINO (static batch) {rms_ov:.4f}")
    assert rms_ov <= 1.5 * rms_ort


def test_openvino_dynamic_batch_still_applies_channel0_bias_to_the_first_conv(models, images):
    """The defect the trace found (OpenVINO 2026.4.1, dynamic batch), on our exported model: the first conv's
    output departs from the specification by b[0] - b[c] per channel c (its trigger, the NMS tail's
    GatherND(batch_dims=1), is isolated in the 3-node repro below). If this fails, OpenVINO fixed it: the
    static-batch workaround in the OpenVINO backend can go, and docs/results/openvino.md says so."""
    model = onnx.load(str(models["int8-ort"]))
    names, ort, ov, _ = run_both(models["int8-ort"], images[:2])
    reports = layer_reports(names, ort, ov, model)
    first = next(r for r in reports if r.openvino_off_spec > 0)
    stem = next(r for r in reports if r.op == "Conv")
    assert first.name == stem.name and all(r.ort_off_spec <= 0.01 * r.size for r in reports)
    graph = _Graph(model)
    conv = graph.producer[graph.producer[stem.name].input[0]]
    bias = graph.dequantized(conv.input[2], {})
    offsets, expected = channel_offsets(stem.name, ov, model), bias[0] - bias
    # A channel shifted down far enough reads 0 on every pixel after the ReLU: saturated, no offset to measure
    # (seen on CI's CPU, whose trained weights differ). Those must be channels the defect shifts down.
    measured = np.isfinite(offsets)
    assert measured.sum() >= len(offsets) // 2 and (expected[~measured] < 0).all(), (offsets, expected)
    np.testing.assert_allclose(offsets[measured], expected[measured], atol=0.05)
    # The same file compiled for a fixed batch follows the specification on that conv.
    names, ort, ov, _ = run_both(models["int8-ort"], images[:2], static_batch=True)
    static_stem = next(r for r in layer_reports(names, ort, ov, model) if r.op == "Conv")
    assert static_stem.openvino_off_spec <= 0.001 * static_stem.size


def test_residual_add_repro_openvino_skips_the_conv_output_rounding(tmp_path):
    """The 10-node repro: ONNX Runtime follows the specification exactly; OpenVINO's fused Conv+Add keeps the
    clamp of the Q/DQ between them but not its rounding, and matches that float64 computation exactly."""
    import torch
    import torch.nn.functional as F

    model, x = residual_add_graph(), residual_add_input()
    path = tmp_path / "residual_add.onnx"
    onnx.save(model, str(path))
    ort = create_session(path, 1).run(["y"], {"x": x})[0]
    ov = run_compiled(compile_onnx(path, 1), x)["y"]
    graph = _Graph(model)
    quantized = {"xq": requantize(x / INPUT_SCALE, np.uint8)}
    spec = requantize(graph.reference("y", dict(quantized))[1], np.uint8)
    assert np.array_equal(ort, spec)
    steps = np.abs(ov.astype(int) - spec.astype(int))
    assert steps.max() == 1 and 0.05 < (steps > 0).mean() < 0.5
    weight, bias = (torch.from_numpy(graph.dequantized(n, {})) for n in ("w", "b"))
    conv = F.conv2d(torch.from_numpy(graph.dequantized("xd", dict(quantized))), weight, bias, padding=1).numpy()
    residual = graph.dequantized("pd", dict(quantized))
    low, high = (0 - CONV_ZERO) * CONV_SCALE, (255 - CONV_ZERO) * CONV_SCALE  # the conv output Q's range
    clamped_not_rounded = requantize((np.clip(conv, low, high) + residual) / OUTPUT_SCALE, np.uint8)
    assert np.array_equal(ov, clamped_not_rounded)


def _openvino_outputs(path: Path, inputs: dict[str, np.ndarray], batch: int | None) -> dict[str, np.ndarray]:
    """Every output of the file on OpenVINO (f32 hint, one thread), every input's batch fixed when `batch` is set."""
    core = openvino.Core()
    model = core.read_model(str(path))
    if batch is not None:
        shapes = {}
        for port in model.inputs:
            shape = port.get_partial_shape()
            shape[0] = batch
            shapes[port] = shape
        model.reshape(shapes)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    results = compiled.create_infer_request().infer(inputs)
    return {name: np.array(value) for output, value in results.items() for name in output.get_names()}


def test_bias_repro_three_nodes_openvino_adds_channel0_bias_while_the_batch_is_dynamic(tmp_path):
    """Conv(bias) -> QuantizeLinear plus a GatherND(batch_dims=1): OpenVINO with a dynamic batch is off by
    b[0] - b[c] on channel c (channel 0 right); ONNX Runtime and OpenVINO with the batch fixed are on the
    specification; without the GatherND OpenVINO is right with a dynamic batch too. If the first assertion on
    OpenVINO fails, OpenVINO fixed it: the static-batch compile in the OpenVINO backend can go."""
    model, inputs = bias_gathernd_graph(), bias_gathernd_inputs(batch=2)
    path = tmp_path / "conv_bias_gathernd.onnx"
    onnx.save(model, str(path))
    spec = bias_gathernd_specification(model, inputs["x"])
    ort = create_session(path, 1).run(["y", "g"], inputs)
    assert np.array_equal(ort[0], spec)
    assert np.array_equal(ort[1], np.stack([image[order] for image, order in zip(spec, inputs["idx"][..., 0])]))
    dynamic = _openvino_outputs(path, inputs, batch=None)["y"].astype(np.float64)
    bias = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "b"))
    offsets = (dynamic - spec).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(offsets, bias[0] - bias, atol=0.5)  # within the output's rounding step
    assert np.abs(bias[0] - bias)[1:].min() > 10  # so the offsets are far from rounding noise
    assert np.array_equal(_openvino_outputs(path, inputs, batch=2)["y"], spec)
    without = tmp_path / "conv_bias.onnx"
    onnx.save(bias_gathernd_graph(gathernd=False), str(without))
    assert np.array_equal(_openvino_outputs(without, {"x": inputs["x"]}, batch=None)["y"], spec)
