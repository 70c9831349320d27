from pathlib import Path

from scratchdet.runtime.bundle import build_script, deepstream_config

METADATA = {"input_size": 300, "precision": "fp32", "class_names": ["a", "b"], "score_threshold": 0.01,
            "max_det": 200}


def test_deepstream_config_and_build_script():
    config = deepstream_config(METADATA, "model-fp16.onnx", 2)
    assert "num-detected-classes=2" in config and "NvDsInferParseCustomEfficientNMS" in config
    assert "net-scale-factor=1.0" in config
    script = build_script(METADATA, Path("."))
    assert script.count("trtexec --onnx=") == 6  # 3 precisions x 2 majors
    assert '[ "$MAJOR" = "11" ] && trtexec --onnx=model-int8-tensorrt.onnx' in script


def test_bundle_holds_every_model_and_the_device_files(tiny_checkpoint, synth_data, tmp_path):
    import json
    import tarfile

    from scratchdet.export.contract import load_checked
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions
    from scratchdet.models.checkpoint import load_model
    from scratchdet.runtime.bundle import MODELS, make_bundle

    model, checkpoint = load_model(tiny_checkpoint)
    fp32 = export_onnx(model, checkpoint["class_names"], tmp_path / "export" / "model.onnx", ExportOptions()).path
    folder = make_bundle(fp32, synth_data, tmp_path / "bundle", CalibrationOptions(images=8, reduce_range=True))
    precisions = {name: load_checked(folder / file)[1]["precision"] for name, file in MODELS.items()}
    assert precisions == {"fp32": "fp32", "fp16": "fp16", "int8-tensorrt": "int8-tensorrt", "int8-ort": "int8-ort"}
    assert (folder / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    assert json.loads((folder / "metadata.json").read_text())["files"] == MODELS
    assert (folder / "build_engine.sh").stat().st_mode & 0o111
    assert "reduce_range=True" in (folder / "README.md").read_text()
    assert (folder / "board_runner.py").is_file() and not list(folder.glob("calibration-*"))
    with tarfile.open(folder.with_suffix(".tar.gz")) as archive:
        assert "bundle/model-int8-ort.onnx" in archive.getnames()
