"""The ONNX contract every runtime and TensorRT consume (README, "ONNX"), defined once, checked after
every export and by every consumer.

Input `images` float32 [B, 3, H, W], RGB, 0-255 (normalisation inside). Outputs in the
DeepStream/EfficientNMS layout; `det_classes` are 0-based indices into the `class_names` metadata.
"""

from __future__ import annotations

import json
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
# Metadata stored as JSON strings in metadata_props; a model is usable without any side file.
# The post-processing keys are PostprocessConfig's fields, stored flat so that any consumer (DeepStream's
# config writer, the board runner) reads them without our dataclasses.
POSTPROCESS_KEYS = ("score_threshold", "iou_threshold", "pre_nms_topk", "max_det", "deploy_score_threshold")
METADATA_KEYS = ("class_names", "input_size", "mean", "std", "color_order", *POSTPROCESS_KEYS, "config_name",
                 "model_config", "checkpoint_sha256", "precision", "exporter")


class ContractError(ValueError):
    """An ONNX model that does not follow the contract; the message names file and problem."""


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
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise ContractError(f"{source}: missing output(s) {missing}; found {list(outputs)} "
                            f"(expected {list(OUTPUTS)})")
    for name, (dtype, _) in OUTPUTS.items():
        found = outputs[name].type.tensor_type.elem_type
        if found != dtype:
            raise ContractError(f"{source}: output '{name}' is {TensorProto.DataType.Name(found)}, "
                                f"expected {TensorProto.DataType.Name(dtype)}")
    metadata = read_metadata(model)
    absent = [key for key in METADATA_KEYS if key not in metadata]
    if absent:
        raise ContractError(f"{source}: metadata_props lacks {absent}; re-export with `scratchdet export`")
    problems = metadata_problems(metadata, dims, _dims(outputs["det_boxes"]))
    if problems:
        raise ContractError(f"{source}: metadata contradicts the graph or has the wrong type: " + "; ".join(problems))
    return metadata


def postprocess_config(metadata: dict[str, Any], source: str | Path) -> PostprocessConfig:
    """The post-processing settings a model carries in its metadata."""
    try:
        return from_dict(PostprocessConfig, {key: metadata[key] for key in POSTPROCESS_KEYS}, str(source))
    except (KeyError, ConfigError) as error:
        raise ContractError(f"{source}: unusable post-processing metadata: {error}") from None


def unpack_outputs(outputs: dict[str, np.ndarray]) -> list[Detections]:
    """The four fixed-size outputs -> per image the valid rows (input pixels, 0-based class ids)."""
    return [Detections.from_arrays(outputs["det_boxes"][i, :count], outputs["det_scores"][i, :count],
                                   outputs["det_classes"][i, :count])
            for i, count in enumerate(outputs["num_dets"][:, 0])]


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
        problems.append(f"max_det {max_det} but det_boxes holds {box_dims[1]} per image")
    if not isinstance(metadata["precision"], str):
        problems.append(f"precision must be a string, found {metadata['precision']!r}")
    return problems


def load_checked(path: str | Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Load an ONNX file and check it against the contract."""
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
    return model, check_contract(model, path)
