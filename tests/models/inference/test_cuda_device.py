"""cuda-python's driver and runtime versions: logged, and a driver older than the runtime needs refused by name."""

from __future__ import annotations

import logging

import pytest

from scratchdet.models.inference import cuda_device
from scratchdet.models.inference.cuda_device import (
    CudaError,
    CudaVersions,
    check_driver,
    checked_versions,
    version_text,
)


class FakeRuntime:
    """cudaDriverGetVersion / cudaRuntimeGetVersion as cuda-python returns them: (error, version)."""

    def __init__(self, driver: int, runtime: int) -> None:
        self.driver, self.runtime = driver, runtime

    def cudaDriverGetVersion(self):  # noqa: N802 (cuda-python's names)
        return 0, self.driver

    def cudaRuntimeGetVersion(self):  # noqa: N802
        return 0, self.runtime


def test_versions_decode_as_the_cuda_api_encodes_them():
    assert version_text(12020) == "12.2" and version_text(13000) == "13.0" and version_text(12090) == "12.9"


def test_a_cuda_12_driver_under_cuda_python_13_is_refused_naming_both(caplog):
    with caplog.at_level(logging.INFO), pytest.raises(CudaError) as raised:
        checked_versions(FakeRuntime(driver=12060, runtime=13000))  # JetPack 6 (CUDA 12.6) + cuda-python 13
    message = str(raised.value)
    assert "NVIDIA driver: CUDA 12.6" in message and "CUDA runtime 13.0" in message
    assert "requirements/deploy-cu12.txt" in message and "cuda-python==12.*" in message
    assert "NVIDIA driver: CUDA 12.6" in caplog.text  # logged before the check


def test_minor_version_compatibility_and_a_missing_driver():
    check_driver(CudaVersions(driver=12020, runtime=12090, bindings="12.9.10"))  # 12.9 bindings on a 12.2 driver
    check_driver(CudaVersions(driver=13010, runtime=12090, bindings="12.9.10"))  # a newer driver runs older runtimes
    with pytest.raises(CudaError, match=r"no NVIDIA driver found \(NVIDIA driver: none installed; cuda-python"):
        check_driver(CudaVersions(driver=0, runtime=12090, bindings="12.9.10"))


def test_insufficient_driver_from_any_call_names_both_versions(monkeypatch):
    monkeypatch.setattr(cuda_device, "cudart", lambda: FakeRuntime(driver=12020, runtime=13000))
    with pytest.raises(CudaError, match=r"cudaErrorInsufficientDriver.*CUDA 12\.2.*CUDA runtime 13\.0"):
        cuda_device.cuda_call((35, None))
