"""The thin TensorRT shell: build an engine from an EnginePlan. All decisions live in engine_plan.

Written against the Python API common to TensorRT 10.x and 11.x (tensorrt-facts.md section 3.1):
Builder -> network -> OnnxParser -> builder config (memory pool, profile, timing cache, flags, DLA)
-> build_serialized_network. Typed against tensorrt-stubs (mypy in `make test`); run by
`pytest -m tensorrt` and `make gpu-check` on a GPU host.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scratchdet.export.engine_plan import EnginePlan, sidecar, write_sidecar
from scratchdet.models.files import file_sha256, write_bytes
from scratchdet.models.inference.cuda_device import gpu_info
from scratchdet.models.inference.tensorrt_backend import import_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


def _parse(builder: trt.Builder, plan: EnginePlan,
           logger: trt.ILogger) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    import tensorrt as trt

    flags = 0
    for name in plan.network_flags:  # STRONGLY_TYPED on 10.x only; 11.x ignores the deprecated flag
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(plan.onnx):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for error in errors:
            log.error("ONNX parser: %s", error)
        raise RuntimeError(f"{plan.onnx}: TensorRT's ONNX parser failed ({len(errors)} error(s)): {errors[:3]}")
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        log.info("input  %s %s %s", tensor.name, tensor.shape, tensor.dtype)
    for i in range(network.num_outputs):
        tensor = network.get_output(i)
        log.info("output %s %s %s", tensor.name, tensor.shape, tensor.dtype)
    return network, parser


def _configure(builder: trt.Builder, plan: EnginePlan) -> trt.IBuilderConfig:
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for name, (minimum, optimum, maximum) in plan.shapes.items():
        # The stubs ask for trt.Dims, but TensorRT converts any list to Dims (the Dims docstring in those stubs).
        profile.set_shape(name, minimum, optimum, maximum)  # type: ignore[arg-type]
    if config.add_optimization_profile(profile) < 0:
        raise RuntimeError(f"{plan.onnx}: TensorRT refused the optimisation profile {plan.shapes}")
    cache_path = Path(plan.timing_cache)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise RuntimeError(f"{cache_path}: TensorRT refused the timing cache (built by another TensorRT or GPU?); "
                           f"delete it and build again")
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in plan.cleared_builder_flags:  # BuilderFlag.TF32 and clear_flag exist in the 10.3 and 11.x bindings
        config.clear_flag(getattr(trt.BuilderFlag, flag))
    # Layer names and parameters in the engine (IBuilderConfig.profiling_verbosity, 10.x and 11.x), so an
    # IEngineInspector (gpu-check's int8-layers stage) can show each layer's precision; trtexec:
    # --profilingVerbosity=detailed. It changes what the engine records, not its kernels.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    return config


def build_engine(plan: EnginePlan, metadata: dict) -> Path:
    """Build, then write the engine, its sidecar JSON and the updated timing cache.

    Raises:
        ImportError: TensorRT missing. RuntimeError: parser errors or a failed build (naming the ONNX).
    """
    tensorrt = import_tensorrt()
    started = time.perf_counter()
    logger = tensorrt.Logger(tensorrt.Logger.WARNING)
    builder = tensorrt.Builder(logger)
    network, _parser = _parse(builder, plan, logger)
    config = _configure(builder, plan)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{plan.onnx}: TensorRT returned no engine (see the builder log above)")
    engine = Path(plan.engine)
    write_bytes(engine, bytes(serialized))
    timing_cache = config.get_timing_cache()
    if timing_cache is not None:
        write_bytes(Path(plan.timing_cache), bytes(timing_cache.serialize()))
    name, capability = gpu_info()
    write_sidecar(plan.sidecar, sidecar(plan, tensorrt.__version__, name, capability, file_sha256(plan.onnx),
                                        time.perf_counter() - started, metadata))
    return engine
