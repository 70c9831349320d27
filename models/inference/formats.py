"""The one table of model formats: file suffix -> the runtimes that run it, how to open each, and where the
model's own metadata (class names, config, post-processing) lives.

Every consumer that takes "any model file" (the Detector, `val`, `bench`, gpu-check) goes through
`open_backend` and `model_metadata`; a new format is one row here. Backends are imported only when opened,
so reading this table needs neither torch nor onnxruntime nor TensorRT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scratchdet.models.detections import Backend

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    label: str  # the format's name in reports
    runtimes: tuple[str, ...]  # the first is the default
    metadata: Callable[[Path], dict[str, Any]]


def _checkpoint_metadata(path: Path) -> dict[str, Any]:
    from scratchdet.models.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    return {"class_names": checkpoint["class_names"], "model_config": checkpoint["model_config"]}


def _onnx_metadata(path: Path) -> dict[str, Any]:
    from scratchdet.models.contract import load_checked

    return load_checked(path)[1]


def _engine_metadata(path: Path) -> dict[str, Any]:
    from scratchdet.models.contract import read_sidecar

    return read_sidecar(path)["model_metadata"]


FORMATS: dict[str, Format] = {
    ".pt": Format("pytorch", ("pytorch",), _checkpoint_metadata),
    ".onnx": Format("onnx", ("onnxruntime", "openvino"), _onnx_metadata),
    ".engine": Format("tensorrt", ("tensorrt", "tensorrt-rtx"), _engine_metadata),
}


def format_of(path: str | Path) -> Format:
    """The format of a model file by its suffix.

    Raises:
        ValueError: an unknown suffix, naming the file and the known ones.
    """
    suffix = Path(path).suffix
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown model format '{suffix}'; expected one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def model_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata a model file carries (at least class_names and model_config), without opening a backend."""
    return format_of(path).metadata(Path(path))


AUTO = "auto"


def engine_runtime(path: Path) -> str:
    """The runtime an engine's sidecar names: "tensorrt-rtx" for TensorRT-RTX engines, else "tensorrt"."""
    from scratchdet.models.contract import read_sidecar

    return str(read_sidecar(path).get("runtime", "tensorrt"))


def _auto(path: Path, precision_hint: str) -> tuple[str, tuple[onnx.ModelProto, dict[str, Any]]]:
    """Auto's runtime for an ONNX file, logged with its reason, and the file's model and checked metadata (read
    once: the backend takes them rather than reading the file again)."""
    from scratchdet.models.contract import load_checked
    from scratchdet.models.inference.runtime_choice import choose

    if precision_hint != "f32":  # auto never computes in bf16 by itself, and ONNX Runtime has no such hint
        raise ValueError(f"{path}: precision hint '{precision_hint}' is an OpenVINO setting; pass --runtime "
                         "openvino with it (runtime auto only ever runs OpenVINO in f32)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    checked = load_checked(path)
    choice = choose(checked[1]["precision"])
    log.info("%s: runtime auto -> %s: %s", path, choice.runtime, choice.reason)
    return choice.runtime, checked


def open_backend(path: str | Path, runtime: str | None = None, *, device: str | None = None,
                 threads: int | None = None, providers: list[str] | None = None, spinning: bool = True,
                 cuda_graph: bool = False, precision_hint: str = "f32") -> Backend:
    """The backend for a model file, by its suffix (and `runtime`, where a format has several).

    runtime "auto": for .onnx, OpenVINO where measured faster on this host for the model's precision, else ONNX
    Runtime (runtime_choice.py; the choice and its reason are logged); for .engine, the runtime its sidecar
    names (TensorRT or TensorRT-RTX); for other formats, their one runtime.
    Options: device (PyTorch), threads, providers and spinning (ONNX Runtime), cuda_graph (TensorRT),
    precision_hint (OpenVINO: "f32", or "bf16" on CPUs with BF16).

    Raises:
        ValueError: unknown suffix, or a runtime that does not run this format.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    model_format = format_of(path)
    checked = None
    if runtime == AUTO:
        runtime, checked = _auto(path, precision_hint) if model_format.label == "onnx" else (None, None)
    if runtime is None and model_format.label == "tensorrt" and path.is_file():
        runtime = engine_runtime(path)
    runtime = runtime or model_format.runtimes[0]
    if runtime not in model_format.runtimes:
        raise ValueError(f"{path}: runtime '{runtime}' does not run {path.suffix} files "
                         f"(choose {', '.join(model_format.runtimes)} or {AUTO})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if runtime == "pytorch":
        from scratchdet.models.inference.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(path, device)
    if runtime == "openvino":
        from scratchdet.models.inference.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, threads=threads, precision_hint=precision_hint,
                               metadata=None if checked is None else checked[1])
    if runtime == "onnxruntime":
        from scratchdet.models.inference.onnxruntime_backend import OnnxBackend

        return OnnxBackend(path, threads=threads, providers=providers, spinning=spinning, checked=checked)
    if runtime == "tensorrt-rtx":
        from scratchdet.models.inference.tensorrt_rtx_backend import TensorRTRTXBackend

        return TensorRTRTXBackend(path, cuda_graph=cuda_graph)
    from scratchdet.models.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, cuda_graph=cuda_graph)

