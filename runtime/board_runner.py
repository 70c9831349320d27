"""Run a ScratchDet Edge ONNX model on a board with only numpy and onnxruntime (opencv for images).

    python board_runner.py model.onnx images.npy out.npz      # preprocessed float32 [N, 3, S, S] RGB 0-255
    python board_runner.py model.onnx photo.jpg out.json      # an image file (needs opencv-python-headless)

Standalone on purpose: it ships in the bundle and runs where the rest of the project is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


def load_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{path}: cannot read the image")
    rgb = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    return rgb.transpose(2, 0, 1)[None].astype(np.float32), (image.shape[1], image.shape[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("input", help=".npy batch or an image file")
    parser.add_argument("output", help=".npz (raw outputs) or .json (detections)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--all-outputs", action="store_true",
                        help="with .npz: save every graph output, not only the detections (for debugging)")
    args = parser.parse_args(argv)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    metadata = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()
                if k in ("class_names", "input_size")}
    missing = [name for name in OUTPUTS if name not in {o.name for o in session.get_outputs()}]
    if missing:
        raise SystemExit(f"{args.model}: not a ScratchDet Edge model (missing outputs {missing})")
    if args.input.endswith(".npy"):
        batch, original = np.load(args.input).astype(np.float32), None
    else:
        batch, original = load_image(Path(args.input), metadata["input_size"])
    names = [o.name for o in session.get_outputs()] if args.all_outputs else list(OUTPUTS)
    outputs = dict(zip(names, session.run(names, {"images": batch})))
    if args.output.endswith(".npz"):
        np.savez(args.output, **outputs)
        return 0
    count = int(outputs["num_dets"][0, 0])
    scale = np.array(original * 2, dtype=np.float32) / metadata["input_size"] if original else 1.0
    detections = [{"box": (outputs["det_boxes"][0, i] * scale).round(2).tolist(),
                   "score": float(outputs["det_scores"][0, i]),
                   "class": metadata["class_names"][int(outputs["det_classes"][0, i])]} for i in range(count)]
    Path(args.output).write_text(json.dumps(detections, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
