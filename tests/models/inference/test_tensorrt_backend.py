"""The TensorRT backend without a GPU: every TensorRT attribute runtime/ uses exists in TensorRT 11's real
runtime bindings (tensorrt-lean-cu12 imports on CPU), and the CUDA-graph capture falls back and cleans up."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from scratchdet.models.inference.tensorrt_backend import TensorRTBackend, TensorSpec, buffer_bytes

INFERENCE = Path(__file__).resolve().parents[3] / "models" / "inference"
# Receivers in runtime/ whose attributes are TensorRT's: the module, and the objects it returns.
RECEIVERS = {"trt": "", "tensorrt": "", "self.engine": "ICudaEngine", "self.context": "IExecutionContext",
             "trt_runtime": "Runtime"}
NOT_TENSORRT = {"__path__"}


def _receiver(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def tensorrt_attributes_used() -> set[str]:
    """'ICudaEngine.get_tensor_name', 'Logger.WARNING', ... for every TensorRT access in models/inference/*.py."""
    used = set()
    for source in INFERENCE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            chain = [node.attr]
            value = node.value
            while isinstance(value, ast.Attribute) and _receiver(value) not in RECEIVERS:
                chain.insert(0, value.attr)
                value = value.value
            owner = _receiver(value)
            if owner in RECEIVERS and node.attr not in NOT_TENSORRT:
                used.add(".".join(filter(None, [RECEIVERS[owner], *chain])))
    # an attribute chain a.b.c is also walked as a.b: keep only the longest
    return {name for name in used if not any(other.startswith(f"{name}.") for other in used)}


def attributes_missing(module: object, names: set[str]) -> list[str]:
    """The dotted names ('ICudaEngine.get_tensor_name') that `module` does not have."""
    missing = []
    for name in sorted(names):
        target = module
        for part in name.split("."):
            if not hasattr(target, part):
                missing.append(name)
                break
            target = getattr(target, part)
    return missing


def test_every_tensorrt_attribute_runtime_uses_exists_in_tensorrt_11(capsys):
    lean = pytest.importorskip("tensorrt_lean", reason="make setup installs tensorrt-lean-cu12 (dev extra)")
    used = tensorrt_attributes_used()
    assert {"ICudaEngine.get_tensor_profile_shape", "IExecutionContext.execute_async_v3",
            "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
            "Runtime.deserialize_cuda_engine", "TensorIOMode.INPUT", "Logger.WARNING", "nptype"} <= used
    missing = attributes_missing(lean, used)
    with capsys.disabled():
        print(f"\nchecked in tensorrt_lean {lean.__version__}: {', '.join(sorted(used))}")
    assert not missing, f"runtime/ uses TensorRT attributes that TensorRT {lean.__version__} lacks: {missing}"


def test_buffer_sizes_refuse_a_dynamic_shape():
    import numpy as np

    specs = [TensorSpec("images", True, np.dtype(np.float32), (8, 3, 300, 300)),
             TensorSpec("num_dets", False, np.dtype(np.int32), (8, 1))]
    assert buffer_bytes(specs) == {"images": 8 * 3 * 300 * 300 * 4, "num_dets": 32}
    with pytest.raises(ValueError, match=r"tensor 'det_boxes' has a dynamic shape \(-1, 200, 4\)"):
        buffer_bytes([TensorSpec("det_boxes", False, np.dtype(np.float32), (-1, 200, 4))])


class FakeCudart:
    """The cuda-python calls the capture path makes, recorded; capture fails when `capturable` is False."""

    def __init__(self, capturable: bool) -> None:
        self.capturable, self.calls = capturable, []
        self.last_error = 0  # what cudaGetLastError would return (and reset)
        self.cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
        self.cudaStreamCaptureStatus = SimpleNamespace(cudaStreamCaptureStatusNone=0)

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            if name == "cudaStreamEndCapture":
                if self.capturable:
                    return 0, "graph"
                self.last_error = 901  # cudaErrorStreamCaptureInvalidated, left for the next call to see
                return 901, None
            if name == "cudaGraphInstantiate":
                return 0, "executable"
            if name == "cudaStreamIsCapturing":
                return 0, 0
            if name == "cudaGetLastError":
                error, self.last_error = self.last_error, 0
                return (error,)
            return (self.last_error,)  # a pending error surfaces in the next runtime call
        return call


class FakeContext:
    def __init__(self, runtime: FakeCudart) -> None:
        self.runtime, self.enqueues = runtime, 0

    def execute_async_v3(self, stream: int) -> bool:
        self.enqueues += 1
        capturing = self.runtime.calls[-1:] == ["cudaStreamBeginCapture"]
        return self.runtime.capturable or not capturing  # TensorRT refuses to enqueue NMS under capture


def _backend(capturable: bool) -> TensorRTBackend:
    backend = object.__new__(TensorRTBackend)
    backend.path, backend.stream, backend.buffers = Path("m.engine"), 7, None
    backend.runtime = FakeCudart(capturable)
    backend.context = FakeContext(backend.runtime)
    backend.graphs, backend.use_cuda_graph = {}, True
    return backend


def test_cuda_graph_capture_falls_back_when_tensorrt_refuses_it(caplog):
    backend = _backend(capturable=False)
    with caplog.at_level(logging.WARNING):
        backend._execute(4)
        backend._execute(4)
    assert not backend.use_cuda_graph and backend.graphs == {}
    assert backend.runtime.calls.count("cudaStreamEndCapture") == 1  # the failed capture was ended
    assert "cudaGraphLaunch" not in backend.runtime.calls
    assert backend.context.enqueues == 4  # warm-up, refused capture, then one plain run per call
    assert "CUDA graph capture failed" in caplog.text


def test_a_failed_capture_clears_the_cuda_error_it_left():
    backend = _backend(capturable=False)
    backend._execute(4)
    assert backend.runtime.last_error == 0  # cleared: the uncaptured runs that follow do not report error 901
    calls = backend.runtime.calls
    assert calls.index("cudaGetLastError") > calls.index("cudaStreamEndCapture")
    assert "cudaGraphDestroy" not in calls  # an invalidated capture returns no graph to destroy


def test_cuda_graph_is_replayed_and_destroyed_on_close():
    backend = _backend(capturable=True)
    backend._execute(2)
    backend._execute(2)
    assert backend.context.enqueues == 2  # warm-up and the captured one; both calls then replay the graph
    assert backend.runtime.calls.count("cudaGraphLaunch") == 2
    backend.close()
    backend.close()
    assert backend.runtime.calls.count("cudaGraphExecDestroy") == 1 and backend.runtime.calls.count(
        "cudaGraphDestroy") == 1
    assert backend.runtime.calls.count("cudaStreamDestroy") == 1 and backend.graphs == {}
