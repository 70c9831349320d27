"""`scratchdet quantize`: INT8 Q/DQ ONNX calibrated on real training images, and FP16 ONNX.

Two INT8 flavours (docs/design.md#int8), both Q/DQ with per-channel weights, through
onnxruntime.quantization:
  ort       unsigned activations, signed weights (U8S8): the fast path of x86 VNNI and ARM dot-product;
  tensorrt  signed symmetric activations and weights, zero point 0, float biases, Q/DQ on op inputs only
            (TensorRT's placement rules, as NVIDIA ModelOpt applies them: tensorrt_qdq.py).
Only the network is quantised (its Conv, Relu, Add and MaxPool nodes; tensorrt: Conv, Add, MaxPool inputs);
normalisation, box decoding and NMS stay float32. For `ort` the 3-channel first conv is zero-padded to 4 input
channels first (channel_pad.py).
Calibration ranges are cached under a key of everything they depend on (ONNX bytes, images, method,
layout), so a second run with the same inputs reuses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from scratchdet.export import tensorrt_qdq
from scratchdet.export.channel_pad import CHANNEL_MULTIPLE, pad_conv_input_channels
from scratchdet.models.contract import check_contract, load_checked, read_metadata, write_metadata
from scratchdet.models.files import atomic_write, check_destination, file_sha256
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch

log = logging.getLogger(__name__)

TARGETS = ("ort", "tensorrt")
METHODS = ("minmax", "entropy", "percentile")
NETWORK_PREFIXES = ("/model/backbone/", "/model/head/")  # node-name scopes of the exported network
QUANTIZED_OPS = ("Conv", "Relu", "Add", "MaxPool")


class QuantizationError(ValueError):
    """Bad quantisation input: too few images, an unreadable file, an ONNX of the wrong form."""


@dataclass(frozen=True)
class CalibrationOptions:
    images: int = 64
    method: str = "minmax"
    seed: int = 0
    # 7-bit weights (ort target only): identical detections on x86 CPUs without VNNI, whose u8*s8 path
    # saturates in int16. Measured on BCCD: no accuracy cost (docs/results/arm.md), so portable is the default.
    reduce_range: bool = True


def calibration_images(data: str | Path, input_size: int, options: CalibrationOptions) -> tuple[np.ndarray, str]:
    """`options.images` training images sampled deterministically, preprocessed as at inference.

    Returns the batch [N, 3, S, S] float32 RGB 0-255 and a hash of the chosen files.

    Raises:
        QuantizationError: the training split has fewer images than asked.
    """
    dataset = load_dataset(data, "train")
    if len(dataset.records) < options.images:
        raise QuantizationError(f"{data}: calibration needs {options.images} training images, "
                                f"the train split has {len(dataset.records)} (lower --calib-images)")
    chosen = sorted(np.random.default_rng(options.seed).choice(len(dataset.records), options.images, replace=False))
    batch = dataset_batch([dataset.records[int(i)] for i in chosen], input_size)
    names = "\n".join(str(dataset.records[int(i)].path.name) for i in chosen)
    return batch, hashlib.sha256(names.encode()).hexdigest()[:16]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a preprocessed batch, one image at a time."""

    def __init__(self, images: np.ndarray) -> None:
        self.images, self.index = images, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.images):
            return None
        self.index += 1
        return {"images": self.images[self.index - 1 : self.index]}

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.images = self.images[start_index:end_index]


class _DropPreprocessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def quiet_quantizer_logging() -> Iterator[None]:
    """onnxruntime's quantiser logs a 'consider pre-processing' warning on the root logger at every call;
    that shape-inference pre-processing does not apply to graphs with NMS, so here that one message is
    noise. Only it is dropped, and only while quantising: every other record still reaches the handlers."""
    hint = _DropPreprocessingHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def network_nodes(model: onnx.ModelProto, ops: tuple[str, ...] = QUANTIZED_OPS) -> list[str]:
    """Names of the network's quantisable nodes of types `ops` (everything else stays float)."""
    nodes = [n.name for n in model.graph.node if n.op_type in ops and n.name.startswith(NETWORK_PREFIXES)]
    if not nodes:
        raise QuantizationError("no quantisable network nodes found (was this ONNX made by `scratchdet export`?)")
    return nodes


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearAdd", "QLinearMatMul", "ConvInteger",
           "MatMulInteger", "DynamicQuantizeLinear"}


def graph_precision(model: onnx.ModelProto) -> str:
    """What the graph itself holds: 'int8' (quantisation ops), 'fp16' (float16 tensors) or 'fp32'."""
    if any(node.op_type in QDQ_OPS for node in model.graph.node):
        return "int8"
    half = onnx.TensorProto.FLOAT16
    casts = (a.i == half for node in model.graph.node if node.op_type == "Cast"
             for a in node.attribute if a.name == "to")
    if any(t.data_type == half for t in model.graph.initializer) or any(casts):
        return "fp16"
    return "fp32"


def check_source(onnx_path: Path, out: Path, model: onnx.ModelProto, metadata: dict) -> None:
    """Quantise only an FP32 export, and never write over it.

    Raises:
        QuantizationError: `out` is the source file, or the source is already INT8/FP16 by its metadata
            or by its graph (naming both).
    """
    if out.resolve() == onnx_path.resolve() or (out.exists() and out.samefile(onnx_path)):
        raise QuantizationError(f"{out}: the output is the source ONNX itself; writing it would replace the FP32 "
                                "model. Choose another --out (default: beside the source, with a suffix)")
    declared, found = metadata.get("precision"), graph_precision(model)
    if declared != "fp32" or found != "fp32":
        raise QuantizationError(f"{onnx_path}: is not an FP32 model (metadata precision {declared!r}, graph "
                                f"{found}); quantize and FP16 conversion take the FP32 ONNX from `scratchdet export`")


def quantize_int8(onnx_path: str | Path, data: str | Path, target: str, out: str | Path,
                  options: CalibrationOptions, cache_dir: str | Path | None = None) -> Path:
    """Write a Q/DQ INT8 copy of `onnx_path` calibrated on `data`'s training images.

    Raises:
        QuantizationError / ContractError: bad target or method, too few images, not our ONNX, not FP32,
            `out` equal to the source.
        OSError: `out` cannot be written.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if target not in TARGETS:
        raise QuantizationError(f"unknown target '{target}': choose {' or '.join(TARGETS)}")
    if options.method not in METHODS:
        raise QuantizationError(f"unknown calibration method '{options.method}': choose {', '.join(METHODS)}")
    onnx_path, out = Path(onnx_path), Path(out)
    model, metadata = load_checked(onnx_path)
    check_source(onnx_path, out, model, metadata)
    check_destination(out)
    images, images_hash = calibration_images(data, metadata["input_size"], options)
    # ONNX Runtime's fast INT8 conv needs input channels in fours; TensorRT has its own kernels.
    padded = pad_conv_input_channels(model) if target == "ort" else []
    layout = f"channels%{CHANNEL_MULTIPLE}" if padded else "as-exported"
    inputs = f"{file_sha256(onnx_path)}|{images_hash}|{options}|{target}|{layout}"
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    cache = Path(cache_dir or out.parent) / f"calibration-{key}.json"
    log.info("calibration ranges: %s (%s)", cache, "reused" if cache.is_file() else "computing")
    symmetric = target == "tensorrt"
    reduce_range = options.reduce_range and not symmetric  # TensorRT INT8 is full 8-bit symmetric
    if symmetric:
        nodes = network_nodes(model, tensorrt_qdq.OPS)
        residual = tensorrt_qdq.non_residual_add_inputs(model, nodes)
        extra = tensorrt_qdq.extra_options(model)
    else:
        nodes, residual = network_nodes(model), {}
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    # One write of graph and final metadata together: a kill leaves the previous file, never an INT8 graph
    # labelled fp32 (quantize_static copies the source's metadata).
    fresh = not cache.is_file()
    # the cache through the helper too (ONNX Runtime's own write leaves it 0600); an existing file
    # at the path it is given reads as a cache, so the helper's empty temporary is removed for it to write
    with atomic_write(out) as temporary, \
            atomic_write(cache) if fresh else contextlib.nullcontext(cache) as cache_file:
        if fresh:
            cache_file.unlink()
        with quiet_quantizer_logging():
            quantize_static(
                model, temporary, _Reader(images), quant_format=QuantFormat.QDQ,
                nodes_to_quantize=nodes, per_channel=True, reduce_range=reduce_range,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                  "percentile": CalibrationMethod.Percentile}[options.method],
                extra_options=extra, calibration_cache_path=cache_file,
            )
        quantized = onnx.load(str(temporary))
        tensorrt_qdq.unquantize_inputs(quantized, residual)  # the Conv side of each residual Add stays float
        write_metadata(quantized, {**metadata, "precision": f"int8-{target}", "quantization": {
            "target": target, "calibration_images": options.images, "calibration_method": options.method,
            "calibration_seed": options.seed, "calibration_data_hash": images_hash, "reduce_range": reduce_range,
            "channel_padded_convs": padded,
            "source_onnx_sha256": file_sha256(onnx_path), "config_name": metadata["config_name"]}})
        onnx.save(quantized, str(temporary))
    return out


def convert_fp16(onnx_path: str | Path, out: str | Path) -> Path:
    """An FP16 copy for strongly typed TensorRT 11: network in float16; I/O, decoding and NMS float32."""
    from onnxconverter_common import float16

    onnx_path, out = Path(onnx_path), Path(out)
    model, metadata = load_checked(onnx_path)
    check_source(onnx_path, out, model, metadata)
    check_destination(out)
    keep_float32 = [n.name for n in _all_nodes(model.graph) if not n.name.startswith(NETWORK_PREFIXES)]
    outer_reads = _outer_reads(model.graph)
    converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_float32)
    _keep_float32_tail(converted, outer_reads)
    _restore_float32_outputs(converted)
    check_contract(converted, out)
    write_metadata(converted, {**metadata, "precision": "fp16"})
    with atomic_write(out) as temporary:
        onnx.save(converted, str(temporary))
    return out


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes of `graph` and of every subgraph in it (the NMS tail's Loop body): the IoU and the greedy
    loop's sums stay float32 only if the FP16 converter is told about the nodes inside the Loop too."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes += _all_nodes(attribute.g)
    return nodes


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _subgraph_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [inner for node in graph.node for a in node.attribute if a.type == onnx.AttributeProto.GRAPH
            for inner in _all_nodes(a.g)]


def _outer_reads(graph: onnx.GraphProto) -> dict[str, tuple[str, int]]:
    """Tensors that subgraph nodes read from the outer graph -> (name of the outer node making it, output index)."""
    made = {output: (node.name, i) for node in graph.node for i, output in enumerate(node.output)}
    return {name: made[name] for node in _subgraph_nodes(graph) for name in node.input if name in made}


def _keep_float32_tail(model: onnx.ModelProto, outer_reads: dict[str, tuple[str, int]]) -> None:
    """Keep the float32 part float32 between its own nodes, subgraphs included.

    onnxconverter-common 1.16 casts a blocked node's output to float16 and back for the next blocked node, so
    box decoding and the NMS tail would compute on boxes rounded to float16 (0.25 px steps at 300 px); and it
    renames outputs and drops casts without updating the Loop body's reads of outer tensors, which then name a
    float16 tensor (TensorRT: "IMatrixMultiplyLayer must have same input types") or none at all. Each
    Cast(float16) -> Cast(float32) pair is dropped, and a subgraph reads the float32 output of the node that
    made its tensor in the source graph (`outer_reads`: _outer_reads of the source)."""
    graph, half, single = model.graph, onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    nodes = {node.name: node for node in graph.node}
    for node in _subgraph_nodes(graph):
        node.input[:] = [nodes[outer_reads[name][0]].output[outer_reads[name][1]] if name in outer_reads else name
                         for name in node.input]
    rounded = {n.output[0]: n.input[0] for n in graph.node if _cast_to(n) == half}  # float16 copy -> float32
    outputs = {o.name for o in graph.output}
    restored = {n.output[0]: rounded[n.input[0]] for n in graph.node
                if _cast_to(n) == single and n.input[0] in rounded and n.output[0] not in outputs}
    kept = [n for n in graph.node if not (n.output and n.output[0] in restored)]
    for node in kept:
        node.input[:] = [restored.get(name, name) for name in node.input]
    read = {name for n in [*kept, *_subgraph_nodes(graph)] for name in n.input} | outputs
    kept = [n for n in kept if not (_cast_to(n) == half and n.output[0] not in read)]
    del graph.node[:]
    graph.node.extend(kept)


def _restore_float32_outputs(model: onnx.ModelProto) -> None:
    """onnxconverter-common casts outputs made by blocked (float32) nodes to float16 despite
    keep_io_types; turn those final Casts back to float32, as the ONNX contract requires."""
    producers = {output: node for node in model.graph.node for output in node.output}
    for output in model.graph.output:
        if output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        cast = producers.get(output.name)
        if cast is None or cast.op_type != "Cast":
            raise QuantizationError(f"FP16 conversion left output '{output.name}' in float16")
        for attribute in cast.attribute:
            if attribute.name == "to":
                attribute.i = onnx.TensorProto.FLOAT
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def quantization_summary(path: str | Path) -> dict:
    """Counts that show what was quantised: Q/DQ nodes, quantised Convs, zero points."""
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear"),
            "Conv": ops.count("Conv"), "precision": read_metadata(model).get("precision"),
            "metadata": json.dumps(read_metadata(model).get("quantization"))}
