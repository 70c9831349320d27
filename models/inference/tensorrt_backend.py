"""TensorRT engines (.engine + sidecar .json) on 10.x and 11.x, device memory through cuda-python.

Flow (tensorrt-facts.md section 3.4): check the sidecar against the running TensorRT and GPU,
deserialize, create a context, allocate for the profile's max batch, then per call `set_input_shape`,
copy in, `execute_async_v3` on a stream, copy out. Addresses are set once (`set_tensor_address`); every
boolean TensorRT returns is checked. An optional CUDA graph replays a fixed batch size; capture can fail
(NonMaxSuppression has a data-dependent output shape, which TensorRT may not run under capture), and
then the backend runs uncaptured. Shape and size decisions are pure functions (`TensorSpec`,
`buffer_bytes`) tested without a GPU; the rest runs under `pytest -m tensorrt` and `make gpu-check`.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchdet.models.contract import check_engine_compatible, postprocess_config, read_sidecar, unpack_outputs
from scratchdet.models.detections import Detections
from scratchdet.models.inference.cuda_device import checked_versions, cuda_call, cudart, gpu_info

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]  # at the profile's largest batch

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.max_shape)) * np.dtype(self.dtype).itemsize


def buffer_bytes(specs: list[TensorSpec]) -> dict[str, int]:
    """Bytes to allocate per tensor; refuses a shape left dynamic (-1) after the profile is applied."""
    for spec in specs:
        if any(d < 0 for d in spec.max_shape):
            raise ValueError(f"tensor '{spec.name}' has a dynamic shape {spec.max_shape} after the profile was set")
    return {spec.name: spec.nbytes for spec in specs}


def dims(shape: trt.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple of ints."""
    return tuple(int(shape[i]) for i in range(len(shape)))


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or ImportError saying what to install.

    A folder named tensorrt without the bindings (e.g. type stubs installed into site-packages) imports as an
    empty namespace package; it counts as missing.
    """
    missing = ("TensorRT is not installed (pip install tensorrt on an x86 GPU host; JetPack ships it on Jetson)")
    try:
        import tensorrt
    except ImportError:
        raise ImportError(missing) from None
    if not hasattr(tensorrt, "Builder"):
        raise ImportError(f"{missing}; the `tensorrt` found at {list(tensorrt.__path__)} has no bindings")
    return tensorrt


class DeviceBuffers:
    """Pinned host and device memory for every I/O tensor; the one owner, freed by close()."""

    def __init__(self, specs: list[TensorSpec]) -> None:
        self.runtime = cudart()
        self.specs = {s.name: s for s in specs}
        self.device: dict[str, int] = {}
        self.host: dict[str, np.ndarray] = {}
        self._host_pointers: dict[str, int] = {}
        for name, nbytes in buffer_bytes(specs).items():
            self.device[name] = cuda_call(self.runtime.cudaMalloc(nbytes))
            pointer = cuda_call(self.runtime.cudaMallocHost(nbytes))
            self._host_pointers[name] = pointer
            raw = (ctypes.c_byte * nbytes).from_address(int(pointer))
            self.host[name] = np.frombuffer(memoryview(raw), dtype=self.specs[name].dtype)

    def close(self) -> None:
        for pointer in self.device.values():
            cuda_call(self.runtime.cudaFree(pointer))
        for pointer in self._host_pointers.values():
            cuda_call(self.runtime.cudaFreeHost(pointer))
        self.device.clear()
        self._host_pointers.clear()
        self.host.clear()


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: str | Path, cuda_graph: bool = False) -> None:
        tensorrt = import_tensorrt()
        self.path = Path(path)
        values = read_sidecar(self.path)
        checked_versions()  # logs driver and runtime versions; a too-old driver is named before any other call
        check_engine_compatible(self.path, values, tensorrt.__version__, *gpu_info())
        metadata = values["model_metadata"]
        self.class_names, self.input_size = metadata["class_names"], metadata["input_size"]
        self.postprocess = postprocess_config(metadata, values.get("onnx", self.path))
        self.precision, self.provider = values["precision"], f"TensorRT {tensorrt.__version__}"
        self.runtime = cudart()
        self.graphs: dict[int, tuple[Any, Any]] = {}  # batch size -> (cudaGraph_t, cudaGraphExec_t)
        self.use_cuda_graph = cuda_graph
        self.buffers: DeviceBuffers | None = None
        self.stream: Any = None
        self.engine = self._deserialize(tensorrt)
        self.context = self.engine.create_execution_context()
        self.stream = cuda_call(self.runtime.cudaStreamCreate())
        self.specs = self._tensor_specs()
        self.buffers = DeviceBuffers(self.specs)
        for spec in self.specs:
            if not self.context.set_tensor_address(spec.name, int(self.buffers.device[spec.name])):
                raise RuntimeError(f"{self.path}: TensorRT refused the device address of tensor '{spec.name}'")

    def _deserialize(self, tensorrt: Any) -> trt.ICudaEngine:
        trt_runtime: trt.Runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.WARNING))
        engine = trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise RuntimeError(f"{self.path}: TensorRT could not deserialize the engine")
        return engine

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(name, shape):
            minimum, _, maximum = self.engine.get_tensor_profile_shape(name, 0)
            raise ValueError(f"{self.path}: input '{name}' shape {shape} is outside the engine profile "
                             f"{dims(minimum)}..{dims(maximum)}")

    def _tensor_specs(self) -> list[TensorSpec]:
        import tensorrt as trt

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            self._set_input_shape(name, dims(self.engine.get_tensor_profile_shape(name, 0)[2]))
        self.max_batch = int(self.context.get_tensor_shape(inputs[0])[0])
        return [TensorSpec(n, n in inputs, np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))),
                           dims(self.context.get_tensor_shape(n))) for n in names]

    def _copy(self, name: str, count: int, to_device: bool) -> None:
        if self.buffers is None:
            raise RuntimeError(f"{self.path}: the backend is closed")
        kind = self.runtime.cudaMemcpyKind
        nbytes = count * self.buffers.specs[name].dtype.itemsize
        host = self.buffers.host[name].ctypes.data
        device = self.buffers.device[name]
        if to_device:
            cuda_call(self.runtime.cudaMemcpyAsync(device, host, nbytes, kind.cudaMemcpyHostToDevice, self.stream))
        else:
            cuda_call(self.runtime.cudaMemcpyAsync(host, device, nbytes, kind.cudaMemcpyDeviceToHost, self.stream))

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"{self.path}: execute_async_v3 failed (see the TensorRT log above)")

    def _capture(self, batch_size: int) -> bool:
        """Capture one enqueue into a CUDA graph; False (and nothing kept) when capture is not possible."""
        self._enqueue()  # TensorRT's own advice: one uncaptured run first, to finish lazy allocations
        cuda_call(self.runtime.cudaStreamSynchronize(self.stream))
        mode = self.runtime.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(self.runtime.cudaStreamBeginCapture(self.stream, mode))
        try:
            enqueued = self.context.execute_async_v3(int(self.stream))
        finally:
            error, graph = self.runtime.cudaStreamEndCapture(self.stream)  # always end, even after a failed enqueue
        if not enqueued or int(error) != 0 or graph is None:
            self._discard_capture(graph)
            return False
        error, executable = self.runtime.cudaGraphInstantiate(graph, 0)
        if int(error) != 0:
            self._discard_capture(graph)
            return False
        self.graphs[batch_size] = (graph, executable)
        return True

    def _discard_capture(self, graph: Any) -> None:
        """Destroy a failed capture's graph and clear the error it left, so the uncaptured runs that follow
        do not report it: an invalidated capture sets the runtime's last error (e.g. 901,
        cudaErrorStreamCaptureInvalidated), which the next checked call would otherwise return, and
        cudaGetLastError resets it (CUDA Runtime API, Error Handling)."""
        if graph is not None:  # EndCapture returns a NULL graph (None in cuda-python) when the capture was invalidated
            cuda_call(self.runtime.cudaGraphDestroy(graph))
        error, status = self.runtime.cudaStreamIsCapturing(self.stream)
        if int(error) == 0 and status != self.runtime.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone:
            raise RuntimeError(f"{self.path}: the stream is still capturing after cudaStreamEndCapture")
        (cleared,) = self.runtime.cudaGetLastError()
        if int(cleared) != 0:
            log.info("%s: cleared CUDA error %d left by the failed graph capture", self.path, int(cleared))
        cuda_call(self.runtime.cudaStreamSynchronize(self.stream))

    def _execute(self, batch_size: int) -> None:
        if self.use_cuda_graph and batch_size not in self.graphs and not self._capture(batch_size):
            log.warning("%s: CUDA graph capture failed (the in-graph NMS has a data-dependent shape); "
                        "running without CUDA graphs", self.path)
            self.use_cuda_graph = False
        if self.use_cuda_graph:
            cuda_call(self.runtime.cudaGraphLaunch(self.graphs[batch_size][1], self.stream))
        else:
            self._enqueue()

    def _run(self, batch: np.ndarray) -> DeviceBuffers:
        """Copy the batch in and enqueue the engine (or replay its graph); outputs stay on the device."""
        if self.buffers is None:
            raise RuntimeError(f"{self.path}: the backend is closed")
        if len(batch) > self.max_batch:
            raise ValueError(f"{self.path}: batch {len(batch)} exceeds the engine profile's max {self.max_batch}")
        (image,) = [s for s in self.specs if s.is_input]
        self._set_input_shape(image.name, batch.shape)
        self.buffers.host[image.name][: batch.size] = batch.ravel()
        self._copy(image.name, batch.size, to_device=True)
        self._execute(len(batch))
        return self.buffers

    def execute(self, batch: np.ndarray) -> None:
        """Run the engine on a batch and wait, reading no output: times an engine whose outputs are not
        detections (the network alone, benchmarks/gpu_check.py's NMS-tail stage)."""
        self._run(batch)
        cuda_call(self.runtime.cudaStreamSynchronize(self.stream))

    def infer(self, batch: np.ndarray) -> list[Detections]:
        buffers = self._run(batch)
        shapes: dict[str, tuple[int, ...]] = {}
        for spec in (s for s in self.specs if not s.is_input):
            shapes[spec.name] = dims(self.context.get_tensor_shape(spec.name))
            self._copy(spec.name, int(np.prod(shapes[spec.name])), to_device=False)
        cuda_call(self.runtime.cudaStreamSynchronize(self.stream))
        return unpack_outputs({name: buffers.host[name][: int(np.prod(shape))].reshape(shape).copy()
                               for name, shape in shapes.items()}, self.input_size)

    def close(self) -> None:
        """Free graphs, buffers and the stream; a second call does nothing."""
        for graph, executable in self.graphs.values():
            cuda_call(self.runtime.cudaGraphExecDestroy(executable))
            cuda_call(self.runtime.cudaGraphDestroy(graph))
        self.graphs.clear()
        if self.buffers is not None:
            self.buffers.close()
            self.buffers = None
        if self.stream is not None:
            cuda_call(self.runtime.cudaStreamDestroy(self.stream))
            self.stream = None
