"""The one checked choke point for CUDA runtime calls (cuda-python), and the GPU's identity.

cuda-python is NVIDIA's own binding (its TensorRT samples moved to it) and installs from wheels on
x86 and Jetson alike; on a machine without a driver its calls fail with an error code, which
`cuda_call` turns into an exception naming the call.
"""

from __future__ import annotations

from typing import Any


class CudaError(RuntimeError):
    """A CUDA runtime call that failed, or no CUDA at all."""


def cudart() -> Any:
    """The cuda-python runtime module (new `cuda.bindings` layout first, then the older `cuda.cudart`)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise CudaError("cuda-python is not installed: pip install cuda-python (needs an NVIDIA driver)") from None
    return runtime


def cuda_call(result: tuple) -> Any:
    """Unpack a cuda-python (error, value...) tuple, raising CudaError on any error code."""
    error, *values = result
    if int(error) != 0:
        runtime = cudart()
        _, name = runtime.cudaGetErrorName(error)
        raise CudaError(f"CUDA error {int(error)} ({name.decode() if isinstance(name, bytes) else name})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of a device."""
    runtime = cudart()
    properties = cuda_call(runtime.cudaGetDeviceProperties(device))
    name = properties.name.decode(errors="replace") if isinstance(properties.name, bytes) else str(properties.name)
    return name.rstrip("\x00").strip(), f"{properties.major}.{properties.minor}"
