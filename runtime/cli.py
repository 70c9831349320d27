"""`scratchdet predict`."""

from __future__ import annotations

import argparse

from runtime.detector import Detector
from runtime.predict import predict


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("predict", help="detect on an image, folder, video or camera")
    parser.add_argument("source", help="image, folder, video file, or camera index (0)")
    parser.add_argument("--model", required=True, help=".pt checkpoint, .onnx model or .engine")
    parser.add_argument("--conf", type=float, default=0.25, help="minimum score kept")
    parser.add_argument("--classes", type=int, nargs="+", help="0-based class ids kept")
    parser.add_argument("--save-dir", default="runs/predict")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    detector = Detector(args.model, conf=args.conf, classes=args.classes, threads=args.threads)
    count, seconds = predict(detector, args.source, args.save_dir)
    print(f"{count} image(s)/frame(s) in {seconds:.1f} s: {count / max(seconds, 1e-9):.1f} FPS end to end "
          f"({detector.backend.name}, {detector.backend.precision}); results in {args.save_dir}")
