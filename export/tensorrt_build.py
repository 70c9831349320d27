"""The thin TensorRT shell: build an engine from an EnginePlan. All decisions live in engine_plan.

Written against the Python API common to TensorRT 10.x and 11.x (tensorrt-facts.md section 3.1):
Builder -> network -> OnnxParser -> builder config (memory pool, profile, timing cache, flags, DLA)
-> build_serialized_network. Tested by `pytest -m tensorrt` on a GPU host.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from scratchdet.export.cuda_device import gpu_info
from scratchdet.export.engine_plan import EnginePlan, sidecar, write_sidecar
from scratchdet.models.checkpoint import file_sha256

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ImportError("TensorRT is not installed (pip install tensorrt on an x86 GPU host; JetPack ships it "
                          "on Jetson)") from None
    return trt


def _parse(trt, builder, plan: EnginePlan, logger):
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
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


def _configure(trt, builder, plan: EnginePlan):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for name, (minimum, optimum, maximum) in plan.shapes.items():
        profile.set_shape(name, minimum, optimum, maximum)
    config.add_optimization_profile(profile)
    cache_path = Path(plan.timing_cache)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    return config


def build_engine(plan: EnginePlan, metadata: dict) -> Path:
    """Build, then write the engine, its sidecar JSON and the updated timing cache.

    Raises:
        ImportError: TensorRT missing. RuntimeError: parser errors or a failed build (naming the ONNX).
    """
    trt = import_tensorrt()
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, plan, logger)
    config = _configure(trt, builder, plan)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{plan.onnx}: TensorRT returned no engine (see the builder log above)")
    engine = Path(plan.engine)
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(bytes(serialized))
    Path(plan.timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    name, capability = gpu_info()
    write_sidecar(plan.sidecar, sidecar(plan, trt.__version__, name, capability, file_sha256(plan.onnx),
                                        time.perf_counter() - started, metadata))
    return engine
