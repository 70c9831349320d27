"""This machine's compute peak, measured in the same run as the models (ONNX Runtime, same threads).

A compute-bound 3x3 convolution (256 -> 256 channels on 38x38, 1.7 GFLOPs) in FP32 and as U8S8 Q/DQ
INT8 gives the achievable GFLOP/s (GOP/s) of each path. Dividing a model's GFLOPs by it gives the
roofline FPS limit; the same workload is the reference that makes speed comparable across machines.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from scratchdet.benchmarks.timing import latency_stats
from scratchdet.export.onnx_backend import create_session
from scratchdet.export.quantize import quiet_quantizer_logging

CHANNELS, SIZE = 256, 38
GFLOPS = 2 * CHANNELS * CHANNELS * 9 * SIZE * SIZE / 1e9


@dataclass(frozen=True)
class Peak:
    fp32_gflops: float  # achieved by the reference convolution, GFLOP/s
    int8_gops: float
    reference_ms: float  # the FP32 reference convolution's median latency


def _conv_model(path: Path) -> None:
    weight = np.random.default_rng(0).normal(0, 0.05, (CHANNELS, CHANNELS, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
        "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)  # ORT reads <= 13
    onnx.save(model, str(path))


class _Reader:
    def __init__(self, count: int) -> None:
        self.items = [{"x": np.random.default_rng(i).uniform(0, 4, (1, CHANNELS, SIZE, SIZE)).astype(np.float32)}
                      for i in range(count)]

    def get_next(self):
        return self.items.pop() if self.items else None


def reference_calls(threads: int | None = None) -> dict[str, Callable[[], object]]:
    """The FP32 and INT8 reference convolutions as timed calls ("reference_fp32", "reference_int8"), so
    they can be interleaved with the models and measured under the same conditions."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "conv.onnx", Path(folder) / "conv-int8.onnx"
        _conv_model(fp32)
        with quiet_quantizer_logging():
            quantize_static(fp32, int8, _Reader(4), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        sessions = {f"reference_{name}": create_session(p, threads, spinning=False)
                    for name, p in (("fp32", fp32), ("int8", int8))}
    x = np.random.default_rng(1).uniform(0, 4, (1, CHANNELS, SIZE, SIZE)).astype(np.float32)
    return {name: (lambda s=s: s.run(None, {"x": x})) for name, s in sessions.items()}


def peak_from_rounds(rounds: dict[str, list[list[float]]]) -> Peak:
    fp32_ms, int8_ms = (latency_stats(rounds[f"reference_{n}"]).p50 for n in ("fp32", "int8"))
    return Peak(GFLOPS / (fp32_ms / 1e3), GFLOPS / (int8_ms / 1e3), fp32_ms)

