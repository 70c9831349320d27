"""Register-level limits: the kernels build and run here, their precisions relate as the hardware says, and
where they cannot build the limits fall back to the reference conv with a label saying so."""

from __future__ import annotations

import shutil
import time

import pytest

from scratchdet.benchmarks import peak as peak_module
from scratchdet.benchmarks.peak import Peak, RegisterKernels, limit_of, peak_calls, peak_from_rounds
from scratchdet.benchmarks.timing import interleave


@pytest.fixture
def fresh_build(monkeypatch):
    """Forget the per-process build so a test can build (or fail to build) again."""
    monkeypatch.setattr(RegisterKernels, "_tried", False)
    monkeypatch.setattr(RegisterKernels, "_built", None)
    monkeypatch.setattr(RegisterKernels, "why_not", "")


def test_register_peaks_measured_in_one_run(fresh_build):
    if shutil.which("cc") is None or RegisterKernels.build() is None:
        pytest.skip(f"register kernels cannot run here: {RegisterKernels.why_not}")
    rounds = interleave(peak_calls(2), repeats=2, per_round=3, warmup=1, progress=False)
    peak = peak_from_rounds(rounds, 2)
    assert peak.source.startswith("register kernels") and peak.fp32_gflops > 1.0 and peak.int8_gops > 1.0
    # How the precisions relate is the microarchitecture's business (a BF16 dot product, 2x the FMA's operations
    # per instruction, ran at 0.5x the FMA's operations per second on a Sapphire Rapids core, where the FMA has two
    # ports and the dot product one): only a gross miscount, a factor of lanes or chains, is a bug. Fastest of
    # several calls, which a shared machine's load disturbs least (one thread: a second one may be descheduled).
    kernels = RegisterKernels.build()
    best = {}
    for name, call in kernels.calls(1).items():
        times = []
        for _ in range(7):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        best[name] = kernels.ops_per_call(name, 1) / min(times)
    ratios = {name: rate / best["register_fp32"] for name, rate in best.items()}
    print("operations per second relative to FP32:", {n: round(r, 2) for n, r in ratios.items()})
    assert all(0.25 < ratio < 8.0 for ratio in ratios.values()), ratios


def test_no_real_fp32_workload_passes_the_fp32_limit(fresh_build):
    """The limit is a limit: ONNX Runtime's FP32 3x3 convolution, fastest of several calls, stays within 10 %
    (timing noise) of the register peak measured beside it (it reached 186 % of the limit when calls were too
    short; quiet runs measure 96-97 %)."""
    if shutil.which("cc") is None or RegisterKernels.build() is None:
        pytest.skip(f"register kernels cannot run here: {RegisterKernels.why_not}")
    # A loaded machine can only slow a register loop, so a limit below the conv means the limit's calls all
    # shared their cores: measure again (up to 3 times) and keep the highest limit and the fastest conv. A
    # limit that is wrong stays below the conv however often it is measured (186 % before the fix).
    limit, conv_gflops = 0.0, 0.0
    for _ in range(3):
        rounds = interleave(peak_calls(2), repeats=3, per_round=3, warmup=1, progress=False)
        limit = max(limit, peak_from_rounds(rounds, 2).fp32_gflops)
        conv_gflops = max(conv_gflops, peak_module.GFLOPS / (min(min(r) for r in rounds["reference_fp32"]) / 1e3))
        if conv_gflops < 1.1 * limit:
            break
    assert conv_gflops < 1.1 * limit, (conv_gflops, limit)


def test_without_a_compiler_the_limit_is_the_labelled_reference_conv(fresh_build, monkeypatch):
    monkeypatch.setattr(peak_module.shutil, "which", lambda name: None)
    assert RegisterKernels.build() is None and "no C compiler" in RegisterKernels.why_not
    rounds = interleave(peak_calls(2), repeats=1, per_round=2, warmup=1, progress=False)
    assert set(rounds) == {"reference_fp32", "reference_int8"}
    peak = peak_from_rounds(rounds, 2)
    assert peak.source.startswith("reference conv in ONNX Runtime (no register kernel: no C compiler")
    assert peak.bf16_gflops is None and peak.int8_gops > 0


def test_each_row_is_held_to_the_limit_of_its_precision():
    peak = Peak(fp32_gflops=100.0, int8_gops=400.0, reference_ms=1.0, bf16_gflops=200.0)
    assert limit_of(peak, "fp32") == 100.0 and limit_of(peak, "fp16") == 100.0
    assert limit_of(peak, "int8-ort") == 400.0 and limit_of(peak, "int8-tensorrt/bf16") == 400.0
    assert limit_of(peak, "fp32/bf16") == 200.0 and limit_of(peak, "fp32/f32") == 100.0
    assert limit_of(Peak(100.0, 400.0, 1.0), "fp32/bf16") == 100.0  # no BF16 unit: FP32 is the limit
