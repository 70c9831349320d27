"""Configs are data: YAML files read into frozen dataclasses, strictly.

Unknown keys and wrong types fail with the key and the file named, so a typo in a config never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from scratchdet.bounded_yaml import YamlError, load_yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config file or dict that does not match its dataclass."""


@dataclass(frozen=True)
class PriorConfig:
    """SSD default boxes, one entry per detection level (sizes in input pixels).

    Defaults are SSD300 on VOC (caffe/ssd_pascal.py): steps 8/16/32/64/100/300.
    """

    min_sizes: tuple[float, ...] = (30, 60, 111, 162, 213, 264)
    max_sizes: tuple[float, ...] = (60, 111, 162, 213, 264, 315)
    aspect_ratios: tuple[tuple[float, ...], ...] = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    # None: step = input_size / feature-map size, so any input size works.
    steps: tuple[float, ...] | None = (8, 16, 32, 64, 100, 300)
    variances: tuple[float, float] = (0.1, 0.2)


@dataclass(frozen=True)
class PostprocessConfig:
    """Decoding and NMS settings. They ride with the model (config -> checkpoint -> ONNX metadata, engine
    sidecar), so every backend of one model applies the same ones.

    `score_threshold`, `pre_nms_topk` and `max_det` are the evaluation settings (SSD's caffe/ssd_pascal.py: score 0.01,
    keep 200) and are what the in-graph NMS runs with, so any format can be evaluated; deployments
    (predict, DeepStream, the board runner) drop detections scoring below `deploy_score_threshold`.
    """

    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    pre_nms_topk: int = 200  # per class, before NMS: bounds NMS cost when every score passes (untrained)
    max_det: int = 200
    deploy_score_threshold: float = 0.25

    def __post_init__(self) -> None:
        for name in ("score_threshold", "iou_threshold", "deploy_score_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"postprocess.{name} must be within [0, 1], got {value}")
        for name in ("pre_nms_topk", "max_det"):
            if getattr(self, name) < 1:
                raise ValueError(f"postprocess.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelConfig:
    """What a detector is. `num_classes` counts the background class (index 0)."""

    name: str
    backbone: str = "root_resnet34"
    input_size: int = 300
    num_classes: int = 21
    width: float = 1.0
    bn_backbone: bool = True
    bn_head: bool = True
    # ResNet stages (1-based) whose outputs are detection sources, then residual extra blocks.
    source_stages: tuple[int, ...] = (3, 4)
    extra_blocks: int = 3
    extra_channels: int = 128
    last_conv: bool = True  # the final 3x3 pad-0 conv (3 -> 1 at 300 input)
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB, 0-255 scale
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    priors: PriorConfig = field(default_factory=PriorConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


def _check_type(value: Any, hint: Any, key: str, source: str) -> Any:
    """Return `value` converted to `hint` (lists become tuples), or raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, key, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key '{key}' expects a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{source}: key '{key}' expects {len(args)} values, got {len(value)}")
        return tuple(_check_type(v, a, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, source, prefix=f"{key}.")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any:
        return value
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: key '{key}' expects {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def from_dict(cls: type[T], data: Any, source: str, prefix: str = "") -> T:
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types.

    Raises:
        ConfigError: naming `source` (a file or "checkpoint"), the key, expected and found.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or cls.__name__}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"known keys: {', '.join(sorted(names))}"
        )
    values = {k: _check_type(v, hints[k], prefix + k, source) for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: {cls.__name__}: {error}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-friendly data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(path)
    except YamlError as error:
        raise ConfigError(str(error)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def resolve_config_path(name_or_path: str | Path) -> Path:
    """Accept a path, or the bare name of a shipped config ("tiny" -> models/configs/tiny.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.stem}.yaml"
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: config not found (shipped configs: {known})")


def load_model_config(path: str | Path) -> ModelConfig:
    """The `model:` section of a config file."""
    path = resolve_config_path(path)
    data = read_yaml(path)
    if "model" not in data:
        raise ConfigError(f"{path}: missing the 'model' section")
    return from_dict(ModelConfig, data["model"], str(path), prefix="model.")
