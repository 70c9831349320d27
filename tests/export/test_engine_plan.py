import json
from pathlib import Path

import pytest
from scratchdet.export.engine_plan import (
    EngineMismatchError,
    EnginePlanError,
    check_engine_compatible,
    engine_paths,
    make_plan,
    precision_settings,
    profile_shapes,
    sidecar,
    tensorrt_major,
    trtexec_command,
)

METADATA = {"input_size": 300, "precision": "fp32", "class_names": ["a", "b"], "score_threshold": 0.01,
            "max_det": 200}


def test_tensorrt_major_accepts_10_and_11_only():
    assert tensorrt_major("10.3.0.30") == 10
    assert tensorrt_major("11.0.1") == 11
    with pytest.raises(EnginePlanError, match="TensorRT 8.6.1 is not supported"):
        tensorrt_major("8.6.1")


def test_precision_settings_per_major():
    assert precision_settings("fp32", "fp32", 10) == (True, ())
    assert precision_settings("fp16", "fp32", 10) == (False, ("FP16",))  # the 10.x builder flag
    assert precision_settings("fp16", "fp16", 11) == (True, ())  # typed by the ONNX
    assert precision_settings("int8", "int8-tensorrt", 10) == (True, ())
    with pytest.raises(EnginePlanError, match="TensorRT 11 has no FP16 flag"):
        precision_settings("fp16", "fp32", 11)
    with pytest.raises(EnginePlanError, match="--target tensorrt"):
        precision_settings("int8", "int8-ort", 10)  # asymmetric zero points: TensorRT refuses them
    with pytest.raises(EnginePlanError, match="unknown precision 'int4'"):
        precision_settings("int4", "fp32", 10)


def test_profile_shapes_vary_only_the_batch():
    assert profile_shapes(300, 1, 4, 8) == {"images": ([1, 3, 300, 300], [4, 3, 300, 300], [8, 3, 300, 300])}
    with pytest.raises(EnginePlanError, match="1 <= min <= opt <= max"):
        profile_shapes(300, 4, 2, 8)


def test_engine_paths_sit_beside_the_export_folder():
    engine, side, cache = engine_paths(Path("runs/x/export/model.onnx"), "fp16", 10)
    assert engine == Path("runs/x/engines/model-fp16-trt10.engine")
    assert side == Path("runs/x/engines/model-fp16-trt10.json")
    assert cache == Path("runs/x/engines/timing-trt10.cache")


def test_trtexec_line_per_major_and_dla():
    onnx = Path("runs/x/export/model.onnx")
    ten = trtexec_command(make_plan(onnx, METADATA, "fp16", "10.3", (1, 2, 8), 512, dla_core=0))
    assert "--fp16" in ten and "--useDLACore=0 --allowGPUFallback" in ten
    assert "--minShapes=images:1x3x300x300 --optShapes=images:2x3x300x300 --maxShapes=images:8x3x300x300" in ten
    assert "--memPoolSize=workspace:512" in ten and "--timingCacheFile=runs/x/engines/timing-trt10.cache" in ten
    eleven = trtexec_command(make_plan(onnx, {**METADATA, "precision": "fp16"}, "fp16", "11.0"))
    assert "--fp16" not in eleven and "--stronglyTyped" not in eleven  # 11 is always strongly typed
    with pytest.raises(EnginePlanError, match="DLA"):
        make_plan(onnx, METADATA, "fp32", "11.0", dla_core=0)


def test_engine_from_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command():
    plan = make_plan(Path("runs/x/export/model.onnx"), METADATA, "fp32", "10.3.0")
    values = json.loads(json.dumps(sidecar(plan, "10.3.0", "Orin", "8.7", "abc", 12.0, METADATA)))
    check_engine_compatible("m.engine", values, "10.3.0", "Orin", "8.7")  # same: accepted
    with pytest.raises(EngineMismatchError, match=r"m.engine: built for TensorRT 10.3.0 \(running 11.0.0\).*trtexec"):
        check_engine_compatible("m.engine", values, "11.0.0", "Orin", "8.7")
    with pytest.raises(EngineMismatchError, match=r"GPU Orin sm_8.7 \(running RTX 4090 sm_8.9\)"):
        check_engine_compatible("m.engine", values, "10.3.0", "RTX 4090", "8.9")
