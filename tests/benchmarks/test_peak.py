"""Register-level limits: the kernels build and run here, their precisions relate as the hardware says, and
where they cannot build the limits fall back to the reference conv with a label saying so."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

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


# A vector register written to or read from the stack: %ymm3 and 136(%rsp), in either order.
STACK_ACCESS = re.compile(r"%[xyz]mm\d+.*\((%rsp|%rbp)\)|\((%rsp|%rbp)\).*%[xyz]mm\d+")


def loop_stack_accesses(assembly: str, function: str) -> tuple[int, list[str]]:
    """(loops found, their instructions that touch the stack with a vector register) in `function`'s body: a
    loop is the code from a label to a later jump back to it."""
    lines = assembly.splitlines()
    start = lines.index(f"{function}:")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^[A-Za-z_]\w*:", lines[i])), len(lines))
    labels: dict[str, int] = {}
    loops, found = 0, []
    for i in range(start, end):
        if label := re.match(r"^(\.L\w+):", lines[i]):
            labels[label.group(1)] = i
        elif (jump := re.match(r"^\s+j\w+\s+(\.L\w+)\s*$", lines[i])) and jump.group(1) in labels:
            loops += 1
            found += [line.strip() for line in lines[labels[jump.group(1)]:i] if STACK_ACCESS.search(line)]
    return loops, found


def _assembly(source: Path, tmp_path: Path) -> str:
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("gcc is not on PATH (the check reads GCC's assembly)")
    out = tmp_path / f"{source.stem}.s"
    subprocess.run([compiler, "-O2", "-S", "-o", str(out), str(source)], check=True, capture_output=True, timeout=120)
    return out.read_text()


def test_the_fp32_and_bf16_kernels_keep_every_chain_in_registers(tmp_path):
    """The limit is a limit only if its loop is bound by the FMA ports: a chain spilled to the stack (16 ymm
    chains on AVX2, which has 16 registers for the chains and their operands) measured 40 GFLOPS where
    ONNX Runtime's convolution reached 67. Read from the compiled loop, not timed: timing on a shared machine
    decides nothing (`bench`'s report prints the limits it measured and each row's % of them)."""
    assembly = _assembly(peak_module.KERNEL_SOURCE, tmp_path)
    for function in ("fp32_avx512", "fp32_avx2", "bf16_avx512"):
        loops, spilled = loop_stack_accesses(assembly, function)
        assert loops >= 1 and not spilled, (function, loops, spilled)
    # the same reading finds the spill that 16 AVX2 chains cause
    sixteen = tmp_path / "sixteen_chains.c"
    sixteen.write_text(peak_module.KERNEL_SOURCE.read_text().replace("#define YMM_CHAINS 12", "#define YMM_CHAINS 16"))
    assert loop_stack_accesses(_assembly(sixteen, tmp_path), "fp32_avx2")[1]


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
