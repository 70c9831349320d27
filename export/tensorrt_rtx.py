"""The one place that parses and builds an ONNX with TensorRT for RTX, ahead of time, on any machine.

TensorRT-RTX 1.7 (pyproject's dev extra; `import tensorrt_rtx_bindings`) differs from TensorRT 10/11 here:
- Builder, OnnxParser and build_serialized_network run without a GPU; only loading an engine needs one.
- Targets are ComputeCapability SM75, SM80, SM86, SM89, SM120, SM121 (no Jetson SM87/SM110, no SM90).
  `config.num_compute_capabilities = N` must come BEFORE `set_compute_capability(cc, i)`, which otherwise
  returns False and the build silently targets the current device. With no target set, TensorRT-RTX
  builds its default engine (measured here: the same bytes as an SM86 one).
- Strongly typed only: no precision flags, no calibrators; precision comes from the ONNX (as engine_plan.py).
- No timing cache: it forces a GPU query (TensorRT-RTX docs, "CPU-only AOT").
- The engine's layer information comes from the DETAILED build log (engine_layers.py), not an inspector.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

from scratchdet.export.engine_layers import Layer, LayerInformationError, layers_from_build_log
from scratchdet.models.contract import engine_name, load_checked
from scratchdet.models.files import check_destination, file_sha256, write_bytes, write_text
from scratchdet.models.inference.tensorrt_rtx_backend import RUNTIME, import_tensorrt_rtx

log = logging.getLogger(__name__)

TARGETS = ("SM75", "SM80", "SM86", "SM89", "SM120", "SM121")
_NOT_RTX = {"SM87": "Jetson Orin", "SM110": "Jetson Thor", "SM90": "H100/H200", "SM100": "B200", "SM72": "Xavier"}


class RtxTargetError(ValueError):
    """A compute capability TensorRT-RTX cannot build for; the message names the ones it can."""


def rtx_available() -> bool:
    """Whether TensorRT-RTX imports here (the CLIs then add its real parse and build verdict)."""
    try:
        import_tensorrt_rtx()
    except ImportError:
        return False
    return True


def parse_targets(text: str) -> tuple[str, ...]:
    """'SM86,sm_89, 120' -> ('SM86', 'SM89', 'SM120'); empty text -> () (TensorRT-RTX's default).

    Raises:
        RtxTargetError: a target TensorRT-RTX has not, naming it, why (Jetson, datacenter) and the valid ones.
    """
    targets = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        digits = re.sub(r"\D", "", item)
        name = f"SM{digits}"
        if name not in TARGETS:
            why = f" ({_NOT_RTX[name]}: build on that device with TensorRT, `scratchdet engine` without " \
                  "--runtime)" if name in _NOT_RTX else ""
            raise RtxTargetError(f"--sm {item!r}: TensorRT-RTX cannot build for {name}{why}; it builds for "
                                 f"{', '.join(TARGETS)}")
        if name not in targets:
            targets.append(name)
    return tuple(targets)


@dataclass(frozen=True)
class RtxBuild:
    """What TensorRT-RTX made of one ONNX: the parse, the build, the engine and its layers."""

    source: str
    targets: tuple[str, ...]  # () = TensorRT-RTX's default
    parse_errors: tuple[str, ...]
    build_errors: tuple[str, ...]  # the builder's ERROR messages when it returned no engine
    seconds: float
    engine: bytes | None = field(default=None, repr=False)
    layers: tuple[Layer, ...] = ()

    @property
    def parsed(self) -> bool:
        return not self.parse_errors

    @property
    def built(self) -> bool:
        return self.engine is not None

    def verdict(self) -> str:
        """One line: parse and build outcome, with the first error."""
        where = ", ".join(self.targets) or "default targets"
        if not self.parsed:
            return f"parse FAILED ({len(self.parse_errors)} error(s)): {self.parse_errors[0]}"
        if not self.built:
            first = self.build_errors[0] if self.build_errors else "no engine and no error message"
            return f"parse OK, build ({where}) FAILED: {first}"
        size = len(self.engine or b"") / 1e6
        return f"parse OK, build ({where}) OK: {size:.1f} MB in {self.seconds:.1f} s, " \
               f"{len(self.layers)} layers"


def _collecting_logger(trt: ModuleType) -> Any:
    class Collector(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[Any, str]] = []

        def log(self, severity: Any, message: str) -> None:
            self.messages.append((severity, message))

    return Collector()


def _profile(trt: ModuleType, builder: Any, network: Any, batches: tuple[int, int, int], source: str) -> Any:
    """Dynamic batch (axis 0) from `batches`; any other dynamic axis is an error naming the input."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise ValueError(f"{source}: input '{tensor.name}' has dynamic axes {shape} beyond the batch axis")
        if shape and shape[0] < 0:
            profile.set_shape(tensor.name, *[[b, *shape[1:]] for b in batches])
    return profile


def build_rtx(model: str | Path | onnx.ModelProto, targets: tuple[str, ...] = (),
              batches: tuple[int, int, int] = (1, 1, 8), workspace_mib: int = 1024) -> RtxBuild:
    """Parse `model` with TensorRT-RTX's ONNX parser, then build it ahead of time for `targets`.

    A parse failure returns its errors without building; a failed build returns the builder's ERROR
    messages. Layer information is read from the DETAILED build log.

    Raises:
        ImportError: TensorRT-RTX missing. RtxTargetError: a target it has not.
    """
    trt = import_tensorrt_rtx()
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise RtxTargetError(f"unknown TensorRT-RTX targets {unknown}; choose from {', '.join(TARGETS)}")
    source = str(model) if not isinstance(model, onnx.ModelProto) else f"<{model.graph.name or 'model'}>"
    started = time.perf_counter()
    logger = _collecting_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # strongly typed is the only mode
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse(model.SerializeToString()) if isinstance(model, onnx.ModelProto) \
        else parser.parse_from_file(str(model))
    if not parsed:
        errors = tuple(str(parser.get_error(i)) for i in range(parser.num_errors)) or ("parser returned False",)
        for error in errors:
            log.error("%s: TensorRT-RTX ONNX parser: %s", source, error)
        return RtxBuild(source, targets, errors, (), time.perf_counter() - started)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.num_compute_capabilities = len(targets)  # before set_compute_capability, which else returns False
    for index, target in enumerate(targets):
        if not config.set_compute_capability(getattr(trt.ComputeCapability, target), index):
            raise RtxTargetError(f"{source}: TensorRT-RTX refused target {target} at index {index}")
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if config.add_optimization_profile(_profile(trt, builder, network, batches, source)) < 0:
        raise ValueError(f"{source}: TensorRT-RTX refused the optimisation profile (batches {batches})")
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        errors = tuple(m for s, m in logger.messages if s <= trt.ILogger.Severity.ERROR)
        log.error("%s: TensorRT-RTX build failed: %s", source, errors[:1])
        return RtxBuild(source, targets, (), errors, seconds)
    try:
        layers = tuple(layers_from_build_log([m for _, m in logger.messages]))
    except LayerInformationError as error:
        log.warning("%s: %s", source, error)
        layers = ()
    return RtxBuild(source, targets, (), (), seconds, bytes(serialized), layers)


def rtx_version() -> str:
    """The TensorRT-RTX version of the bindings (e.g. 1.7.1.116)."""
    return str(import_tensorrt_rtx().__version__)


def rtx_verdict_lines(model: str | Path | onnx.ModelProto) -> list[str]:
    """The real parse and build verdict (default targets) of a file or a model already loaded, as one CLI line;
    none where TensorRT-RTX is missing."""
    if not rtx_available():
        return []
    return [f"TensorRT-RTX {rtx_version()}: {build_rtx(model).verdict()}"]


def rtx_engine_path(onnx_path: Path, precision: str, out: Path | None = None) -> Path:
    """RUN/engines/MODEL-PRECISION.rtx.engine (beside full-TensorRT engines, never in their place)."""
    run = onnx_path.parent.parent if onnx_path.parent.name == "export" else onnx_path.parent
    return out or run / "engines" / engine_name(onnx_path.stem, precision).replace(".engine", ".rtx.engine")


def rebuild_command(onnx_path: Path, precision: str, targets: tuple[str, ...], batches: tuple[int, int, int]) -> str:
    """The command that builds the same engine again."""
    sm = f" --sm {','.join(targets)}" if targets else ""
    return (f"scratchdet engine --runtime {RUNTIME} --model {onnx_path} --precision {precision}{sm} "
            f"--min-batch {batches[0]} --opt-batch {batches[1]} --max-batch {batches[2]}")


def rtx_sidecar(build: RtxBuild, onnx_path: Path, precision: str, version: str, batches: tuple[int, int, int],
                input_size: int, metadata: dict, onnx_label: str | None = None) -> dict[str, Any]:
    """The sidecar of a TensorRT-RTX engine: the keys of every sidecar (contract.SIDECAR_KEYS) plus runtime and
    targets. An AOT engine is for its targets, not for the GPU it was built on: gpu_name says so.
    `onnx_label`: how the sidecar names the ONNX (a bundle's own file name), default its path."""
    shape = [3, input_size, input_size]
    label = Path(onnx_label) if onnx_label else onnx_path
    return {"runtime": RUNTIME, "tensorrt_version": version, "targets": list(build.targets),
            "gpu_name": f"any RTX GPU of {', '.join(build.targets) or 'the TensorRT-RTX default targets'}",
            "compute_capability": ",".join(t.removeprefix("SM") for t in build.targets) or "default",
            "precision": precision, "onnx": str(label), "onnx_sha256": file_sha256(onnx_path),
            "profile": {"images": [[b, *shape] for b in batches]}, "build_seconds": build.seconds,
            "engine_bytes": len(build.engine or b""), "layers": len(build.layers),
            "trtexec": rebuild_command(label, precision, build.targets, batches), "model_metadata": metadata}


def write_rtx_engine(build: RtxBuild, path: Path, sidecar: dict[str, Any]) -> Path:
    """Write the engine and its sidecar (PATH with .json); refuses a build that made no engine."""
    if build.engine is None:
        raise RuntimeError(f"{build.source}: no engine to write ({build.verdict()})")
    write_bytes(path, build.engine)
    write_text(path.with_suffix(".json"), json.dumps(sidecar, indent=2))
    return path


def make_rtx_engine(onnx_path: Path, precision: str, targets: tuple[str, ...], batches: tuple[int, int, int],
                    out: Path | None = None, workspace_mib: int = 1024,
                    onnx_label: str | None = None) -> tuple[Path, RtxBuild]:
    """Build one ONNX of ours with TensorRT-RTX and write engine + sidecar (default RUN/engines/...rtx.engine).

    Raises:
        ContractError: not our ONNX. EnginePlanError: precision does not match the ONNX, or a bad batch profile.
        RuntimeError: the parse or build failed (the message holds TensorRT-RTX's first error).
    """
    from scratchdet.export.engine_plan import EnginePlanError, precision_settings, profile_shapes

    _, metadata = load_checked(onnx_path)
    try:  # refused before building: a precision that is not the ONNX's (strongly typed, as TensorRT 11), a bad profile
        precision_settings(precision, metadata.get("precision", "fp32"), 11)
        profile_shapes(metadata["input_size"], *batches)
    except EnginePlanError as error:
        raise EnginePlanError(f"{onnx_path}: {error}") from None
    engine = rtx_engine_path(onnx_path, precision, out)
    for path in (engine, engine.with_suffix(".json")):
        check_destination(path)
    version = rtx_version()
    build = build_rtx(onnx_path, targets, batches, workspace_mib)
    sidecar = rtx_sidecar(build, onnx_path, precision, version, batches, metadata["input_size"], metadata,
                          onnx_label)
    return write_rtx_engine(build, engine, sidecar), build
