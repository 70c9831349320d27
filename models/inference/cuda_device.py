"""The one checked choke point for CUDA runtime calls (cuda-python), and the GPU's identity.

cuda-python is NVIDIA's own binding (its TensorRT samples moved to it) and installs from wheels on
x86 and Jetson alike; on a machine without a driver its calls fail with an error code, which
`cuda_call` turns into an exception naming the call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any

log = logging.getLogger(__name__)
# cudaError_t values cuda-python returns (CUDA Runtime API, "Data types used by CUDA Runtime",
# https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html).
INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: the driver is older than the runtime needs


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
    if int(error) == INSUFFICIENT_DRIVER:
        raise CudaError(f"CUDA error 35 (cudaErrorInsufficientDriver): {versions_text(cuda_versions())}")
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


@dataclass(frozen=True)
class CudaVersions:
    """CUDA versions as the CUDA API encodes them (1000 * major + 10 * minor: 12020 is 12.2)."""

    driver: int  # the newest CUDA the installed driver supports; 0 when no driver is installed
    runtime: int  # the CUDA runtime cuda-python binds
    bindings: str  # the cuda-python (else cuda-bindings) package version

    @property
    def driver_major(self) -> int:
        return self.driver // 1000

    @property
    def runtime_major(self) -> int:
        return self.runtime // 1000


def version_text(version: int) -> str:
    """12020 -> '12.2' (the encoding of cudaDriverGetVersion / cudaRuntimeGetVersion)."""
    return f"{version // 1000}.{version % 1000 // 10}"


def versions_text(versions: CudaVersions) -> str:
    driver = f"CUDA {version_text(versions.driver)}" if versions.driver else "none installed"
    return (f"NVIDIA driver: {driver}; cuda-python {versions.bindings}: CUDA runtime "
            f"{version_text(versions.runtime)}")


def _package_version() -> str:
    for name in ("cuda-python", "cuda-bindings"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def cuda_versions(runtime: Any = None) -> CudaVersions:
    """The driver's and cuda-python's CUDA versions (cudaDriverGetVersion, cudaRuntimeGetVersion)."""
    runtime = runtime or cudart()
    error, driver = runtime.cudaDriverGetVersion()
    if int(error) != 0:
        driver = 0
    error, bound = runtime.cudaRuntimeGetVersion()
    if int(error) != 0:
        raise CudaError(f"cudaRuntimeGetVersion failed with CUDA error {int(error)}")
    return CudaVersions(int(driver), int(bound), _package_version())


def check_driver(versions: CudaVersions) -> None:
    """Refuse a driver older than cuda-python's runtime needs, naming both versions.

    Within one CUDA major, minor-version compatibility lets a 12.x runtime run on any 12.y driver
    (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html); across majors
    it does not: cuda-python 13 on a CUDA 12 driver (JetPack 6) fails with cudaErrorInsufficientDriver.
    """
    if versions.driver == 0:
        raise CudaError(f"no NVIDIA driver found ({versions_text(versions)})")
    if versions.driver_major < versions.runtime_major:
        raise CudaError(f"the NVIDIA driver is older than cuda-python's CUDA runtime needs "
                        f"({versions_text(versions)}): "
                        f"install requirements/deploy-cu{versions.driver_major}.txt "
                        f"(cuda-python=={versions.driver_major}.*) or a driver for CUDA {versions.runtime_major}")


def checked_versions(runtime: Any = None) -> CudaVersions:
    """cuda_versions, logged and checked with check_driver: the first call of every GPU session."""
    versions = cuda_versions(runtime)
    log.info("CUDA: %s", versions_text(versions))
    check_driver(versions)
    return versions
