"""TensorRT for RTX as the real parser and builder of every ONNX we ship: every config, FP32, FP16, INT8-tensorrt.

The builds run in `make test` (TensorRT-RTX is in the dev extra; no GPU needed). Per file the test prints build
time, engine size and layers (`pytest -s` shows them).
"""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from scratchdet.export.engine_layers import convolution_precisions
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
from scratchdet.export.tensorrt_rtx import (
    TARGETS,
    RtxBuild,
    RtxTargetError,
    build_rtx,
    parse_targets,
    rebuild_command,
    rtx_engine_path,
    rtx_sidecar,
    write_rtx_engine,
)
from scratchdet.models.config import CONFIG_DIR, load_model_config
from scratchdet.models.ssd import SSD

CONFIGS = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))

needs_rtx = pytest.mark.skipif(not __import__("importlib").util.find_spec("tensorrt_rtx_bindings"),
                               reason="TensorRT for RTX is not installed (pip install -e '.[dev]' pins it)")


def test_targets_are_read_and_checked():
    assert parse_targets("SM86, sm_89,120,SM86") == ("SM86", "SM89", "SM120")
    assert parse_targets("") == ()
    with pytest.raises(RtxTargetError, match=r"'sm87': TensorRT-RTX cannot build for SM87 \(Jetson Orin: build on"):
        parse_targets("sm87")
    with pytest.raises(RtxTargetError, match="cannot build for SM61; it builds for SM75, SM80"):
        parse_targets("SM61")


def test_engine_path_sidecar_and_rebuild_command(tmp_path):
    onnx_path = tmp_path / "run" / "export" / "model-fp16.onnx"
    onnx_path.parent.mkdir(parents=True)
    onnx_path.write_bytes(b"onnx")
    assert rtx_engine_path(onnx_path, "fp16") == tmp_path / "run" / "engines" / "model-fp16.rtx.engine"
    build = RtxBuild("m.onnx", ("SM86", "SM89"), (), (), 1.5, b"x" * 10)
    values = rtx_sidecar(build, onnx_path, "fp16", "1.7.1.116", (1, 1, 8), 128, {"input_size": 128})
    assert values["runtime"] == "tensorrt-rtx" and values["targets"] == ["SM86", "SM89"]
    assert values["compute_capability"] == "86,89" and values["engine_bytes"] == 10
    assert values["profile"] == {"images": [[1, 3, 128, 128], [1, 3, 128, 128], [8, 3, 128, 128]]}
    assert values["trtexec"] == rebuild_command(onnx_path, "fp16", ("SM86", "SM89"), (1, 1, 8))
    assert "--runtime tensorrt-rtx" in values["trtexec"] and "--sm SM86,SM89" in values["trtexec"]
    engine = write_rtx_engine(build, tmp_path / "e" / "m.rtx.engine", values)
    assert engine.read_bytes() == b"x" * 10
    assert json.loads((tmp_path / "e" / "m.rtx.json").read_text())["targets"] == ["SM86", "SM89"]
    failed = RtxBuild("m.onnx", (), (), ("no runners",), 0.1)
    with pytest.raises(RuntimeError, match=r"m.onnx: no engine to write \(parse OK, build \(default "
                       r"targets\) FAILED: no runners\)"):
        write_rtx_engine(failed, tmp_path / "f.engine", values)
    assert not (tmp_path / "f.engine").exists()


def export_config(name: str, data, folder) -> dict:
    """{precision: ONNX} of a shipped config with random weights, exported and quantised as `scratchdet` does."""
    torch.manual_seed(0)
    config = load_model_config(name)
    fp32 = export_onnx(SSD(config).eval(), [f"c{i}" for i in range(1, config.num_classes)], folder / "model.onnx",
                       ExportOptions()).path
    return {"fp32": fp32, "fp16": convert_fp16(fp32, folder / "model-fp16.onnx"),
            "int8": quantize_int8(fp32, data, "tensorrt", folder / "model-int8-tensorrt.onnx",
                                  CalibrationOptions(images=2))}


def _report(name: str, precision: str, build: RtxBuild) -> None:
    print(f"\n{name:22s} {precision:5s} {build.verdict()}")


@needs_rtx
@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_parses_and_builds(synth_data, tmp_path, name):
    for precision, path in export_config(name, synth_data, tmp_path).items():
        model = onnx.load(str(path))
        build = build_rtx(path, ("SM86",))
        _report(name, precision, build)
        assert build.parsed, build.verdict()
        assert not any(n.op_type == "NonMaxSuppression" for n in model.graph.node), f"{name} {precision}: ONNX " \
            "NonMaxSuppression has no TensorRT-RTX kernel (NVIDIA/TensorRT-RTX#5); the NMS tail must be plain ops"
        assert build.built, build.verdict()
        layers = list(build.layers)
        convolutions, not_int8 = convolution_precisions(layers)
        # every engine convolution is an ONNX Conv; VGG's engine has 33 for its 35 Convs (measured: TensorRT-RTX
        # turns two of them into other layer kinds), so the count is bounded, not equal
        assert 0 < convolutions <= sum(n.op_type == "Conv" for n in model.graph.node), name
        if precision == "int8":
            assert not_int8 == [], f"{name}: {len(not_int8)} of {convolutions} convolutions not INT8: {not_int8[:3]}"
        else:
            assert len(not_int8) == convolutions


@needs_rtx
def test_a_parse_error_is_returned_not_raised():
    broken = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("NonZero", ["x"], ["y"])], "nz",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [2, None])]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    build = build_rtx(broken, ("SM86",))
    assert not build.parsed and not build.built and build.layers == ()
    assert build.verdict().startswith("parse FAILED (1 error(s)): ")
    with pytest.raises(RtxTargetError, match="unknown TensorRT-RTX targets"):
        build_rtx(broken, ("SM87",))
    assert set(TARGETS) >= {"SM86", "SM89"}


@pytest.fixture(scope="module")
def tiny_fp32(tiny_checkpoint, tmp_path_factory):
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    path = tmp_path_factory.mktemp("rtx_cli") / "export" / "model.onnx"
    path.parent.mkdir()
    return export_onnx(model, checkpoint["class_names"], path, ExportOptions()).path


def test_engine_cli_refuses_bad_requests_before_building(tiny_fp32, caplog):
    from scratchdet.cli import main

    assert main(["engine", "--model", str(tiny_fp32), "--precision", "fp32", "--sm", "SM86"]) == 1
    assert "--sm names TensorRT-RTX targets: add --runtime tensorrt-rtx" in caplog.text
    assert main(["engine", "--runtime", "tensorrt-rtx", "--model", str(tiny_fp32), "--precision", "fp32",
                 "--sm", "SM87"]) == 1
    assert "TensorRT-RTX cannot build for SM87 (Jetson Orin" in caplog.text
    assert main(["engine", "--runtime", "tensorrt-rtx", "--model", str(tiny_fp32), "--precision", "int8"]) == 1
    assert "model.onnx: an int8 engine needs an ONNX of precision int8-tensorrt, this one is fp32" in caplog.text
    assert not (tiny_fp32.parent.parent / "engines").exists()


@needs_rtx
def test_engine_cli_builds_an_rtx_engine_and_sidecar(tiny_fp32, capsys, caplog):
    from scratchdet.cli import main

    code = main(["engine", "--runtime", "tensorrt-rtx", "--model", str(tiny_fp32), "--precision", "fp32",
                 "--sm", "SM86,SM89", "--max-batch", "4"])
    captured = capsys.readouterr()
    engine = tiny_fp32.parent.parent / "engines" / "model-fp32.rtx.engine"
    assert code == 0, caplog.text
    assert "parse OK, build (SM86, SM89) OK" in captured.out
    values = json.loads(engine.with_suffix(".json").read_text())
    assert values["targets"] == ["SM86", "SM89"] and values["runtime"] == "tensorrt-rtx"
    assert values["tensorrt_version"].startswith("1.7.") and values["engine_bytes"] == engine.stat().st_size
    assert values["profile"]["images"][2] == [4, 3, 128, 128]


@needs_rtx
def test_the_bundle_carries_rtx_engines(tiny_fp32, synth_data, tmp_path):
    from scratchdet.export.bundle import make_bundle

    folder = make_bundle(tiny_fp32, synth_data, tmp_path / "bundle", CalibrationOptions(images=4), tarball=False,
                         max_batch=2, rtx_targets=("SM89",))
    engines = json.loads((folder / "metadata.json").read_text())["rtx_engines"]
    assert engines == {p: f"engines/model-{p}.rtx.engine" for p in ("fp32", "fp16", "int8")}
    for precision, engine in engines.items():
        values = json.loads((folder / engine).with_suffix(".json").read_text())
        assert values["targets"] == ["SM89"] and values["precision"] == precision
        assert values["onnx"] == {"fp32": "model.onnx", "fp16": "model-fp16.onnx",
                                  "int8": "model-int8-tensorrt.onnx"}[precision]
        assert values["engine_bytes"] == (folder / engine).stat().st_size > 0
