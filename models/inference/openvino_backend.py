"""ONNX models (.onnx, FP32 or INT8 Q/DQ) through OpenVINO on the CPU: the second, independent consumer.

OpenVINO reads our ONNX directly (NonMaxSuppression included). Its CPU plugin runs floating-point layers in
the precision of INFERENCE_PRECISION_HINT, whose default on CPUs with BF16 (AVX512-BF16, AMX; Graviton 3/4,
Neoverse V1/V2) is bf16: a different precision from the model's, with its own accuracy. This backend
therefore states the hint it runs with, and defaults to f32 so an FP32 model gives FP32 results; pass
precision_hint="bf16" to measure the faster mode (its mAP is measured, not assumed).

Static batch, always: OpenVINO 2026.4.1 compiles our INT8 Q/DQ models wrongly while the batch axis is
dynamic: it applies channel 0's bias of the first convolution to all of its output channels (traced layer by
layer in benchmarks/studies/openvino_divergence.py; docs/results/openvino.md). The trigger is a Conv with a bias
followed by QuantizeLinear in a graph holding a GatherND with batch_dims=1 (our NMS tail gathers each class's
candidate boxes with one): a 3-node reproduction is benchmarks/studies/openvino_repro.py. The same file reshaped to a
fixed batch is computed as the graph says. So each batch size gets its own compiled model, made on first use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from scratchdet.models.contract import load_checked, postprocess_config, unpack_outputs
from scratchdet.models.detections import Detections

log = logging.getLogger(__name__)

PRECISION_HINTS = ("f32", "bf16")
MAX_BATCH = 64  # one compiled model per batch size used, each made on first use


def import_openvino():
    """The openvino module, or an ImportError saying what to install."""
    try:
        import openvino
    except ImportError as error:
        raise ImportError("OpenVINO is needed for --runtime openvino: pip install 'scratchdet-edge[openvino]' "
                          "(or pip install openvino)") from error
    return openvino


def compile_onnx(path: str | Path, threads: int | None = None, precision_hint: str = "f32",
                 extra_outputs: list[str] | None = None, batch: int | None = None, profile: bool = False):
    """An OpenVINO CompiledModel of an ONNX file on the CPU.

    `extra_outputs`: tensor names to expose as additional outputs (for layer-by-layer comparisons).
    `batch`: fix the batch axis of the input `images` (None keeps it dynamic: see the module docstring).
    `profile`: record per-layer times (PERF_COUNT; read them from an infer request's `profiling_info`).

    Raises:
        ValueError: an unknown precision hint.
    """
    if precision_hint not in PRECISION_HINTS:
        raise ValueError(f"{path}: unknown OpenVINO precision hint '{precision_hint}'; "
                         f"choose {' or '.join(PRECISION_HINTS)}")
    ov = import_openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    if extra_outputs:
        model.add_outputs(list(extra_outputs))
    if batch is not None:
        shape = model.input("images").get_partial_shape()
        shape[0] = batch
        model.reshape({"images": shape})
    config: dict[str, str | int | bool] = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if profile:
        config["PERF_COUNT"] = True
    return core.compile_model(model, "CPU", config)


def run_compiled(compiled, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of one inference, by each of its tensor names."""
    results = compiled.create_infer_request().infer([images])  # the model's one input, whatever its name
    return {name: np.array(value) for output, value in results.items() for name in output.get_names()}


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, precision_hint: str = "f32") -> None:
        _, metadata = load_checked(path)
        self.path, self.threads, self.metadata = Path(path), threads, metadata
        self.class_names: list[str] = metadata["class_names"]
        self.input_size: int = metadata["input_size"]
        self.postprocess = postprocess_config(metadata, path)
        self.max_batch = MAX_BATCH
        self.precision_hint = precision_hint
        self.requests: dict[int, object] = {}  # batch size -> infer request of a model compiled for it
        self._request(1)
        # The model's own precision plus the float precision OpenVINO computes it in.
        self.precision: str = f"{metadata['precision']}/{precision_hint}"
        self.provider = f"CPU, {precision_hint}"
        log.info("%s: %s on OpenVINO CPU, INFERENCE_PRECISION_HINT=%s", path, metadata["precision"], precision_hint)

    def _request(self, batch: int):
        if batch not in self.requests:
            compiled = compile_onnx(self.path, self.threads, self.precision_hint, batch=batch)
            self.requests[batch] = compiled.create_infer_request()
        return self.requests[batch]

    def infer(self, images: np.ndarray) -> list[Detections]:
        request = self._request(len(images))
        results = request.infer({"images": np.ascontiguousarray(images, dtype=np.float32)})
        # Copies: the request reuses its output buffers on the next call.
        return unpack_outputs({output.get_any_name(): np.array(value) for output, value in results.items()},
                              self.input_size)

    def close(self) -> None:
        self.requests.clear()
