"""This machine's compute limits, measured in the same run as the models, on the same threads.

The limit of each precision is a register-level peak: register_peak.c (FP32 FMA, BF16 dot products, INT8
u8 x s8 dot products with VNNI; AVX-512 or AVX2), compiled with the system C compiler into a temporary folder
at bench time and called through ctypes, timed interleaved with the models. A model's GFLOPs divided by the
peak of its precision is the FPS no software could beat on this machine today. Where no C compiler or no x86
vector unit is there, the limit falls back to the reference convolution below and says so (`Peak.source`):
that is a ceiling measured with ONNX Runtime itself, so ONNX Runtime can reach or pass "100%" of it.

A compute-bound 3x3 convolution (256 -> 256 channels on 38x38, 1.7 GFLOPs) in ONNX Runtime is still timed:
its latency (`reference_ms`) is the fixed workload that makes speed comparable across machines (the gate's
`relative_speed`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scratchdet.benchmarks.timing import latency_stats
from scratchdet.export.quantize import quiet_quantizer_logging
from scratchdet.models.inference.onnxruntime_backend import create_session

log = logging.getLogger(__name__)

KERNEL_SOURCE = Path(__file__).with_name("register_peak.c")
CHANNELS, SIZE = 256, 38
GFLOPS = 2 * CHANNELS * CHANNELS * 9 * SIZE * SIZE / 1e9


@dataclass(frozen=True)
class Peak:
    fp32_gflops: float  # the FP32 limit, GFLOP/s (register level unless `source` says otherwise)
    int8_gops: float  # the INT8 limit, GOP/s
    reference_ms: float  # the FP32 reference convolution's median latency
    bf16_gflops: float | None = None  # None where the CPU has no BF16 dot product
    source: str = "given"  # what the limits were measured with


def _conv_model() -> onnx.ModelProto:
    weight = np.random.default_rng(0).normal(0, 0.05, (CHANNELS, CHANNELS, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
        "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)  # ORT reads <= 13
    return model


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
        onnx.save(_conv_model(), str(fp32))
        with quiet_quantizer_logging():
            quantize_static(fp32, int8, _Reader(4), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        sessions = {f"reference_{name}": create_session(p, threads, spinning=False)
                    for name, p in (("fp32", fp32), ("int8", int8))}
    x = np.random.default_rng(1).uniform(0, 4, (1, CHANNELS, SIZE, SIZE)).astype(np.float32)
    return {name: partial(s.run, None, {"x": x}) for name, s in sessions.items()}


def peak_calls(threads: int | None = None) -> dict[str, Callable[[], object]]:
    """Every timed call the limits need: the reference convolutions, plus the register kernels where they
    build here ("register_fp32", "register_bf16", "register_int8")."""
    calls = reference_calls(threads)
    kernels = RegisterKernels.build()
    if kernels is not None:
        calls.update(kernels.calls(threads or os.cpu_count() or 1))
    return calls


def limit_of(peak: Peak, precision: str) -> float:
    """The limit (G op/s) for a row's precision: INT8 models, BF16 compute (OpenVINO's bf16 hint), or FP32."""
    if precision.startswith("int8"):
        return peak.int8_gops
    if precision.endswith("/bf16") and peak.bf16_gflops:
        return peak.bf16_gflops
    return peak.fp32_gflops


def peak_from_rounds(rounds: dict[str, list[list[float]]], threads: int | None = None) -> Peak:
    """The limits from the interleaved rounds of `peak_calls`: register level where the kernels ran."""
    fp32_ms, int8_ms = (latency_stats(rounds[f"reference_{n}"]).p50 for n in ("fp32", "int8"))
    kernels = RegisterKernels.build()
    if kernels is None or "register_fp32" not in rounds:
        return Peak(GFLOPS / (fp32_ms / 1e3), GFLOPS / (int8_ms / 1e3), fp32_ms,
                    source=f"reference conv in ONNX Runtime (no register kernel: {RegisterKernels.why_not})")
    threads = threads or os.cpu_count() or 1
    # A limit is the fastest call: other load only ever slows a register loop down, never speeds it up.
    rates = {name: kernels.ops_per_call(name, threads) / (latency_stats(rounds[name]).min / 1e3) / 1e9
             for name in rounds if name.startswith("register_")}
    return Peak(rates["register_fp32"], rates["register_int8"], fp32_ms, rates.get("register_bf16"),
                source=f"register kernels ({kernels.describe()}), {threads} threads")


class RegisterKernels:
    """register_peak.c built into a temporary folder and loaded with ctypes (one build per process)."""

    # The `enum kind` of register_peak.c, widest first within each precision.
    KINDS: ClassVar[dict[str, int]] = {"fp32_avx512": 0, "bf16_avx512": 1, "int8_avx512_vnni": 2, "fp32_avx2": 3,
                                       "int8_avx_vnni": 4, "int8_avx2": 5}
    # Per call: 16 vector instructions per iteration at about one per cycle, ~4.5 ms per million iterations
    # (~27 ms per call) at this machine's clock. Calls must be
    # long: at 200,000 (under 1 ms) a model's thread pool still spinning from the call before took a core and
    # the FP32 "limit" came out at half the machine (ONNX Runtime's FP32 convolutions reached 186 % of it).
    ITERATIONS = 6_000_000
    why_not: ClassVar[str] = ""
    _built: ClassVar[RegisterKernels | None] = None
    _tried: ClassVar[bool] = False

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library
        library.sd_run.restype = ctypes.c_double
        library.sd_run.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long]
        library.sd_ops_per_iteration.restype = ctypes.c_double
        library.sd_ops_per_iteration.argtypes = [ctypes.c_int]
        supported = [name for name, kind in self.KINDS.items() if library.sd_supported(kind)]
        # The widest instruction of each precision this CPU has.
        self.chosen = {precision: next((n for n in supported if n.startswith(precision)), None)
                       for precision in ("fp32", "bf16", "int8")}

    @classmethod
    def build(cls) -> RegisterKernels | None:
        """The loaded kernels, or None (with `why_not` set) where they cannot be built or run here."""
        if cls._tried:
            return cls._built
        cls._tried = True
        compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
        if platform.machine().lower() not in ("x86_64", "amd64"):
            cls.why_not = f"the kernels are x86 (AVX2/AVX-512); this is {platform.machine()}"
        elif compiler is None:
            cls.why_not = "no C compiler (cc, gcc or clang) on PATH"
        else:
            folder = tempfile.mkdtemp(prefix="scratchdet-peak-")
            library = Path(folder) / "register_peak.so"
            built = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-pthread", "-o", str(library),
                                    str(KERNEL_SOURCE)], capture_output=True, text=True)
            if built.returncode != 0:
                cls.why_not = f"{compiler} failed on {KERNEL_SOURCE.name}: {built.stderr.strip()[:200]}"
            else:
                kernels = cls(ctypes.CDLL(str(library)))
                if kernels.chosen["fp32"] and kernels.chosen["int8"]:
                    cls._built = kernels
                else:
                    cls.why_not = "the CPU reports neither AVX2 nor AVX-512"
        if cls._built is None:
            log.warning("register-level peaks unavailable (%s): limits fall back to the reference conv", cls.why_not)
        return cls._built

    def describe(self) -> str:
        return ", ".join(f"{p}: {n or 'none'}" for p, n in self.chosen.items())

    def ops_per_call(self, name: str, threads: int) -> float:
        chosen = self.chosen[name.removeprefix("register_")]
        if chosen is None:
            raise ValueError(f"{name}: this CPU has no register-level kernel of that precision ({self.describe()})")
        kind = self.KINDS[chosen]
        return self.library.sd_ops_per_iteration(kind) * self.ITERATIONS * threads

    def calls(self, threads: int) -> dict[str, Callable[[], object]]:
        """One timed call per precision the CPU has: `threads` threads, ITERATIONS loop iterations each."""
        def call(kind: int) -> Callable[[], float]:
            return lambda: self.library.sd_run(kind, threads, self.ITERATIONS)

        return {f"register_{p}": call(self.KINDS[n]) for p, n in self.chosen.items() if n is not None}

