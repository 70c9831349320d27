"""Shared fixtures: the synthetic dataset, a trained tiny checkpoint, and the BCCD set from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BCCD = SHARED / "datasets" / "bccd"


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scratchdet.train.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=60, seed=0)


@pytest.fixture(scope="session")
def bccd() -> Path:
    if not (BCCD / "annotations.json").is_file():
        pytest.skip(f"BCCD dataset not found at {BCCD} (CI has ../shared beside the clone; a user's clone may not)")
    return BCCD


def train_tiny(data: Path, out: Path, epochs: int) -> Path:
    from dataclasses import replace

    from scratchdet.train.config import load_config
    from scratchdet.train.trainer import Trainer

    model_config, train_config = load_config("tiny")
    train_config = replace(train_config, epochs=epochs, batch_size=8, eval_every=epochs)
    Trainer(model_config, train_config, data, out).fit()
    return out / "last.pt"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, synth_data: Path) -> Path:
    """The tiny config trained on synthetic data for two short epochs: real weights, seconds to make."""
    return train_tiny(synth_data, tmp_path_factory.mktemp("tiny_run"), epochs=2)


@pytest.fixture(scope="session")
def bccd_checkpoint(tmp_path_factory: pytest.TempPathFactory, bccd: Path) -> Path:
    """The tiny config trained three epochs on BCCD: weights that have seen real images."""
    return train_tiny(bccd, tmp_path_factory.mktemp("bccd_run"), epochs=3)


@pytest.fixture(scope="session")
def bccd_models(bccd_checkpoint: Path, bccd: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The BCCD-trained tiny model as checkpoint, FP32 ONNX and INT8 (ort flavour) ONNX."""
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions, quantize_int8
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(bccd_checkpoint)
    folder = tmp_path_factory.mktemp("bccd_models")
    fp32 = export_onnx(model, checkpoint["class_names"], folder / "model.onnx", ExportOptions()).path
    int8 = quantize_int8(fp32, bccd, "ort", folder / "model-int8-ort.onnx", CalibrationOptions(images=32))
    return {"pt": bccd_checkpoint, "fp32": fp32, "int8": int8}


@pytest.fixture(scope="session")
def gpu_data(synth_data: Path) -> Path:
    """BCCD where ../shared has it, else the synthetic set made here: the GPU tests never skip for want of data
    (a self-hosted runner has no ../shared beside its clone)."""
    return BCCD if (BCCD / "annotations.json").is_file() else synth_data


@pytest.fixture(scope="session")
def gpu_models(gpu_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FP32, FP16 and INT8 (TensorRT flavour) ONNX for the GPU tests: those in $SCRATCHDET_GPU_MODELS (written by
    `gpu_check --prepare-only` where torch is; a deploy install has none), else trained and exported here."""
    names = {"fp32": "model.onnx", "fp16": "model-fp16.onnx", "int8": "model-int8-tensorrt.onnx"}
    given = os.environ.get("SCRATCHDET_GPU_MODELS")
    if given:
        models = {kind: Path(given) / name for kind, name in names.items()}
        missing = [str(path) for path in models.values() if not path.is_file()]
        if missing:
            pytest.fail(f"SCRATCHDET_GPU_MODELS={given} lacks {', '.join(missing)}")
        return models
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(train_tiny(gpu_data, tmp_path_factory.mktemp("gpu_run"), epochs=3))
    folder = tmp_path_factory.mktemp("gpu_models")
    fp32 = export_onnx(model, checkpoint["class_names"], folder / names["fp32"], ExportOptions()).path
    return {"fp32": fp32, "fp16": convert_fp16(fp32, folder / names["fp16"]),
            "int8": quantize_int8(fp32, gpu_data, "tensorrt", folder / names["int8"], CalibrationOptions(images=32))}


@pytest.fixture(autouse=True)
def no_runtime_recommendation(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`--runtime auto` reads a per-user file: tests point it at an empty place, so auto means ONNX Runtime unless a
    test writes a recommendation there (the user's own ~/.cache/scratchdet/runtime.json never counts)."""
    path = tmp_path_factory.mktemp("recommendation") / "runtime.json"
    monkeypatch.setenv("SCRATCHDET_RUNTIME_FILE", str(path))
    return path
