"""Run a ScratchDet Edge ONNX model on a board with only numpy and onnxruntime (opencv for images).

    python board_runner.py model.onnx images.npy out.npz      # preprocessed float32 [N, 3, S, S] RGB 0-255
    python board_runner.py model.onnx photo.jpg out.json      # an image file (needs opencv-python-headless)

Standalone on purpose: it ships in the bundle and runs where the rest of the project is not installed.
It also owns the detection JSON schema (`detections_document`), which `scratchdet predict` and the
Python API's results import from here, so a board and a workstation write the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DOCUMENT_KEYS = ("image", "width", "height", "detections")
DETECTION_KEYS = ("class_id", "class_name", "score", "box")


def detections_document(image: str, width: int | None, height: int | None, boxes: np.ndarray, scores: np.ndarray,
                        class_ids: np.ndarray, class_names: list[str]) -> dict:
    """One image's detections as JSON-ready data, the one schema every writer uses:
    {"image", "width", "height", "detections": [{"class_id" (0-based), "class_name", "score",
    "box": [x1, y1, x2, y2] in pixels of that image (width x height)}, ...]}, best score first."""
    detections = [{"class_id": int(c), "class_name": class_names[int(c)], "score": round(float(s), 5),
                   "box": [round(float(v), 2) for v in box]}
                  for box, s, c in zip(np.asarray(boxes).reshape(-1, 4), scores, class_ids)]
    return {"image": image, "width": width, "height": height, "detections": detections}


def contract_layouts() -> dict[str, list[str]]:
    """The ONNX contract's output layouts (count, boxes, scores, classes): from the package where it is
    installed, else from the contract.json the bundle writes beside this file (models/contract.py is their
    one home)."""
    try:
        from scratchdet.models.contract import contract_document
    except ImportError:
        return json.loads(Path(__file__).with_name("contract.json").read_text())["layouts"]
    return contract_document()["layouts"]


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
    import onnxruntime as ort  # here, so that importing the schema above needs no onnxruntime

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    metadata = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()
                if k in ("class_names", "input_size")}
    found = {o.name for o in session.get_outputs()}
    known = contract_layouts()
    layouts = [names for names in known.values() if set(names) <= found]
    if not layouts:
        raise SystemExit(f"{args.model}: not a ScratchDet Edge model (outputs {sorted(found)}, expected one of "
                         f"{list(known.values())})")
    (count_name, box_name, score_name, class_name) = outputs_names = layouts[0]
    if args.input.endswith(".npy"):
        batch, original = np.load(args.input).astype(np.float32), None
    else:
        batch, original = load_image(Path(args.input), metadata["input_size"])
    names = [o.name for o in session.get_outputs()] if args.all_outputs else list(outputs_names)
    outputs = dict(zip(names, session.run(names, {"images": batch})))
    if args.output.endswith(".npz"):
        np.savez(args.output, **outputs)
        return 0
    count = int(outputs[count_name][0, 0])
    size = original or (metadata["input_size"], metadata["input_size"])
    boxes = outputs[box_name][0, :count]
    if box_name == "detection_boxes":  # tfssd: y1, x1, y2, x2 normalised -> x1, y1, x2, y2 input pixels
        boxes = boxes[:, [1, 0, 3, 2]] * np.float32(metadata["input_size"])
    scale = np.array(size * 2, dtype=np.float32) / metadata["input_size"]
    boxes = np.clip(boxes * scale, 0, np.array(size * 2, dtype=np.float32))
    document = detections_document(Path(args.input).name, size[0], size[1], boxes, outputs[score_name][0, :count],
                                   outputs[class_name][0, :count].astype(np.int64), metadata["class_names"])
    Path(args.output).write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
