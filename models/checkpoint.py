"""Checkpoint files: the model config rides with the weights, so a checkpoint rebuilds its own model.

Loaded with `torch.load(weights_only=True)` only: a checkpoint from elsewhere must not run code, so
everything stored is tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from scratchdet.models.config import ConfigError, ModelConfig, from_dict, to_dict
from scratchdet.models.ssd import SSD

FORMAT = "scratchdet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable ScratchDet checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically (temporary file, then rename) so a kill never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, temporary)
    os.replace(temporary, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, after checking it is one of ours.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not loadable with weights_only=True, or not a ScratchDet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(
            f"{path}: not a loadable checkpoint ({type(error).__name__}: {str(error)[:200]})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ScratchDet checkpoint (no '{FORMAT}' format tag)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {data.get('format_version')}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    return data


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
    model = SSD(config)
    try:
        model.load_state_dict(data["model"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"{path}: weights do not fit config '{config.name}': {error}") from None
    return model.eval(), data


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
