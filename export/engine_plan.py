"""Every decision of a TensorRT engine build, as plain functions testable without TensorRT.

TensorRT 10 vs 11 (../shared/reference/tensorrt-facts.md section 3; TensorRT 11 migration guide):
  10.x  the FP16 builder flag exists; a network may opt into strong typing (STRONGLY_TYPED flag);
        Q/DQ ONNX gives explicit INT8.
  11.x  strong typing is always on: no FP16/INT8 flags, no calibrators. Precision comes from the
        ONNX itself: an FP16 ONNX for FP16, a Q/DQ ONNX for INT8.
So: int8 always takes the symmetric Q/DQ ONNX (`quantize --target tensorrt`) in a strongly typed network;
fp16 takes an FP16 ONNX (strongly typed) on both, or on 10.x an FP32 ONNX plus the FP16 flag.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "int8")
# The ONNX precision (metadata "precision") each engine precision accepts.
ONNX_FOR = {"fp32": ("fp32",), "fp16": ("fp16", "fp32"), "int8": ("int8-tensorrt",)}


class EnginePlanError(ValueError):
    """An engine request that cannot be built as asked; the message says what to do instead."""


class EngineMismatchError(RuntimeError):
    """An engine built for another TensorRT version or GPU."""


@dataclass(frozen=True)
class EnginePlan:
    onnx: str
    engine: str
    sidecar: str
    timing_cache: str
    precision: str
    tensorrt_major: int
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    shapes: dict[str, tuple[list[int], list[int], list[int]]]  # input -> (min, opt, max)
    workspace_mib: int = 1024
    dla_core: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def tensorrt_major(version: str) -> int:
    """'10.3.0.30' -> 10. Only 10 and 11 are supported."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise EnginePlanError(f"cannot read a TensorRT version from '{version}'") from None
    if major not in (10, 11):
        raise EnginePlanError(f"TensorRT {version} is not supported: use 10.x (JetPack 6) or 11.x")
    return major


def precision_settings(precision: str, onnx_precision: str, major: int) -> tuple[bool, tuple[str, ...]]:
    """(strongly typed network?, builder flags) for an engine precision, ONNX precision and TensorRT major."""
    if precision not in PRECISIONS:
        raise EnginePlanError(f"unknown precision '{precision}': choose {', '.join(PRECISIONS)}")
    if onnx_precision not in ONNX_FOR[precision]:
        hint = {"fp16": "scratchdet quantize --onnx MODEL --precision fp16",
                "int8": "scratchdet quantize --onnx MODEL --data DATA --target tensorrt",
                "fp32": "scratchdet export"}[precision]
        raise EnginePlanError(f"a {precision} engine needs an ONNX of precision {' or '.join(ONNX_FOR[precision])}, "
                              f"this one is {onnx_precision}; make one with `{hint}`")
    if precision == "fp16" and onnx_precision == "fp32":
        if major >= 11:
            raise EnginePlanError("TensorRT 11 has no FP16 flag: give an FP16 ONNX "
                                  "(`scratchdet quantize --onnx MODEL --precision fp16`)")
        return False, ("FP16",)
    # 11.x is always strongly typed; on 10.x we opt in, so both majors read precision from the ONNX alike.
    return True, ()


def profile_shapes(input_size: int, min_batch: int, opt_batch: int, max_batch: int) -> dict[str, tuple]:
    """The optimisation profile of the `images` input: only the batch axis varies."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EnginePlanError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/"
                              f"{max_batch}")
    shape = [3, input_size, input_size]
    return {"images": ([min_batch, *shape], [opt_batch, *shape], [max_batch, *shape])}


def engine_paths(onnx: Path, precision: str, major: int, out: Path | None = None) -> tuple[Path, Path, Path]:
    """(engine, sidecar JSON, timing cache) paths; by default in an `engines/` folder beside the ONNX."""
    run = onnx.parent.parent if onnx.parent.name == "export" else onnx.parent  # RUN/export/x.onnx -> RUN/engines
    engine = out or run / "engines" / f"{onnx.stem}-{precision}-trt{major}.engine"
    return engine, engine.with_suffix(".json"), engine.parent / f"timing-trt{major}.cache"


def make_plan(onnx: Path, metadata: dict, precision: str, tensorrt_version: str,
              batches: tuple[int, int, int] = (1, 1, 8), workspace_mib: int = 1024, dla_core: int | None = None,
              out: Path | None = None) -> EnginePlan:
    """Decide everything about a build from the ONNX, its metadata and the TensorRT version at hand."""
    major = tensorrt_major(tensorrt_version)
    strongly_typed, flags = precision_settings(precision, metadata.get("precision", "fp32"), major)
    if dla_core is not None:
        if major >= 11:
            raise EnginePlanError("DLA is a Jetson feature of TensorRT 10.x in this pipeline; drop --dla-core")
        flags = (*flags, "GPU_FALLBACK")
    engine, sidecar, cache = engine_paths(onnx, precision, major, out)
    return EnginePlan(str(onnx), str(engine), str(sidecar), str(cache), precision, major, strongly_typed, flags,
                      profile_shapes(metadata["input_size"], *batches), workspace_mib, dla_core)


def _shape(dims: list[int]) -> str:
    return "x".join(str(d) for d in dims)


def trtexec_command(plan: EnginePlan) -> str:
    """The trtexec line that builds the same engine on a device."""
    minimum, optimum, maximum = plan.shapes["images"]
    args = ["trtexec", f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}",
            f"--minShapes=images:{_shape(minimum)}", f"--optShapes=images:{_shape(optimum)}",
            f"--maxShapes=images:{_shape(maximum)}", f"--memPoolSize=workspace:{plan.workspace_mib}",
            f"--timingCacheFile={plan.timing_cache}"]
    if plan.strongly_typed and plan.tensorrt_major == 10:
        args.append("--stronglyTyped")
    if "FP16" in plan.builder_flags:
        args.append("--fp16")
    if plan.dla_core is not None:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    return shlex.join(args)


def sidecar(plan: EnginePlan, tensorrt_version: str, gpu_name: str, compute_capability: str, onnx_sha256: str,
            build_seconds: float, metadata: dict) -> dict[str, Any]:
    """What the engine was built from and for; the runtime refuses an engine whose sidecar does not fit."""
    return {"tensorrt_version": tensorrt_version, "gpu_name": gpu_name, "compute_capability": compute_capability,
            "precision": plan.precision, "onnx": plan.onnx, "onnx_sha256": onnx_sha256,
            "profile": {k: list(map(list, v)) for k, v in plan.shapes.items()}, "build_seconds": build_seconds,
            "plan": asdict(plan), "trtexec": trtexec_command(plan), "model_metadata": metadata}


def write_sidecar(path: str | Path, values: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(values, indent=2))


def check_engine_compatible(engine: str | Path, values: dict[str, Any], tensorrt_version: str, gpu_name: str,
                            compute_capability: str) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU, with the rebuild command.

    Raises:
        EngineMismatchError: naming the engine, built-for vs running, and the trtexec line.
    """
    problems = []
    if values.get("tensorrt_version") != tensorrt_version:
        problems.append(f"TensorRT {values.get('tensorrt_version')} (running {tensorrt_version})")
    if values.get("gpu_name") != gpu_name or values.get("compute_capability") != compute_capability:
        problems.append(f"GPU {values.get('gpu_name')} sm_{values.get('compute_capability')} "
                        f"(running {gpu_name} sm_{compute_capability})")
    if problems:
        raise EngineMismatchError(f"{engine}: built for {' and '.join(problems)}; engines are tied to both. "
                                  f"Rebuild it here: {values.get('trtexec', 'scratchdet engine --onnx MODEL')}")
