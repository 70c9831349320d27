"""TensorRT for RTX engines (`scratchdet engine --runtime tensorrt-rtx`) on an RTX GPU.

The runtime API is TensorRT's (Runtime, deserialize_cuda_engine, execute_async_v3), so the backend is
TensorRTBackend with another module and other checks: an engine is tied to the TensorRT-RTX version that
built it and runs on the compute capabilities it was built for (sidecar "targets"; none named: TensorRT-RTX's
default). Those checks are plain functions tested without a GPU; opening an engine needs one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from scratchdet.models.contract import EngineMismatchError, same_tensorrt_version
from scratchdet.models.inference.cuda_device import gpu_info
from scratchdet.models.inference.tensorrt_backend import TensorRTBackend

RUNTIME = "tensorrt-rtx"


def import_tensorrt_rtx() -> ModuleType:
    """The tensorrt_rtx_bindings module, or ImportError saying what to install."""
    try:
        import tensorrt_rtx_bindings  # type: ignore[import-untyped]  # the wheel ships no stubs
    except ImportError:
        raise ImportError("TensorRT for RTX is not installed: pip install tensorrt-rtx-cu12-libs==1.7.1.116 "
                          "tensorrt-rtx-cu12-bindings==1.7.1.116") from None
    return tensorrt_rtx_bindings


def rtx_engine_problems(values: dict[str, Any], running_version: str, compute_capability: str) -> list[str]:
    """Why an RTX engine cannot run here (empty: it can): runtime, TensorRT-RTX version, GPU target.

    Args:
        values: the engine's sidecar. compute_capability: this GPU's, "8.6" or "86".
    """
    if values.get("runtime") != RUNTIME:
        return [f"built by {values.get('runtime', 'TensorRT')}, not TensorRT-RTX (open it with --runtime tensorrt)"]
    problems = []
    built_with = str(values.get("tensorrt_version", "unknown"))
    if built_with == "unknown" or not same_tensorrt_version(built_with, running_version):
        problems.append(f"TensorRT-RTX {built_with} (running {running_version})")
    here = "SM" + compute_capability.replace(".", "")
    targets = list(values.get("targets", []))
    if targets and here not in targets:
        problems.append(f"targets {', '.join(targets)} (this GPU is {here})")
    return problems


class TensorRTRTXBackend(TensorRTBackend):
    name = RUNTIME
    label = "TensorRT-RTX"

    def _import(self) -> ModuleType:
        return import_tensorrt_rtx()

    def _check(self, values: dict[str, Any], version: str) -> None:
        _, compute_capability = gpu_info()
        problems = rtx_engine_problems(values, version, compute_capability)
        if problems:
            raise EngineMismatchError(f"{self.path}: built for {' and '.join(problems)}. Rebuild it: "
                                      f"{values.get('trtexec', 'scratchdet engine --runtime tensorrt-rtx')}")
