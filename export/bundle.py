"""`scratchdet bundle`: one folder (and tarball) to copy to a Jetson or an ARM board.

Contents: the FP32, FP16, INT8 (TensorRT Q/DQ) and INT8 (ONNX Runtime) ONNX models, labels.txt, a
DeepStream nvinfer config, metadata.json, build_engine.sh (trtexec, TensorRT 10 or 11 detected on the
device), board_runner.py and a README; for our output layout also the source and Makefile of the nvinfer
bounding-box parser (deepstream/), for the tfssd layout nothing to compile (stock DeepStream's parser).
Engines are built on the device: they are tied to its GPU and TensorRT version. The folder is written beside
the destination under a temporary name and moved into place when complete, so a failed run never leaves
half a bundle over an old one.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import tarfile
from pathlib import Path

from scratchdet.export.engine_plan import make_plan, trtexec_arguments, trtexec_command
from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
from scratchdet.models.contract import (
    DEFAULT_LAYOUT,
    ENGINE_PRECISIONS,
    LAYOUTS,
    c_header,
    contract_document,
    engine_name,
    load_checked,
)
from scratchdet.models.files import atomic_folder, atomic_write, check_destination, write_text
from scratchdet.train.data.load import load_dataset

MODELS = {"fp32": "model.onnx", "fp16": "model-fp16.onnx", "int8-tensorrt": "model-int8-tensorrt.onnx",
          "int8-ort": "model-int8-ort.onnx"}
ENGINE_SOURCE = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-tensorrt"}
ENGINES = {precision: f"engines/{engine_name('model', precision)}" for precision in ENGINE_PRECISIONS}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode values
PARSER_FUNCTION = "NvDsInferParseCustomScratchDet"
PARSER_LIBRARY = "deepstream/libnvdsinfer_scratchdet.so"
# Device files the bundle copies (files, not imports: runtime/ stays downstream of export/); they live in
# runtime/, which owns what runs on the device.
RUNTIME_FILES = Path(__file__).parents[1] / "runtime"
PARSER_SOURCES = RUNTIME_FILES / "deepstream"
BOARD_RUNNER = RUNTIME_FILES / "board_runner.py"
# The stock parser for the tfssd layout: NvDsInferParseCustomTfSSD in libnvds_infercustomparser.so, which the
# SDK installs in its lib/ (sources/libs/nvdsinfer_customparser/Makefile: `cp $(TARGET_LIB) ../../../lib`);
# NVIDIA's own configs load it from this path (deepstream_reference_apps/deepstream_app_tao_configs/
# config_infer_primary_*.txt, DeepStream 6.2, mirror github.com/hiennguyen9874/deepstream-sources).
STOCK_PARSER_FUNCTION = "NvDsInferParseCustomTfSSD"
STOCK_PARSER_LIBRARY = "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser.so"
TRTEXEC_JETPACK = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs trtexec, not on PATH


def parser_of(layout: str) -> tuple[str, str]:
    """(parse-bbox-func-name, custom-lib-path) for a model of `layout`."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown output layout '{layout}': choose {', '.join(LAYOUTS)}")
    return (PARSER_FUNCTION, PARSER_LIBRARY) if layout == DEFAULT_LAYOUT else (STOCK_PARSER_FUNCTION,
                                                                               STOCK_PARSER_LIBRARY)


def deepstream_config(metadata: dict, precision: str, score_threshold: float) -> str:
    """nvinfer config for the engine of `precision`; GLib key file syntax (comments are whole lines)."""
    onnx = MODELS[ENGINE_SOURCE[precision]]
    layout = metadata.get("output_layout", DEFAULT_LAYOUT)
    function, library = parser_of(layout)
    where = (f"# {library}: build it on the device with `make -C deepstream` (see README.md)."
             if layout == DEFAULT_LAYOUT else
             f"# {function} ships with DeepStream in {library}; nothing to build. Labels 0-based, no background.")
    return "\n".join([
        f"# DeepStream nvinfer config for {metadata['config_name']}, {precision.upper()} engine.",
        "# The ONNX normalises inside and takes RGB 0-255: scale 1, no offsets, plain resize as in training.",
        "# network-mode: 0 FP32, 1 INT8 (from the Q/DQ ONNX), 2 FP16. cluster-mode 4: none, NMS is in the graph.",
        where,
        "[property]",
        "gpu-id=0",
        f"onnx-file={onnx}",
        f"model-engine-file={ENGINES[precision]}",
        "labelfile-path=labels.txt",
        "batch-size=1",
        "network-type=0",
        f"network-mode={NETWORK_MODE[precision]}",
        f"num-detected-classes={len(metadata['class_names'])}",
        "net-scale-factor=1.0",
        "offsets=0;0;0",
        "model-color-format=0",
        "maintain-aspect-ratio=0",
        "cluster-mode=4",
        f"output-blob-names={';'.join(LAYOUTS[layout])}",
        f"parse-bbox-func-name={function}",
        f"custom-lib-path={library}",
        "",
        "# Deployment score threshold (evaluation uses the ONNX's own, lower one); topk caps objects per frame.",
        "[class-attrs-all]",
        f"pre-cluster-threshold={score_threshold:g}",
        f"topk={metadata['max_det']}",
        "",
    ])


SCRIPT_HEAD = r"""#!/usr/bin/env bash
# Builds this bundle's TensorRT engines on the device (an engine is tied to its GPU and TensorRT version).
#   ./build_engine.sh [fp32] [fp16] [int8]        default: all three
# trtexec: $TRTEXEC if set, else trtexec on PATH, else $TRTEXEC_JETPACK (default @JETPACK@, where
# JetPack installs it, off PATH). Writes engines/model-PRECISION.engine, the name config_infer_primary.txt and
# `scratchdet predict/bench` use, and beside it engines/model-PRECISION.json: the sidecar (TensorRT version,
# GPU, model metadata) without which `scratchdet` refuses an engine.
set -euo pipefail
cd "$(dirname "$0")"

JETPACK_TRTEXEC="${TRTEXEC_JETPACK:-@JETPACK@}"
if [ -n "${TRTEXEC:-}" ]; then
    FOUND="$TRTEXEC"
elif command -v trtexec >/dev/null 2>&1; then
    FOUND="$(command -v trtexec)"
else
    FOUND="$JETPACK_TRTEXEC"
fi
if [ ! -x "$FOUND" ]; then
    echo "trtexec not found (looked at \$TRTEXEC, on PATH and at $JETPACK_TRTEXEC); set TRTEXEC=/path/to/trtexec" >&2
    exit 1
fi
# trtexec prints "&&&& RUNNING TensorRT.trtexec [TensorRT v100300]" (v + major*10000 + minor*100 + patch).
CODE="$("$FOUND" 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n 1 | grep -o '[0-9]*$' || true)"
if [ -z "$CODE" ]; then
    echo "$FOUND printed no 'TensorRT vNNNNNN' banner: is it trtexec?" >&2
    exit 1
fi
if [ "$CODE" -ge 100000 ]; then MAJOR=$((CODE / 10000)); else MAJOR=$((CODE / 1000)); fi
case "$MAJOR" in
    10 | 11) ;;
    *) echo "$FOUND is TensorRT $MAJOR; this bundle needs TensorRT 10 or 11" >&2; exit 1 ;;
esac
mkdir -p engines

json_string() {
    local text="${1//\\/\\\\}"
    printf '"%s"' "${text//\"/\\\"}"
}

# build PRECISION ONNX REBUILD_COMMAND TRTEXEC_ARGUMENTS...: engine and sidecar, each renamed into place when complete
build() {
    local precision="$1" onnx="$2" command="$3"
    shift 3
    local engine="engines/model-$precision.engine" sidecar="engines/model-$precision.json"
    local log="engines/model-$precision.log"
    echo "building $engine from $onnx with $FOUND (TensorRT $MAJOR)"
    if ! "$FOUND" --onnx="$onnx" --saveEngine="$engine.partial" "$@" >"$log" 2>&1; then
        echo "trtexec failed for $engine; the end of $log:" >&2
        tail -n 20 "$log" >&2
        rm -f "$engine.partial"
        return 1
    fi
    if [ ! -s "$engine.partial" ]; then
        echo "trtexec wrote no engine for $engine; see $log" >&2
        return 1
    fi
    local version gpu capability sha
    version="$(sed -n 's/.*TensorRT version: *\([0-9.]*\).*/\1/p' "$log" | head -n 1)"
    gpu="$(sed -n 's/.*Selected Device: *//p' "$log" | head -n 1 | tr -d '\r')"
    capability="$(sed -n 's/.*Compute Capability: *//p' "$log" | head -n 1 | tr -d '\r')"
    if [ -z "$version" ] || [ -z "$gpu" ] || [ -z "$capability" ]; then
        echo "$log lacks the 'TensorRT version', 'Selected Device' or 'Compute Capability' line" >&2
        return 1
    fi
    sha="$(sha256sum "$onnx" | cut -d ' ' -f 1)"
    {
        printf '{"tensorrt_version": %s, "gpu_name": %s, ' "$(json_string "$version")" "$(json_string "$gpu")"
        printf '"compute_capability": %s, ' "$(json_string "$capability")"
        printf '"precision": %s, "onnx": %s, ' "$(json_string "$precision")" "$(json_string "$onnx")"
        printf '"onnx_sha256": %s, ' "$(json_string "$sha")"
        printf '"built_by": "build_engine.sh", "trtexec": %s, "model_metadata": ' "$(json_string "$command")"
        cat metadata.json
        printf '}\n'
    } >"$sidecar.partial"
    mv "$engine.partial" "$engine"
    mv "$sidecar.partial" "$sidecar"
    echo "  $engine and $sidecar"
}

if [ "$#" -gt 0 ]; then PRECISIONS=("$@"); else PRECISIONS=(fp32 fp16 int8); fi
for precision in "${PRECISIONS[@]}"; do
    case "$MAJOR-$precision" in
"""


def build_script(metadata: dict, max_batch: int = 8) -> str:
    """build_engine.sh: finds trtexec (JetPack path included), reads its major, builds engines and sidecars."""
    cases = []
    for precision, source in ENGINE_SOURCE.items():
        onnx = Path(MODELS[source])
        for major in (10, 11):
            plan = make_plan(onnx, {**metadata, "precision": source}, precision, f"{major}.0", (1, 1, max_batch),
                             out=Path(ENGINES[precision]))
            arguments = " ".join(shlex.quote(a) for a in trtexec_arguments(plan)[2:])  # without --onnx/--saveEngine
            cases.append(f"        {major}-{precision}) build {precision} {shlex.quote(onnx.name)} "
                         f"{shlex.quote(trtexec_command(plan))} {arguments} ;;")
    tail = ["        *) echo \"unknown precision '$precision': choose fp32, fp16 or int8\" >&2; exit 1 ;;",
            "    esac", "done", 'echo "engines written to $(pwd)/engines"', ""]
    return SCRIPT_HEAD.replace("@JETPACK@", TRTEXEC_JETPACK) + "\n".join(cases + tail)


OUTPUTS_TEXT = {
    "scratchdet": "num_dets [B,1] int32, det_boxes [B,K,4] x1,y1,x2,y2 input pixels, det_scores [B,K], det_classes "
                  "[B,K] int32 (0-based into labels.txt)",
    "tfssd": "num_detections [B,1], detection_boxes [B,K,4] y1,x1,y2,x2 normalised to the input size, "
             "detection_scores [B,K], detection_classes [B,K] (0-based into labels.txt), all float32: the outputs "
             "stock DeepStream's NvDsInferParseCustomTfSSD reads",
}
PARSER_ROW = {"scratchdet": "| deepstream/ | source and Makefile of the nvinfer parser `{parser}`; "
                             "scratchdet_contract.h: its output names |\n",
              "tfssd": ""}
DEEPSTREAM = {"scratchdet": """## DeepStream

    make -C deepstream                # builds deepstream/libnvdsinfer_scratchdet.so against the SDK headers
    ./build_engine.sh fp16            # optional: otherwise nvinfer builds the engine from model-fp16.onnx
    deepstream-app ... (config-file=config_infer_primary.txt in its [primary-gie] group)

Why a parser of our own: none of the stock parsers in `libnvds_infercustomparser.so` reads these outputs
as they are. Facts, from the SDK's `sources/libs/nvdsinfer_customparser/nvdsinfer_custombboxparser.cpp`
(read in the DeepStream 5.1 and 6.x/7.0 sources, public mirrors github.com/mdegans/deepstream-5.1 and
github.com/hiennguyen9874/deepstream-sources):
- it defines NvDsInferParseCustomResnet, TfSSD, NMSTLT, BatchedNMSTLT, MrcnnTLT(V2), EfficientDetTAO and a few
  more TAO parsers; `NvDsInferParseCustomEfficientNMS` exists only in forks that patch the SDK;
- `NvDsInferParseCustomBatchedNMSTLT` takes the four outputs by index (0 count int32, 1 boxes, 2 scores,
  3 classes), reads the classes as **float32**, multiplies the boxes by the network width/height (so it
  expects boxes **normalised to 0..1**, not pixels), applies class 0's threshold to every class, and keeps at
  most 201 objects;
- `NvDsInferParseCustomTfSSD` looks outputs up by name (num_detections, detection_boxes, ...) as float32
  with y1,x1,y2,x2 normalised boxes.
`{parser}` (deepstream/nvdsinfer_scratchdet.cpp) reads num_dets/det_boxes/det_scores/det_classes **by
name and type** (int32 count and classes, float32 pixel boxes), applies each class's
`pre-cluster-threshold`, clips boxes to the network size and drops empty ones. The project compiles this
exact file in its tests and runs it on ONNX Runtime outputs of a trained model.
""",
              "tfssd": """## DeepStream

    ./build_engine.sh fp16            # optional: otherwise nvinfer builds the engine from model-fp16.onnx
    deepstream-app ... (config-file=config_infer_primary.txt in its [primary-gie] group)

Nothing to compile: the outputs are the layout of `{parser}`, which DeepStream ships in
`{library}`. What that parser does, from the SDK's
`sources/libs/nvdsinfer_customparser/nvdsinfer_custombboxparser.cpp` (DeepStream 5.1 and 6.2 sources, public
mirrors github.com/mdegans/deepstream-5.1 and github.com/hiennguyen9874/deepstream-sources): it finds
num_detections, detection_boxes, detection_scores and detection_classes by name, only as FLOAT; reads the count
from num_detections' first value (at most K); uses the class id as is, so labels.txt has no background line and
class ids are 0-based; skips a row scoring below its class's `pre-cluster-threshold` (or whose class is not
below `num-detected-classes`); multiplies the y1,x1,y2,x2 boxes by the network height/width, clips them to
[0, width-1] x [0, height-1] and drops boxes left empty. The project runs a line-by-line Python rendering of
it on ONNX Runtime outputs of a trained model in its tests: the same detections as the default layout's.
""",
}


README = """# {name}: deployable bundle

Classes: {classes}. Input: RGB, 0-255, {size}x{size} (normalisation inside the graph).
Outputs ({layout} layout): {outputs}. Deployment score threshold {conf:g} (in config_infer_primary.txt and
metadata.json: `deploy_score_threshold`); the ONNX's own threshold ({eval_conf:g}, up to {max_det} detections)
is the evaluation one, for mAP.

| file | use |
|---|---|
| model.onnx | FP32, any ONNX Runtime or TensorRT |
| model-fp16.onnx | FP16 network (I/O, decoding, NMS in FP32): the FP16 engine on TensorRT 10 and 11 |
| model-int8-tensorrt.onnx | symmetric Q/DQ INT8: the INT8 engine on TensorRT 10 and 11 |
| model-int8-ort.onnx | U8S8 Q/DQ INT8: ONNX Runtime on x86 and ARM CPUs |
| build_engine.sh | builds engines/model-{{fp32,fp16,int8}}.engine + sidecar .json with trtexec on the device |
| config_infer_primary.txt | DeepStream nvinfer config (FP16 engine, engines/model-fp16.engine) |
{parser_row}| board_runner.py | runs any of the ONNX models with numpy + onnxruntime only |
| contract.json | the ONNX contract (input, output names, metadata keys): read by board_runner.py without scratchdet |

## Jetson / TensorRT

    ./build_engine.sh                 # or: ./build_engine.sh fp16
    scratchdet predict IMAGE --model engines/model-fp16.engine     # with the project installed

The script uses `$TRTEXEC`, else `trtexec` on PATH, else `{jetpack}` (JetPack's place, off PATH;
override with `TRTEXEC_JETPACK`). Every engine is strongly typed and takes its precision from its ONNX
(the FP16 builder flag is deprecated since TensorRT 10.12 and removed in 11). Engines are tied to the GPU
and the TensorRT version; the sidecar records both and `scratchdet` refuses a mismatch with the rebuild command.

{deepstream}The nvinfer config keys and value types follow `gstnvinfer_property_parser.cpp` (GLib key file: comments
only on whole lines); the project's tests read the file with GLib itself.

## ARM board (aarch64, ONNX Runtime: Raspberry Pi class, Jetson CPU, Graviton)

    pip install onnxruntime numpy opencv-python-headless
    python board_runner.py model-int8-ort.onnx photo.jpg detections.json

`board_runner.py` needs only numpy and onnxruntime (opencv for image files). With the whole project
installed, `scratchdet predict IMAGE --model model-int8-ort.onnx` draws the boxes too.

## INT8 portability, as measured

The INT8 (ort) model was quantised with reduce_range={reduce_range} ({weights}). {portability}
FP32 gave the same detections on the emulated ARM cores as on x86 (boxes within 1.5e-5 px, scores within
2.2e-7). Measured with aarch64 ONNX Runtime under qemu (Cortex-A53, A72, A76, Neoverse-N1) against a VNNI
x86 host; emulation says nothing about speed.
"""

PORTABILITY_7BIT = (
    "7-bit weights avoid the int16 saturation of x86 CPUs without VNNI (AVX2 only). Detection counts were "
    "equal on every core; the detections were bit-identical for the demo model and both trained BCCD models, "
    "but one test model reordered a few near-tied detections (a swapped pair, score difference up to 0.17): "
    "ONNX Runtime's x86 and ARM kernels round a residual add differently when a value lies within about 1e-5 "
    "of a rounding tie. Expect the same detections up to the order of near ties, not bit-identical output on "
    "every CPU.")
PORTABILITY_8BIT = (
    "Full 8-bit weights: x86 CPUs without VNNI (AVX2 only) saturate u8*s8 products to int16 and can give other "
    "detections; on VNNI x86 and ARM, expect the same detections up to the order of near ties.")


def _fill(stage: Path, fp32_onnx: Path, data: str | Path, metadata: dict, calibration: CalibrationOptions,
          score_threshold: float, max_batch: int) -> None:
    shutil.copyfile(fp32_onnx, stage / MODELS["fp32"])
    convert_fp16(stage / MODELS["fp32"], stage / MODELS["fp16"])
    for target in ("tensorrt", "ort"):
        quantize_int8(stage / MODELS["fp32"], data, target, stage / MODELS[f"int8-{target}"], calibration,
                      cache_dir=fp32_onnx.parent)
    write_text(stage / "labels.txt", "\n".join(metadata["class_names"]) + "\n")
    write_text(stage / "config_infer_primary.txt", deepstream_config(metadata, "fp16", score_threshold))
    write_text(stage / "metadata.json", json.dumps(
        {**metadata, "deploy_score_threshold": score_threshold, "files": MODELS, "engines": ENGINES}, indent=2))
    script = stage / "build_engine.sh"
    write_text(script, build_script(metadata, max_batch))
    script.chmod(0o755)
    if metadata["output_layout"] == DEFAULT_LAYOUT:  # the tfssd layout uses the parser DeepStream ships
        shutil.copytree(PARSER_SOURCES, stage / "deepstream", ignore=shutil.ignore_patterns("*.so", "*.tmp"))
        write_text(stage / "deepstream" / "scratchdet_contract.h", c_header())
    shutil.copyfile(BOARD_RUNNER, stage / "board_runner.py")
    write_text(stage / "contract.json", json.dumps(contract_document(), indent=2))
    portability = PORTABILITY_7BIT if calibration.reduce_range else PORTABILITY_8BIT
    layout = metadata["output_layout"]
    function, library = parser_of(layout)
    sections = {"outputs": OUTPUTS_TEXT[layout], "parser_row": PARSER_ROW[layout].format(parser=function),
                "deepstream": DEEPSTREAM[layout].format(parser=function, library=library)}
    write_text(stage / "README.md", README.format(
        name=metadata["config_name"], size=metadata["input_size"], classes=", ".join(metadata["class_names"]),
        conf=score_threshold, eval_conf=metadata["score_threshold"], max_det=metadata["max_det"],
        jetpack=TRTEXEC_JETPACK, reduce_range=calibration.reduce_range, layout=layout,
        weights="7-bit weights" if calibration.reduce_range else "8-bit weights", portability=portability,
        **sections))
    for calibration_file in stage.glob("calibration-*.json"):
        calibration_file.unlink()


def make_bundle(fp32_onnx: str | Path, data: str | Path, out: str | Path, calibration: CalibrationOptions,
                tarball: bool = True, score_threshold: float | None = None, max_batch: int = 8) -> Path:
    """Write the bundle folder (and out.tar.gz); returns the folder.

    Args:
        score_threshold: the deployment score threshold (DeepStream's pre-cluster-threshold, recorded in
            metadata.json); default the ONNX's `deploy_score_threshold` (the model's postprocess config).
        max_batch: the engines' largest batch (profile 1/1/max_batch).

    Raises:
        ValueError: the ONNX is not the FP32 export, or a threshold outside [0, 1].
        FileExistsError: `out` exists and is not a bundle (it would be replaced).
    """
    fp32_onnx, out = Path(fp32_onnx), Path(out)
    check_destination(out, folder=True)
    if tarball:
        check_destination(out.with_suffix(".tar.gz"))
    _, metadata = load_checked(fp32_onnx)
    if metadata["precision"] != "fp32":
        raise ValueError(f"{fp32_onnx}: the bundle starts from the FP32 export, this is {metadata['precision']}")
    threshold = metadata["deploy_score_threshold"] if score_threshold is None else score_threshold
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"deployment score threshold {threshold} is outside [0, 1]")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "metadata.json").is_file())):
        raise FileExistsError(f"{out}: exists and is not a bundle; choose another --out")
    load_dataset(data, "train")  # the calibration images: a bad --data is refused before the staging folder
    # the folder takes its place first, then the tarball (inner context first): both or neither are new
    with atomic_write(out.with_suffix(".tar.gz")) if tarball else contextlib.nullcontext() as archive_path, \
            atomic_folder(out) as stage:
        _fill(stage, fp32_onnx, data, metadata, calibration, threshold, max_batch)
        if archive_path is not None:
            with tarfile.open(archive_path, "w:gz") as archive:
                archive.add(stage, arcname=out.name)
    return out
