"""Where an INT8 Q/DQ model's results on OpenVINO first differ from ONNX Runtime's, layer by layer.

    python -m scratchdet.benchmarks.studies.openvino_divergence RUN/export/model-int8-ort.onnx --data DATASET

Every quantised tensor (each QuantizeLinear output) is exposed as an output in both runtimes and compared on a
few val images. For each one, both runtimes are also checked against the ONNX specification: the float64
result of the op between the quantised tensors (Conv, Add, MaxPool, Relu), computed from that runtime's own
quantised inputs and requantised with round-half-to-even, so a difference is pinned on the runtime whose
arithmetic departs from the graph's meaning, not on whoever happens to be compared second.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from scratchdet.models.contract import read_metadata
from scratchdet.models.inference.onnxruntime_backend import create_session
from scratchdet.models.inference.openvino_backend import compile_onnx, run_compiled
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch


class NoReferenceError(LookupError):
    """A quantised tensor whose producing op the specification check does not model (reported without it)."""


@dataclass(frozen=True)
class TensorReport:
    name: str
    op: str  # the op whose output was quantised
    size: int
    differing: int  # elements where ONNX Runtime and OpenVINO differ
    max_steps: int
    ort_off_spec: int  # elements where ONNX Runtime differs from the float64 requantised reference
    openvino_off_spec: int
    openvino_max_off_spec: int  # in quantisation steps


class _Graph:
    """Producers, initialisers and constants of a Q/DQ model, to recompute one quantised tensor exactly."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.producer = {output: node for node in model.graph.node for output in node.output}
        self.values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                self.values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def dequantized(self, name: str, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """A DequantizeLinear output (or a float initialiser) in float64, from the runtime's own `tensors`."""
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            if name in self.values:
                return self.values[name].astype(np.float64)
            raise KeyError(f"{name}: neither a DequantizeLinear output nor an initialiser")
        source = node.input[0]
        if source not in tensors and source not in self.values:  # a tensor the runtime fused away: the spec's value
            zero_point = self.values[self.producer[source].input[2]]
            tensors[source] = requantize(self.reference(source, tensors)[1], zero_point.dtype)
        quantized = tensors[source] if source in tensors else self.values[source]
        scale = self.values[node.input[1]].astype(np.float64)
        zero = self.values[node.input[2]].astype(np.float64) if len(node.input) > 2 else np.zeros_like(scale)
        if scale.ndim == 1 and scale.size > 1:  # per-channel along `axis`
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % quantized.ndim
            shape = [1] * quantized.ndim
            shape[axis] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        return (quantized.astype(np.float64) - zero) * scale

    def reference(self, q_name: str, tensors: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
        """(op, exact requantised value before rounding) of QuantizeLinear output `q_name`."""
        import torch
        import torch.nn.functional as F

        quantize = self.producer[q_name]
        op_node = self.producer.get(quantize.input[0])
        if op_node is None:
            raise NoReferenceError(f"{q_name}: no reference for a QuantizeLinear after 'input'")
        op = op_node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in op_node.attribute}
        if op == "Conv":
            x, w = (torch.from_numpy(self.dequantized(i, tensors)) for i in op_node.input[:2])
            b = torch.from_numpy(self.dequantized(op_node.input[2], tensors)) if len(op_node.input) > 2 else None
            pads = attrs.get("pads", [0, 0, 0, 0])
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
            y = F.conv2d(x, w, b, stride=attrs.get("strides", [1, 1]), dilation=attrs.get("dilations", [1, 1]),
                         groups=attrs.get("group", 1)).numpy()
        elif op == "Add":
            y = self.dequantized(op_node.input[0], tensors) + self.dequantized(op_node.input[1], tensors)
        elif op == "Relu":
            y = np.maximum(self.dequantized(op_node.input[0], tensors), 0.0)
        elif op == "MaxPool":
            pads = attrs.get("pads", [0, 0, 0, 0])
            x = torch.from_numpy(self.dequantized(op_node.input[0], tensors))
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=-np.inf)
            y = F.max_pool2d(x, attrs["kernel_shape"], attrs.get("strides", attrs["kernel_shape"])).numpy()
        else:
            raise NoReferenceError(f"{q_name}: no reference for a QuantizeLinear after '{op}'")
        scale = float(self.values[quantize.input[1]])
        zero = float(self.values[quantize.input[2]])
        return op, y / scale + zero


def requantize(exact: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """ONNX QuantizeLinear's rounding (half to even) and saturation of an exact value."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(exact), info.min, info.max).astype(dtype)


def materialised(model: onnx.ModelProto, compiled) -> list[str]:
    """QuantizeLinear outputs that OpenVINO's compiled model actually writes, in graph order.

    OpenVINO fuses chains such as Conv -> Q -> DQ -> Add -> Q into one kernel; exposing a tensor inside such a
    chain as an output would break the fusion and hide what the fused kernel computes, so only the last
    quantised tensor of each executed node is compared.
    """
    outputs = {node.name: node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    written = set()
    for op in compiled.get_runtime_model().get_ordered_ops():
        fused = [name for name in op.get_rt_info()["originalLayersNames"].astype(str).split(",") if name in outputs]
        if fused:
            written.add(outputs[fused[-1]])
    return [node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"
            and node.output[0] in written]


def run_both(model_path: str | Path, images: np.ndarray, precision_hint: str = "f32", static_batch: bool = False,
             threads: int = 2) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray], bool]:
    """The quantised tensors OpenVINO writes, on ONNX Runtime and on OpenVINO.

    Returns (names, ort, openvino, unchanged): `unchanged` says whether exposing the tensors left OpenVINO's
    final outputs bit-identical (if not, the comparison may not show what the plain model computes).
    """
    model = onnx.load(str(model_path))
    batch = len(images) if static_batch else None
    plain = run_compiled(compile_onnx(model_path, threads, precision_hint, batch=batch), images)
    names = materialised(model, compile_onnx(model_path, threads, precision_hint, batch=batch))
    finals = [o.name for o in model.graph.output]
    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    debug.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "debug.onnx"
        onnx.save(debug, str(path))
        session = create_session(path, threads)
        ort = dict(zip(names + finals, session.run(names + finals, {"images": images})))
        openvino = run_compiled(compile_onnx(path, threads, precision_hint, batch=batch), images)
    unchanged = all(np.array_equal(plain[name], openvino[name]) for name in finals)
    return names, ort, openvino, unchanged


def layer_reports(names: list[str], ort: dict[str, np.ndarray], openvino: dict[str, np.ndarray],
                  model: onnx.ModelProto) -> list[TensorReport]:
    """Per quantised tensor in graph order: ORT vs OpenVINO, and each against the specification computed
    from its own inputs (tensors a runtime fused away are recomputed by the specification)."""
    graph = _Graph(model)
    reports = []
    for name in names:
        a, b = ort[name].astype(np.int32), openvino[name].astype(np.int32)
        try:
            op, exact_ort = graph.reference(name, dict(ort))
            _, exact_ov = graph.reference(name, dict(openvino))
        except NoReferenceError:  # an op the specification check does not model: reported without it
            reports.append(TensorReport(name, "-", a.size, int((a != b).sum()), int(np.abs(a - b).max(initial=0)),
                                        -1, -1, -1))
            continue
        spec_ort = requantize(exact_ort, ort[name].dtype).astype(np.int32)
        spec_ov = requantize(exact_ov, ort[name].dtype).astype(np.int32)
        reports.append(TensorReport(name, op, a.size, int((a != b).sum()), int(np.abs(a - b).max(initial=0)),
                                    int((a != spec_ort).sum()), int((b != spec_ov).sum()),
                                    int(np.abs(b - spec_ov).max(initial=0))))
    return reports


def channel_offsets(name: str, openvino: dict[str, np.ndarray], model: onnx.ModelProto) -> np.ndarray:
    """Per output channel of a Conv's quantised output: OpenVINO's mean departure from the specification,
    in float units (a constant per channel points at a bias or offset the runtime got wrong)."""
    graph = _Graph(model)
    quantize = graph.producer[name]
    scale = float(graph.values[quantize.input[1]])
    _, exact = graph.reference(name, dict(openvino))
    got = openvino[name].astype(np.float64)
    info = np.iinfo(openvino[name].dtype)
    unsaturated = (got > info.min) & (got < info.max) & (exact > info.min) & (exact < info.max)
    difference = (got - exact) * scale
    return np.array([difference[:, c][unsaturated[:, c]].mean() if unsaturated[:, c].any() else np.nan
                     for c in range(got.shape[1])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an INT8 Q/DQ ONNX from `scratchdet quantize`")
    parser.add_argument("--data", required=True, help="dataset whose val images are run")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--precision-hint", default="f32", choices=("f32", "bf16"))
    parser.add_argument("--static-batch", action="store_true", help="compile for the batch of --images (as "
                        "the OpenVINO backend does) instead of OpenVINO's default dynamic batch")
    args = parser.parse_args(argv)
    model = onnx.load(args.model)
    images = dataset_batch(load_dataset(args.data, "val").records[: args.images], read_metadata(model)["input_size"])
    names, ort, openvino, unchanged = run_both(args.model, images, args.precision_hint, args.static_batch)
    print(f"{len(names)} quantised tensors written by OpenVINO compared; exposing them "
          + ("left OpenVINO's detections unchanged" if unchanged else "CHANGED OpenVINO's detections"))
    print(f"{'differ':>9s}/{'size':<8s} max  ORT-off-spec  OV-off-spec (max)  op       tensor")
    reports = layer_reports(names, ort, openvino, model)
    for r in reports:
        print(f"{r.differing:9d}/{r.size:<8d} {r.max_steps:3d}  {r.ort_off_spec:12d}  {r.openvino_off_spec:11d} "
              f"({r.openvino_max_off_spec:3d})  {r.op:8s} {r.name}")
    first = next((r for r in reports if r.openvino_off_spec > 0), None)
    if first is None:
        print("OpenVINO computes every compared tensor as the specification says (from its own inputs)")
        return
    print(f"first tensor OpenVINO computes off the specification: {first.name} ({first.openvino_off_spec} of "
          f"{first.size} elements, up to {first.openvino_max_off_spec} steps)")
    if first.op == "Conv":
        offsets = channel_offsets(first.name, openvino, model)
        print("OpenVINO minus specification, mean per output channel: " + " ".join(f"{v:+.3f}" for v in offsets))


if __name__ == "__main__":
    main()
