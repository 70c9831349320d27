import json
from pathlib import Path

import pytest

from scratchdet.export.engine_plan import (
    EnginePlanError,
    dla_supported,
    engine_paths,
    make_plan,
    precision_settings,
    profile_shapes,
    sidecar,
    tensorrt_major,
    trtexec_command,
)
from scratchdet.models.contract import EngineMismatchError, check_engine_compatible, read_sidecar

METADATA = {"input_size": 300, "precision": "fp32", "class_names": ["a", "b"], "score_threshold": 0.01,
            "max_det": 200}


def test_tensorrt_major_accepts_10_and_11_only():
    assert tensorrt_major("10.3.0.30") == 10
    assert tensorrt_major("11.0.1") == 11
    with pytest.raises(EnginePlanError, match="TensorRT 8.6.1 is not supported"):
        tensorrt_major("8.6.1")


def test_precision_settings_per_major():
    assert precision_settings("fp32", "fp32", 10) == (True, ())
    assert precision_settings("fp16", "fp16", 10) == (True, ())  # typed by the ONNX on both majors
    assert precision_settings("fp16", "fp16", 11) == (True, ())
    assert precision_settings("int8", "int8-tensorrt", 10) == (True, ())
    for major in (10, 11):  # no weak typing: the FP16 flag is deprecated since 10.12 and gone in 11
        with pytest.raises(EnginePlanError, match=r"needs an ONNX of precision fp16.*--precision fp16.*10\.12"):
            precision_settings("fp16", "fp32", major)
    with pytest.raises(EnginePlanError, match="--target tensorrt"):
        precision_settings("int8", "int8-ort", 10)  # asymmetric zero points: TensorRT refuses them
    with pytest.raises(EnginePlanError, match="unknown precision 'int4'"):
        precision_settings("int4", "fp32", 10)


def test_profile_shapes_vary_only_the_batch():
    assert profile_shapes(300, 1, 4, 8) == {"images": ([1, 3, 300, 300], [4, 3, 300, 300], [8, 3, 300, 300])}
    with pytest.raises(EnginePlanError, match="1 <= min <= opt <= max"):
        profile_shapes(300, 4, 2, 8)


def test_engine_paths_sit_beside_the_export_folder():
    engine, side, cache = engine_paths(Path("runs/x/export/model-fp16.onnx"), "fp16", 10)
    assert engine == Path("runs/x/engines/model-fp16.engine")  # the name the bundle's config and script use
    assert side == Path("runs/x/engines/model-fp16.json")
    assert cache == Path("runs/x/engines/timing-trt10.cache")


def test_trtexec_line_per_major():
    onnx = Path("runs/x/export/model-fp16.onnx")
    fp16 = {**METADATA, "precision": "fp16"}
    ten = make_plan(onnx, fp16, "fp16", "10.3", (1, 2, 8), 512)
    line = trtexec_command(ten)
    assert ten.network_flags == ("STRONGLY_TYPED",) and "--stronglyTyped" in line and "--fp16" not in line
    assert "--minShapes=images:1x3x300x300 --optShapes=images:2x3x300x300 --maxShapes=images:8x3x300x300" in line
    assert "--memPoolSize=workspace:512" in line and "--timingCacheFile=runs/x/engines/timing-trt10.cache" in line
    eleven = make_plan(onnx, fp16, "fp16", "11.4.1")
    assert eleven.strongly_typed and eleven.network_flags == ()  # STRONGLY_TYPED is deprecated and ignored on 11
    assert "--stronglyTyped" not in trtexec_command(eleven) and "--fp16" not in trtexec_command(eleven)
    assert "--profilingVerbosity=detailed" in line  # the layer detail gpu-check inspects, as the builder sets


def test_dla_needs_a_static_batch_and_a_version_with_dla():
    onnx = Path("runs/x/export/model-fp16.onnx")
    fp16 = {**METADATA, "precision": "fp16"}
    line = trtexec_command(make_plan(onnx, fp16, "fp16", "10.3.0.30", (2, 2, 2), dla_core=0))
    assert "--useDLACore=0 --allowGPUFallback" in line and "--maxShapes=images:2x3x300x300" in line
    assert make_plan(onnx, fp16, "fp16", "11.4.1", (1, 1, 1), dla_core=1).builder_flags == ("GPU_FALLBACK",)
    with pytest.raises(EnginePlanError, match=r"DLA needs a static batch \(min = opt = max\), got 1/1/8"):
        make_plan(onnx, fp16, "fp16", "10.3", (1, 1, 8), dla_core=0)
    for version in ("11.0.0", "11.3.1", "11.4.0.106", "10.8.0"):
        with pytest.raises(EnginePlanError, match=f"TensorRT {version} has no DLA"):
            make_plan(onnx, fp16, "fp16", version, (1, 1, 1), dla_core=0)
    assert dla_supported("10.7.0.23") and dla_supported("11.4.1") and dla_supported("11.5.0")


def test_engine_from_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(tmp_path):
    plan = make_plan(Path("runs/x/export/model.onnx"), METADATA, "fp32", "10.3.0")
    (tmp_path / "m.json").write_text(json.dumps(sidecar(plan, "10.3.0", "Orin", "8.7", "abc", 12.0, METADATA)))
    values = read_sidecar(tmp_path / "m.engine")  # what the writer writes, the reader takes
    check_engine_compatible("m.engine", values, "10.3.0", "Orin", "8.7")  # same: accepted
    check_engine_compatible("m.engine", values, "10.3.0.30", "Orin", "8.7")  # trtexec's 3 parts vs Python's 4
    with pytest.raises(EngineMismatchError, match=r"m.engine: built for TensorRT 10.3.0 \(running 11.0.0\).*trtexec"):
        check_engine_compatible("m.engine", values, "11.0.0", "Orin", "8.7")
    with pytest.raises(EngineMismatchError, match="running 10.4.0"):
        check_engine_compatible("m.engine", values, "10.4.0", "Orin", "8.7")
    with pytest.raises(EngineMismatchError, match=r"GPU Orin sm_8.7 \(running RTX 4090 sm_8.9\)"):
        check_engine_compatible("m.engine", values, "10.3.0", "RTX 4090", "8.9")


@pytest.mark.parametrize("version", ["10.3.0.30", "11.1.0"])
def test_fp32_engines_are_built_without_tf32(version, monkeypatch):
    onnx = Path("runs/x/export/model.onnx")
    fp32 = make_plan(onnx, METADATA, "fp32", version)
    assert fp32.cleared_builder_flags == ("TF32",) and "--noTF32" in trtexec_command(fp32).split()
    for precision, onnx_precision in (("fp16", "fp16"), ("int8", "int8-tensorrt")):
        plan = make_plan(onnx, {**METADATA, "precision": onnx_precision}, precision, version)
        assert plan.cleared_builder_flags == () and "--noTF32" not in trtexec_command(plan)
    # The Python builder clears the same flag: a stand-in `tensorrt` records the config calls.
    import types

    from scratchdet.export import tensorrt_build

    calls = []
    config = types.SimpleNamespace(
        set_memory_pool_limit=lambda *a: None, add_optimization_profile=lambda p: 0,
        create_timing_cache=lambda data: "cache", set_timing_cache=lambda cache, ignore_mismatch: True,
        set_flag=lambda flag: calls.append(("set", flag)), clear_flag=lambda flag: calls.append(("clear", flag)),
        profiling_verbosity=None)
    profile = types.SimpleNamespace(set_shape=lambda *a: None)
    builder = types.SimpleNamespace(create_builder_config=lambda: config, create_optimization_profile=lambda: profile)
    fake = types.SimpleNamespace(MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
                                 BuilderFlag=types.SimpleNamespace(TF32="TF32", GPU_FALLBACK="GPU_FALLBACK"),
                                 ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"))
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)
    tensorrt_build._configure(builder, fp32)
    assert calls == [("clear", "TF32")]
    assert config.profiling_verbosity == "DETAILED"  # gpu-check's int8-layers stage reads each layer's precision
