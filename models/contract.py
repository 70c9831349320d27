"""The artefact contract, defined once: what `export` and `engine` write and every reader (the backends,
the board runner, the bundle's script and DeepStream parser, gpu-check) expects.

ONNX (docs/design.md#onnx): input `images` float32 [B, 3, H, W], RGB, 0-255 (normalisation inside); outputs in
one of two layouts (`LAYOUTS`, recorded as `output_layout` in the metadata): ours (`OUTPUTS`: int32 count and
classes, x1, y1, x2, y2 input pixels) or the one stock DeepStream's NvDsInferParseCustomTfSSD reads
(`TFSSD_OUTPUTS`: all float32, y1, x1, y2, x2 normalised to the input size); in both, class ids are 0-based
indices into the `class_names` metadata. The metadata keys, post-processing settings among them, in
metadata_props.
Engines: one file name per model and precision (`engine_name`), and beside each engine a sidecar JSON
(`SIDECAR_KEYS`) that says what it was built from and for; an engine of another TensorRT version or GPU
is refused (`check_engine_compatible`).
"""

from __future__ import annotations

import json
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from scratchdet.models.config import ConfigError, PostprocessConfig, from_dict
from scratchdet.models.detections import Detections

INPUT = "images"
OUTPUTS: dict[str, tuple[int, Any]] = {  # name -> (dtype, shape after the batch axis, given K)
    "num_dets": (TensorProto.INT32, lambda k: [1]),
    "det_boxes": (TensorProto.FLOAT, lambda k: [k, 4]),
    "det_scores": (TensorProto.FLOAT, lambda k: [k]),
    "det_classes": (TensorProto.INT32, lambda k: [k]),
}
# NvDsInferParseCustomTfSSD (DeepStream's sources/libs/nvdsinfer_customparser/nvdsinfer_custombboxparser.cpp)
# finds its outputs by these names and only when their data type is FLOAT; same rows as OUTPUTS.
TFSSD_OUTPUTS: dict[str, tuple[int, Any]] = {
    "num_detections": (TensorProto.FLOAT, lambda k: [1]),
    "detection_boxes": (TensorProto.FLOAT, lambda k: [k, 4]),
    "detection_scores": (TensorProto.FLOAT, lambda k: [k]),
    "detection_classes": (TensorProto.FLOAT, lambda k: [k]),
}
DEFAULT_LAYOUT = "scratchdet"
LAYOUTS = {DEFAULT_LAYOUT: OUTPUTS, "tfssd": TFSSD_OUTPUTS}
BOX_OUTPUT = {layout: list(outputs)[1] for layout, outputs in LAYOUTS.items()}  # det_boxes, detection_boxes
# Metadata stored as JSON strings in metadata_props; a model is usable without any side file.
# The post-processing keys are PostprocessConfig's fields, stored flat so that any consumer (DeepStream's
# config writer, the board runner) reads them without our dataclasses.
POSTPROCESS_KEYS = tuple(f.name for f in fields(PostprocessConfig))
METADATA_KEYS = ("class_names", "input_size", "mean", "std", "color_order", *POSTPROCESS_KEYS, "config_name",
                 "model_config", "checkpoint_sha256", "precision", "exporter", "output_layout")
# Keys that exports made before they existed lack, with the value those exports meant (the output layout).
LEGACY_DEFAULTS = {"output_layout": DEFAULT_LAYOUT}


# Engines: the precisions an engine is built in, and the suffixes `quantize` adds to an ONNX stem (an
# engine is named after the model, not after its source ONNX).
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
ONNX_SUFFIXES = ("-fp32", "-fp16", "-int8-tensorrt", "-int8-ort")
# What a sidecar holds: the build facts the runtime checks, the build itself, and the model's ONNX metadata.
SIDECAR_KEYS = ("tensorrt_version", "gpu_name", "compute_capability", "precision", "onnx", "onnx_sha256", "profile",
                "build_seconds", "trtexec", "model_metadata")


class ContractError(ValueError):
    """An artefact that does not follow the contract; the message names file and problem."""


class EngineMismatchError(RuntimeError):
    """An engine built for another TensorRT version or GPU."""


def exporter_version() -> str:
    try:
        return f"scratchdet-edge {version('scratchdet-edge')}"
    except Exception:  # running from a source tree that was not installed
        return "scratchdet-edge (source)"


def write_metadata(model: onnx.ModelProto, values: dict[str, Any]) -> None:
    missing = set(METADATA_KEYS) - set(values)
    if missing:
        raise ValueError(f"ONNX metadata is missing {sorted(missing)}")
    del model.metadata_props[:]
    for key, value in values.items():
        model.metadata_props.add(key=key, value=json.dumps(value))


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """metadata_props with our JSON values parsed; other tools' plain strings (onnxsim adds some) kept."""
    return {p.key: _parse(p.value) for p in model.metadata_props}


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def check_contract(model: onnx.ModelProto, source: str | Path) -> dict[str, Any]:
    """Check names, dtypes, shapes and metadata; returns the metadata.

    Raises:
        ContractError: naming `source` and the first rule broken (expected vs found).
    """
    inputs = {i.name: i for i in model.graph.input}
    if list(inputs) != [INPUT]:
        raise ContractError(f"{source}: inputs {list(inputs)}, expected exactly ['{INPUT}']")
    image = inputs[INPUT]
    dims = _dims(image)
    if image.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1] != 3:
        raise ContractError(f"{source}: input '{INPUT}' must be float32 [B, 3, H, W], got "
                            f"{TensorProto.DataType.Name(image.type.tensor_type.elem_type)} {dims}")
    outputs = {o.name: o for o in model.graph.output}
    layout = output_layout(list(outputs), source)
    for name, (dtype, _) in LAYOUTS[layout].items():
        found = outputs[name].type.tensor_type.elem_type
        if found != dtype:
            raise ContractError(f"{source}: output '{name}' is {TensorProto.DataType.Name(found)}, "
                                f"expected {TensorProto.DataType.Name(dtype)} (layout '{layout}')")
    metadata = {**LEGACY_DEFAULTS, **read_metadata(model)}
    absent = [key for key in METADATA_KEYS if key not in metadata]
    if absent:
        raise ContractError(f"{source}: metadata_props lacks {absent}; re-export with `scratchdet export`")
    if metadata["output_layout"] != layout:
        raise ContractError(f"{source}: metadata says output_layout '{metadata['output_layout']}' but the outputs "
                            f"are the '{layout}' layout {list(LAYOUTS[layout])}")
    problems = metadata_problems(metadata, dims, _dims(outputs[BOX_OUTPUT[layout]]))
    if problems:
        raise ContractError(f"{source}: metadata contradicts the graph or has the wrong type: " + "; ".join(problems))
    return metadata


def output_layout(names: list[str], source: str | Path) -> str:
    """The layout whose four outputs `names` holds, and none of the other layout's.

    Raises:
        ContractError: neither layout complete, or names of both (a mixed graph), naming what was found.
    """
    complete = [layout for layout, wanted in LAYOUTS.items() if all(name in names for name in wanted)]
    touched = [layout for layout, wanted in LAYOUTS.items() if any(name in names for name in wanted)]
    if len(complete) == 1 and touched == complete:
        return complete[0]
    if len(touched) > 1:
        raise ContractError(f"{source}: outputs of two layouts mixed, found {names}; a model has exactly one of "
                            + " or ".join(f"'{layout}' {list(wanted)}" for layout, wanted in LAYOUTS.items()))
    missing = {layout: [name for name in wanted if name not in names] for layout, wanted in LAYOUTS.items()}
    raise ContractError(f"{source}: missing output(s) " + " or ".join(
        f"{absent} (layout '{layout}')" for layout, absent in missing.items()) + f"; found {names}")


def postprocess_config(metadata: dict[str, Any], source: str | Path) -> PostprocessConfig:
    """The post-processing settings a model carries in its metadata."""
    try:
        return from_dict(PostprocessConfig, {key: metadata[key] for key in POSTPROCESS_KEYS}, str(source))
    except (KeyError, ConfigError) as error:
        raise ContractError(f"{source}: unusable post-processing metadata: {error}") from None


def unpack_outputs(outputs: dict[str, np.ndarray], input_size: int | None = None) -> list[Detections]:
    """The four fixed-size outputs of either layout -> per image the valid rows (input pixels, 0-based ids).

    Args:
        input_size: S of the S x S input; needed for the tfssd layout, whose boxes are normalised.

    Raises:
        ContractError: the outputs are of neither layout, or tfssd outputs without `input_size`.
    """
    if output_layout(list(outputs), "model outputs") == DEFAULT_LAYOUT:
        boxes, scores, classes = outputs["det_boxes"], outputs["det_scores"], outputs["det_classes"]
        counts = outputs["num_dets"][:, 0]
    else:
        if input_size is None:
            raise ContractError("tfssd-layout outputs need the input size to turn normalised boxes into pixels")
        # y1, x1, y2, x2 normalised -> x1, y1, x2, y2 pixels; the float class ids are whole numbers
        boxes = outputs["detection_boxes"][..., [1, 0, 3, 2]] * np.float32(input_size)
        scores, classes = outputs["detection_scores"], outputs["detection_classes"]
        counts = outputs["num_detections"][:, 0].astype(np.int64)
    return [Detections.from_arrays(boxes[i, :count], scores[i, :count], classes[i, :count])
            for i, count in enumerate(counts)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metadata_problems(metadata: dict[str, Any], input_dims: list, box_dims: list) -> list[str]:
    """What is wrong with the metadata values: types, and agreement with the graph's own shapes."""
    problems = []
    names, size, config = metadata["class_names"], metadata["input_size"], metadata["model_config"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append(f"class_names must be a list of strings, found {names!r}")
    elif isinstance(config, dict) and _is_number(config.get("num_classes")) and len(names) != config["num_classes"] - 1:
        problems.append(f"{len(names)} class_names for a model of {config['num_classes'] - 1} classes")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        problems.append(f"input_size must be a positive integer, found {size!r}")
    elif [d for d in input_dims[2:] if isinstance(d, int) and d > 0] not in ([], [size, size]):
        problems.append(f"input_size {size} but the graph's input is {input_dims}")
    for key in ("mean", "std"):
        if not isinstance(metadata[key], list) or len(metadata[key]) != 3 or not all(map(_is_number, metadata[key])):
            problems.append(f"{key} must be 3 numbers, found {metadata[key]!r}")
    for key in ("score_threshold", "iou_threshold", "deploy_score_threshold"):
        if not _is_number(metadata[key]) or not 0 <= metadata[key] <= 1:
            problems.append(f"{key} must be a number in [0, 1], found {metadata[key]!r}")
    max_det = metadata["max_det"]
    if not isinstance(max_det, int) or isinstance(max_det, bool) or max_det <= 0:
        problems.append(f"max_det must be a positive integer, found {max_det!r}")
    elif len(box_dims) > 1 and isinstance(box_dims[1], int) and box_dims[1] > 0 and box_dims[1] != max_det:
        problems.append(f"max_det {max_det} but the box output holds {box_dims[1]} per image")
    if not isinstance(metadata["precision"], str):
        problems.append(f"precision must be a string, found {metadata['precision']!r}")
    return problems


def load_checked(path: str | Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Load an ONNX file and check it against the contract."""
    path = Path(path)
    model = read_onnx(path)
    return model, check_contract(model, path)


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """Load any ONNX file (ours or not), every failure a ContractError naming the file.

    Raises:
        FileNotFoundError: no such file.
        ContractError: empty, unreadable (external data outside its folder or missing included), or no graph.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file not found")
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises DecodeError and friends
        raise ContractError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    if not model.graph.node:  # protobuf parses many non-ONNX byte strings into an empty model
        raise ContractError(f"{path}: not an ONNX model (no graph nodes)")
    return model


def c_header() -> str:
    """The output names as C++ macros for the DeepStream parser: the bundle writes this text as
    deepstream/scratchdet_contract.h, so the parser reads the names the exporter wrote."""
    lines = ["// Generated by scratchdet from models/contract.py (the ONNX contract); do not edit.", "#pragma once", ""]
    lines += [f'#define SCRATCHDET_OUTPUT_{name.upper()} "{name}"' for name in OUTPUTS]
    lines.append(f'#define SCRATCHDET_OUTPUTS "{", ".join(OUTPUTS)}"')
    return "\n".join(lines) + "\n"


def contract_document() -> dict[str, Any]:
    """The contract as JSON-ready data, for readers that run without this package (the bundle's board runner)."""
    return {"input": INPUT, "layouts": {name: list(outputs) for name, outputs in LAYOUTS.items()},
            "default_layout": DEFAULT_LAYOUT, "metadata_keys": list(METADATA_KEYS)}


def engine_name(onnx_stem: str, precision: str) -> str:
    """The one engine file name of a model and precision: model-fp16.onnx, model.onnx -> model-fp16.engine.

    `scratchdet engine`, the bundle's build_engine.sh and its nvinfer config all use it, so DeepStream finds
    the engine the script built and the runtime finds its sidecar (same stem, .json).
    """
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"unknown precision '{precision}': choose {', '.join(ENGINE_PRECISIONS)}")
    model = next((onnx_stem[: -len(s)] for s in ONNX_SUFFIXES if onnx_stem.endswith(s)), onnx_stem)
    return f"{model}-{precision}.engine"


def read_sidecar(engine: str | Path) -> dict[str, Any]:
    """The sidecar JSON beside an engine, checked for every key of SIDECAR_KEYS.

    Raises:
        FileNotFoundError: no sidecar beside the engine.
        ContractError: not JSON, or keys missing (naming them).
    """
    engine = Path(engine)
    sidecar = engine.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{engine}: no sidecar {sidecar.name} beside it (build engines with `scratchdet "
                                f"engine` so the model's metadata and build facts travel with them)")
    try:
        values = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ContractError(f"{sidecar}: not a JSON sidecar ({error})") from None
    missing = [key for key in SIDECAR_KEYS if key not in values] if isinstance(values, dict) else list(SIDECAR_KEYS)
    if missing:
        raise ContractError(f"{sidecar}: sidecar lacks {missing}; rebuild the engine with `scratchdet engine` or the "
                            "bundle's build_engine.sh")
    return values


def version_tuple(version: str) -> tuple[int, int, int]:
    """'10.3.0.30' -> (10, 3, 0): major, minor, patch (trtexec prints three parts, Python four)."""
    try:
        numbers = [int(p) for p in version.strip().split(".")[:3]]
    except ValueError:
        raise ValueError(f"cannot read a TensorRT version from '{version}'") from None
    major, minor, patch = [*numbers, 0, 0][:3]
    return major, minor, patch


def same_tensorrt_version(a: str, b: str) -> bool:
    """Engines are tied to major.minor.patch; the fourth (build) part is not compared."""
    return version_tuple(a) == version_tuple(b)


def check_engine_compatible(engine: str | Path, values: dict[str, Any], tensorrt_version: str, gpu_name: str,
                            compute_capability: str) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU, with the rebuild command.

    Raises:
        EngineMismatchError: naming the engine, built-for vs running, and the trtexec line.
    """
    problems = []
    built_with = str(values.get("tensorrt_version", "unknown"))
    if built_with == "unknown" or not same_tensorrt_version(built_with, tensorrt_version):
        problems.append(f"TensorRT {values.get('tensorrt_version')} (running {tensorrt_version})")
    if values.get("gpu_name") != gpu_name or values.get("compute_capability") != compute_capability:
        problems.append(f"GPU {values.get('gpu_name')} sm_{values.get('compute_capability')} "
                        f"(running {gpu_name} sm_{compute_capability})")
    if problems:
        raise EngineMismatchError(f"{engine}: built for {' and '.join(problems)}; engines are tied to both. "
                                  f"Rebuild it here: {values.get('trtexec', 'scratchdet engine --model MODEL')}")
