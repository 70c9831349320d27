"""Every decision of a TensorRT engine build, as plain functions testable without TensorRT.

TensorRT 10 vs 11 (../shared/reference/tensorrt-facts.md section 3; TensorRT 11 migration guide):
  10.x  the FP16 builder flag exists but weak typing is deprecated since 10.12 ("Weak typing APIs
        deprecated", TensorRT 10.12.0 release notes); a network opts into strong typing with the
        STRONGLY_TYPED creation flag; a Q/DQ ONNX gives explicit INT8.
  11.x  strong typing is always on and the STRONGLY_TYPED flag is deprecated and ignored; no FP16/INT8
        flags (11.x migration guide, "Strongly Typed Networks Are Now Required").
Our choice: every engine is strongly typed and takes its precision from the ONNX, on both majors: fp32
from the FP32 ONNX, fp16 from an FP16 ONNX (`quantize --precision fp16`), int8 from the symmetric Q/DQ
ONNX (`quantize --target tensorrt`). One path, the same numerics on 10 and 11, and nothing deprecated.
FP32 engines are built without TF32: BuilderFlag TF32 is on by default ("Enabled by default", NvInfer.h
BuilderFlag::kTF32 in 10.3.0 and 11.1) and rounds Conv/MatMul inputs to 10-bit mantissas, while gpu_check
holds FP32 engines to the ONNX Runtime score within 0.001. We clear it as trtexec's --noTF32 does
(samples/common/sampleEngines.cpp: `config.clearFlag(BuilderFlag::kTF32)`, same in v10.3.0 and 11.1).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scratchdet.models.contract import ENGINE_PRECISIONS, engine_name, version_tuple
from scratchdet.models.files import check_destination, write_text

# DLA (Jetson AGX Orin): TensorRT 10.0-10.7 ("TensorRT 10.7 was the last 10.x release that supported DLA")
# and 11.4.1+ with JetPack 7.2.2 (11.4.1 release notes; "Working with DLA", docs 11.4.1); not 11.0-11.4.0.
DLA_VERSIONS = (((10, 0, 0), (10, 7, 99)), ((11, 4, 1), (11, 99, 99)))


# The ONNX precision (metadata "precision") each engine precision accepts.
ONNX_FOR = {"fp32": ("fp32",), "fp16": ("fp16",), "int8": ("int8-tensorrt",)}


class EnginePlanError(ValueError):
    """An engine request that cannot be built as asked; the message says what to do instead."""


@dataclass(frozen=True)
class EnginePlan:
    onnx: str
    engine: str
    sidecar: str
    timing_cache: str
    precision: str
    tensorrt_major: int
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names set on create_network
    builder_flags: tuple[str, ...]
    cleared_builder_flags: tuple[str, ...]  # default-on BuilderFlag names cleared (TF32 for fp32)
    shapes: dict[str, tuple[list[int], list[int], list[int]]]  # input -> (min, opt, max)
    workspace_mib: int = 1024
    dla_core: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def tensorrt_major(version: str) -> int:
    """'10.3.0.30' -> 10. Only 10 and 11 are supported."""
    major = version_tuple(version)[0]
    if major not in (10, 11):
        raise EnginePlanError(f"TensorRT {version} is not supported: use 10.x (JetPack 6) or 11.x")
    return major


def dla_supported(version: str) -> bool:
    """Whether this TensorRT version can build DLA engines (see DLA_VERSIONS)."""
    found = version_tuple(version)
    return any(low <= found <= high for low, high in DLA_VERSIONS)


def precision_settings(precision: str, onnx_precision: str, major: int) -> tuple[bool, tuple[str, ...]]:
    """(strongly typed network?, builder flags) for an engine precision, ONNX precision and TensorRT major.

    Every engine is strongly typed (precision from the ONNX); no builder precision flag is ever set.
    """
    if precision not in ENGINE_PRECISIONS:
        raise EnginePlanError(f"unknown precision '{precision}': choose {', '.join(ENGINE_PRECISIONS)}")
    if onnx_precision not in ONNX_FOR[precision]:
        hint = {"fp16": "scratchdet quantize --model MODEL --precision fp16",
                "int8": "scratchdet quantize --model MODEL --data DATA --target tensorrt",
                "fp32": "scratchdet export"}[precision]
        why = (" (engines are strongly typed: the FP16 builder flag is deprecated since TensorRT 10.12 and gone "
               "in 11)" if precision == "fp16" else "")
        raise EnginePlanError(f"an {precision} engine needs an ONNX of precision {' or '.join(ONNX_FOR[precision])}, "
                              f"this one is {onnx_precision}; make one with `{hint}`{why}")
    return True, ()


def cleared_builder_flags(precision: str) -> tuple[str, ...]:
    """TF32 off for fp32 engines (plain IEEE FP32 convolutions); the fp16/int8 networks keep TensorRT's default."""
    return ("TF32",) if precision == "fp32" else ()


def network_flags(strongly_typed: bool, major: int) -> tuple[str, ...]:
    """STRONGLY_TYPED on 10.x only: 11.x is always strongly typed and ignores the deprecated flag."""
    return ("STRONGLY_TYPED",) if strongly_typed and major == 10 else ()


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
    engine = out or run / "engines" / engine_name(onnx.stem, precision)
    return engine, engine.with_suffix(".json"), engine.parent / f"timing-trt{major}.cache"


def make_plan(onnx: Path, metadata: dict, precision: str, tensorrt_version: str,
              batches: tuple[int, int, int] = (1, 1, 8), workspace_mib: int = 1024, dla_core: int | None = None,
              out: Path | None = None) -> EnginePlan:
    """Decide everything about a build from the ONNX, its metadata and the TensorRT version at hand.

    Raises:
        EnginePlanError: a request that cannot be built as asked (the message starts with the ONNX's path).
    """
    try:
        major = tensorrt_major(tensorrt_version)
        strongly_typed, flags = precision_settings(precision, metadata.get("precision", "fp32"), major)
        if dla_core is not None:
            flags = (*flags, *dla_flags(tensorrt_version, batches))
        shapes = profile_shapes(metadata["input_size"], *batches)
    except EnginePlanError as error:
        raise EnginePlanError(f"{onnx}: {error}") from None
    engine, sidecar, cache = engine_paths(onnx, precision, major, out)
    return EnginePlan(str(onnx), str(engine), str(sidecar), str(cache), precision, major, strongly_typed,
                      network_flags(strongly_typed, major), flags, cleared_builder_flags(precision), shapes,
                      workspace_mib, dla_core)


def check_plan_destinations(plan: EnginePlan) -> None:
    """Refuse an engine, sidecar or timing-cache path that cannot be written, before the build (changes nothing).

    Raises:
        OSError: see `check_destination`.
    """
    for path in (plan.engine, plan.sidecar, plan.timing_cache):
        check_destination(path)


def dla_flags(tensorrt_version: str, batches: tuple[int, int, int]) -> tuple[str, ...]:
    """Builder flags of a DLA build (GPU fallback); refuses versions without DLA and dynamic batch profiles."""
    if not dla_supported(tensorrt_version):
        raise EnginePlanError(f"TensorRT {tensorrt_version} has no DLA: it needs 10.0-10.7 (JetPack 6) or 11.4.1+ "
                              f"(JetPack 7.2.2, AGX Orin); drop --dla-core")
    if len(set(batches)) != 1:
        raise EnginePlanError(f"DLA needs a static batch (min = opt = max), got {'/'.join(map(str, batches))}; "
                              f"pass --min-batch N --opt-batch N --max-batch N")
    return ("GPU_FALLBACK",)


def _shape(dims: list[int]) -> str:
    return "x".join(str(d) for d in dims)


def trtexec_arguments(plan: EnginePlan) -> list[str]:
    """trtexec's arguments for the same build as `plan`; --onnx and --saveEngine come first."""
    minimum, optimum, maximum = plan.shapes["images"]
    args = [f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}",
            f"--minShapes=images:{_shape(minimum)}", f"--optShapes=images:{_shape(optimum)}",
            f"--maxShapes=images:{_shape(maximum)}", f"--memPoolSize=workspace:{plan.workspace_mib}",
            f"--timingCacheFile={plan.timing_cache}",
            # each layer's name and precision in the engine, which gpu-check reads with IEngineInspector to show
            # an INT8 engine's convolutions run in INT8 (NVIDIA/TensorRT#4020); the builder sets the same
            "--profilingVerbosity=detailed"]
    if "STRONGLY_TYPED" in plan.network_flags:
        args.append("--stronglyTyped")
    if "TF32" in plan.cleared_builder_flags:
        args.append("--noTF32")  # trtexec 10.3 and 11.1: samples/common/sampleOptions.cpp
    if plan.dla_core is not None:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    return args


def trtexec_command(plan: EnginePlan) -> str:
    """The trtexec line that builds the same engine on a device."""
    return shlex.join(["trtexec", *trtexec_arguments(plan)])


def sidecar(plan: EnginePlan, tensorrt_version: str, gpu_name: str, compute_capability: str, onnx_sha256: str,
            build_seconds: float, metadata: dict) -> dict[str, Any]:
    """What the engine was built from and for; the runtime refuses an engine whose sidecar does not fit."""
    return {"tensorrt_version": tensorrt_version, "gpu_name": gpu_name, "compute_capability": compute_capability,
            "precision": plan.precision, "onnx": plan.onnx, "onnx_sha256": onnx_sha256,
            "profile": {k: list(map(list, v)) for k, v in plan.shapes.items()}, "build_seconds": build_seconds,
            "plan": asdict(plan), "trtexec": trtexec_command(plan), "model_metadata": metadata}


def write_sidecar(path: str | Path, values: dict[str, Any]) -> None:
    """Write the sidecar JSON through a temporary file in the same folder."""
    write_text(path, json.dumps(values, indent=2))


