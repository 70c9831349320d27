"""Checkpoint files: the model config rides with the weights, so a checkpoint rebuilds its own model.

Loaded with `torch.load(weights_only=True)` only: a checkpoint from elsewhere must not run code, so
everything stored is tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from scratchdet.models.config import ConfigError, ModelConfig, from_dict, to_dict
from scratchdet.models.files import atomic_write, require_free_space
from scratchdet.models.ssd import SSD

FORMAT = "scratchdet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable ScratchDet checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically (temporary file, then rename) so a kill never leaves half a checkpoint."""
    path = Path(path)
    require_free_space(path, _tensor_bytes(payload) + (1 << 20))  # the zip's headers and pickle: under 1 MiB
    with atomic_write(path) as temporary:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, temporary)
    return path


def _tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a nested checkpoint payload: what torch.save will write, less its headers."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, after checking it is one of ours.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not loadable with weights_only=True, or not a ScratchDet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    with open(path, "rb") as handle:
        head = handle.read(4)
    is_zip = zipfile.is_zipfile(path)
    if head == b"PK\x03\x04" and not is_zip:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (an incomplete zip archive)")
    if not is_zip and head[:1] != b"\x80":  # torch.save writes a zip; old torch a pickle
        kind = "an empty file" if not head else f"starts with {head!r}"
        raise CheckpointError(f"{path}: not a checkpoint written by torch.save ({kind}, neither a zip archive nor "
                              "a pickle)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(f"{path}: not a loadable checkpoint ({_first_sentence(error)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ScratchDet checkpoint (no '{FORMAT}' format tag)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {data.get('format_version')}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    return data


def _first_sentence(error: Exception) -> str:
    """torch's weights_only errors run to many paragraphs; their first line says what happened."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold NaN or inf."""
    return [name for name, tensor in state.items()
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def check_finite(path: str | Path, state: dict[str, Any]) -> None:
    """Refuse weights holding NaN or inf: whatever they export or score would be meaningless.

    Raises:
        CheckpointError: naming the file, how many tensors are affected and the first of them.
    """
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]}); "
                              "training diverged. Use an earlier checkpoint or retrain with a lower learning rate")


def config_differences(expected: ModelConfig, found: ModelConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: expected vs found' for every model-config key that differs, except those in `ignore`."""
    a, b = to_dict(expected), to_dict(found)
    return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k] and k not in ignore]


def load_model(path: str | Path, expected: ModelConfig | None = None,
               ignore: tuple[str, ...] = ()) -> tuple[SSD, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; returns (model in eval mode, checkpoint dict).

    `expected`, when given, must equal the stored config but for the keys in `ignore`.

    Raises:
        CheckpointError: not a checkpoint, or its config differs from `expected` (keys listed).
    """
    data = read_checkpoint(path)
    try:
        config = from_dict(ModelConfig, data["model_config"], f"{path} (model_config)")
    except (KeyError, ConfigError) as error:
        raise CheckpointError(f"{path}: unusable model config: {error}") from None
    if expected is not None:
        differences = config_differences(expected, config, ignore)
        if differences:
            raise CheckpointError(
                f"{path}: checkpoint of config '{config.name}' does not match config "
                f"'{expected.name}' (expected vs found): " + "; ".join(differences)
            )
    names = data.get("class_names")
    if not isinstance(names, list) or len(names) != config.num_classes - 1 or not all(
            isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: 'class_names' must list {config.num_classes - 1} names for a model of "
                              f"{config.num_classes} classes (with background), found {names!r}")
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path}: no 'model' weights in the checkpoint")
    check_finite(path, data["model"])
    model = SSD(config)
    try:
        model.load_state_dict(data["model"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"{path}: weights do not fit config '{config.name}': {error}") from None
    return model.eval(), data
