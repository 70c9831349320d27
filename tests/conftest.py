"""Shared fixtures: the synthetic dataset, a trained tiny checkpoint, the BCCD set from ../shared, and a model
trained on BCCD where it is present, else on a larger synthetic set (so a clone without ../shared runs those tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# SCRATCHDET_BCCD=/nonexistent runs the suite as a clone without ../shared does (README.md#the-two-commands)
BCCD = Path(os.environ.get("SCRATCHDET_BCCD", SHARED / "datasets" / "bccd"))


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scratchdet.train.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=60, seed=0)


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


TRAINED_SYNTH = {"images": 160, "epochs": 5}  # 128 training images x 5 epochs: val mAP@0.5 0.54 (BCCD: 291 x 3)


@pytest.fixture(scope="session")
def trained_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BCCD where ../shared has it, else a synthetic set large enough to train a model that detects."""
    if (BCCD / "annotations.json").is_file():
        return BCCD
    from scratchdet.train.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("trained_synth"), images=TRAINED_SYNTH["images"], seed=1)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory, trained_data: Path) -> Path:
    """The tiny config trained on `trained_data` (3 epochs of BCCD): weights that detect something, made once."""
    epochs = 3 if trained_data == BCCD else TRAINED_SYNTH["epochs"]
    return train_tiny(trained_data, tmp_path_factory.mktemp("trained_run"), epochs=epochs)


@pytest.fixture(scope="session")
def trained_models(trained_checkpoint: Path, trained_data: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained tiny model as checkpoint, FP32 ONNX and INT8 (ort flavour) ONNX."""
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions, quantize_int8
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(trained_checkpoint)
    folder = tmp_path_factory.mktemp("trained_models")
    fp32 = export_onnx(model, checkpoint["class_names"], folder / "model.onnx", ExportOptions()).path
    int8 = quantize_int8(fp32, trained_data, "ort", folder / "model-int8-ort.onnx", CalibrationOptions(images=32))
    return {"pt": trained_checkpoint, "fp32": fp32, "int8": int8}


@pytest.fixture(scope="session")
def gpu_models(trained_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
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

    model, checkpoint = load_model(train_tiny(trained_data, tmp_path_factory.mktemp("gpu_run"), epochs=3))
    folder = tmp_path_factory.mktemp("gpu_models")
    fp32 = export_onnx(model, checkpoint["class_names"], folder / names["fp32"], ExportOptions()).path
    int8 = quantize_int8(fp32, trained_data, "tensorrt", folder / names["int8"], CalibrationOptions(images=32))
    return {"fp32": fp32, "fp16": convert_fp16(fp32, folder / names["fp16"]), "int8": int8}


@pytest.fixture(autouse=True)
def no_runtime_recommendation(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`--runtime auto` reads a per-user file: tests point it at an empty place, so auto means ONNX Runtime unless a
    test writes a recommendation there (the user's own ~/.cache/scratchdet/runtime.json never counts)."""
    path = tmp_path_factory.mktemp("recommendation") / "runtime.json"
    monkeypatch.setenv("SCRATCHDET_RUNTIME_FILE", str(path))
    return path


@pytest.fixture
def onnx_reads(monkeypatch: pytest.MonkeyPatch):
    """Counts reads of .onnx files inside `with onnx_reads.during() as counted:` (benchmarks/studies/startup_cost.py
    Reads); the wrappers it puts on ONNX Runtime's session and TensorRT-RTX's build are undone after the test."""
    import onnxruntime

    from scratchdet.benchmarks.studies.startup_cost import Reads
    from scratchdet.export import tensorrt_rtx

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", onnxruntime.InferenceSession.__init__)
    monkeypatch.setattr(tensorrt_rtx, "build_rtx", tensorrt_rtx.build_rtx)
    return Reads()
