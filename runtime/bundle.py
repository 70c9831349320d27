"""`scratchdet bundle`: one folder (and tarball) to copy to a Jetson or an ARM board.

Contents: the FP32, FP16, INT8 (TensorRT Q/DQ) and INT8 (ONNX Runtime) ONNX models, labels.txt, a
DeepStream nvinfer config for the num_dets/det_* layout, metadata.json, build_engine.sh (trtexec,
TensorRT 10 or 11 detected on the device) and a README. Engines are built on the device: they are
tied to its GPU and TensorRT version.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

from scratchdet.export.contract import load_checked
from scratchdet.export.engine_plan import make_plan, trtexec_command
from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8

MODELS = {"fp32": "model.onnx", "fp16": "model-fp16.onnx", "int8-tensorrt": "model-int8-tensorrt.onnx",
          "int8-ort": "model-int8-ort.onnx"}
ENGINE_SOURCE = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-tensorrt"}


def deepstream_config(metadata: dict, onnx_name: str, network_mode: int) -> str:
    """nvinfer [property] config; normalisation is in the graph, so scale 1 and no offsets."""
    return "\n".join([
        "[property]",
        "gpu-id=0",
        f"onnx-file={onnx_name}",
        f"model-engine-file={Path(onnx_name).stem}.engine",
        "labelfile-path=labels.txt",
        "batch-size=1",
        f"network-mode={network_mode}  # 0 FP32, 1 INT8 (from the Q/DQ ONNX), 2 FP16",
        f"num-detected-classes={len(metadata['class_names'])}",
        "net-scale-factor=1.0  # the ONNX normalises inside: it takes RGB 0-255",
        "offsets=0;0;0",
        "model-color-format=0  # RGB",
        "maintain-aspect-ratio=0  # plain resize, as in training",
        "cluster-mode=4  # NMS is already in the graph",
        "parse-bbox-func-name=NvDsInferParseCustomEfficientNMS",
        "custom-lib-path=/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser.so",
        "",
        "[class-attrs-all]",
        f"pre-cluster-threshold={metadata['score_threshold']}",
        f"topk={metadata['max_det']}",
        "",
    ])


def build_script(metadata: dict, folder: Path) -> str:
    """A shell script that builds the engines with trtexec, choosing flags by the TensorRT major found."""
    lines = ["#!/usr/bin/env bash", "# Build TensorRT engines on this device (engines are tied to GPU and version).",
             "set -euo pipefail", 'cd "$(dirname "$0")"',
             'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
             'MAJOR=$("$TRTEXEC" 2>&1 | grep -o "TensorRT v[0-9]*" | head -1 | grep -o "[0-9]*$" || true)',
             'MAJOR="${MAJOR:0:2}"',
             'case "$MAJOR" in 10|11) ;; *) echo "TensorRT 10 or 11 needed, found: ${MAJOR:-none}" >&2; exit 1;; esac',
             "mkdir -p engines"]
    for precision, source in ENGINE_SOURCE.items():
        onnx = Path(MODELS[source])
        for major in (10, 11):
            plan = make_plan(onnx, {**metadata, "precision": source}, precision, f"{major}.0",
                             out=Path("engines") / f"{onnx.stem}-{precision}.engine")
            lines.append(f'[ "$MAJOR" = "{major}" ] && {trtexec_command(plan)}')
    lines.append('echo "engines written to $(pwd)/engines"')
    return "\n".join(lines) + "\n"


README = """# {name}: deployable bundle

Classes: {classes}. Input: RGB, 0-255, {size}x{size} (normalisation inside the graph).
Outputs: num_dets [B,1] int32, det_boxes [B,K,4] x1,y1,x2,y2 input pixels, det_scores [B,K], det_classes [B,K]
int32 (0-based into labels.txt).

| file | use |
|---|---|
| model.onnx | FP32, any ONNX Runtime or TensorRT |
| model-fp16.onnx | FP16 network (I/O, decoding, NMS in FP32): TensorRT 11 FP16 |
| model-int8-tensorrt.onnx | symmetric Q/DQ INT8: TensorRT 10/11 INT8 |
| model-int8-ort.onnx | U8S8 Q/DQ INT8: ONNX Runtime on x86 and ARM CPUs |
| config_infer_primary.txt | DeepStream nvinfer config (FP16 engine) |
| build_engine.sh | builds the engines with trtexec on the device |
| board_runner.py | runs any of the ONNX models with numpy + onnxruntime only |

Jetson: `./build_engine.sh`, then run the engines (or point DeepStream at config_infer_primary.txt).
ARM board (aarch64, ONNX Runtime: Raspberry Pi class, Jetson CPU, Graviton):

    pip install onnxruntime numpy opencv-python-headless
    python board_runner.py model-int8-ort.onnx photo.jpg detections.json

`board_runner.py` needs only numpy and onnxruntime (opencv for image files). With the whole project
installed, `scratchdet predict IMAGE --model model-int8-ort.onnx` draws the boxes too. The INT8 model
was quantised with reduce_range={reduce_range} (see metadata.json): {portability}
"""


def make_bundle(fp32_onnx: str | Path, data: str | Path, out: str | Path, calibration: CalibrationOptions,
                tarball: bool = True) -> Path:
    """Write the bundle folder (and out.tar.gz); returns the folder."""
    fp32_onnx, out = Path(fp32_onnx), Path(out)
    _, metadata = load_checked(fp32_onnx)
    if metadata["precision"] != "fp32":
        raise ValueError(f"{fp32_onnx}: the bundle starts from the FP32 export, this is {metadata['precision']}")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fp32_onnx, out / MODELS["fp32"])
    convert_fp16(out / MODELS["fp32"], out / MODELS["fp16"])
    for target in ("tensorrt", "ort"):
        quantize_int8(out / MODELS["fp32"], data, target, out / MODELS[f"int8-{target}"], calibration,
                      cache_dir=fp32_onnx.parent)
    (out / "labels.txt").write_text("\n".join(metadata["class_names"]) + "\n")
    (out / "config_infer_primary.txt").write_text(deepstream_config(metadata, MODELS["fp16"], 2))
    (out / "metadata.json").write_text(json.dumps({**metadata, "files": MODELS}, indent=2))
    script = out / "build_engine.sh"
    script.write_text(build_script(metadata, out))
    script.chmod(0o755)
    shutil.copyfile(Path(__file__).with_name("board_runner.py"), out / "board_runner.py")
    portability = ("7-bit weights, identical detections on every x86 and ARM CPU." if calibration.reduce_range
                   else "8-bit weights; x86 CPUs without VNNI (AVX2 only) may give slightly different detections.")
    (out / "README.md").write_text(README.format(name=metadata["config_name"], size=metadata["input_size"],
                                                 classes=", ".join(metadata["class_names"]),
                                                 reduce_range=calibration.reduce_range, portability=portability))
    for calibration_file in out.glob("calibration-*.json"):
        calibration_file.unlink()
    if tarball:
        with tarfile.open(out.with_suffix(".tar.gz"), "w:gz") as archive:
            archive.add(out, arcname=out.name)
    return out
