"""`scratchdet predict`: detections of any model format on images, videos, cameras and streams."""

from __future__ import annotations

import argparse

from scratchdet.arguments import non_negative_int, positive_int, probability
from scratchdet.flags import add_model_argument, add_runtime_arguments
from scratchdet.runtime.results import TXT_FORMAT


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet predict`."""
    parser.add_argument("source", nargs="+",
                        help="image, folder, glob (quoted), video, camera index (0), or URL (rtsp://, http(s)://, "
                             "file://); several at once")
    add_model_argument(parser, ".pt checkpoint, .onnx model or .engine")
    parser.add_argument("--conf", type=probability,
                        help="minimum score kept (default: the model's deployment threshold, 0.25 unless exported "
                             "otherwise)")
    parser.add_argument("--iou", type=probability,
                        help="NMS IoU; only tightens the model's own NMS (exported into ONNX/engine graphs): "
                             "values above the model's change nothing (default: the model's)")
    parser.add_argument("--max-det", type=positive_int,
                        help="detections kept per image; at most the model's K (default: the model's)")
    parser.add_argument("--classes", type=non_negative_int, nargs="+", help="0-based class ids kept (default: all)")
    parser.add_argument("--save-dir", default="runs/predict",
                        help="output folder; taken already, the next free SAVE_DIR2, SAVE_DIR3, ... is used")
    parser.add_argument("--exist-ok", action="store_true", help="write into --save-dir even if it exists")
    parser.add_argument("--save-txt", action="store_true",
                        help="also labels/STEM.txt per image or frame, one line per detection: " + TXT_FORMAT)
    parser.add_argument("--line-width", type=positive_int,
                        help="box line width in pixels (default: scales with the image)")
    parser.add_argument("--max-frames", type=positive_int,
                        help="stop each video, camera or stream after this many frames")
    parser.add_argument("--threads", type=positive_int, help="ONNX Runtime / OpenVINO threads (default: all cores)")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from scratchdet.runtime.detector import Detector
    from scratchdet.runtime.predict import predict

    detector = Detector(args.model, conf=args.conf, classes=args.classes, threads=args.threads,
                        runtime=args.runtime, precision_hint=args.precision_hint)
    summary = predict(detector, args.source, args.save_dir, args.exist_ok, args.iou, args.max_det, args.save_txt,
                      args.line_width, args.max_frames)
    print(f"{summary.images} image(s)/frame(s) in {summary.seconds:.1f} s: "
          f"{summary.images / max(summary.seconds, 1e-9):.1f} FPS end to end ({detector.backend.name}, "
          f"{detector.backend.precision}); "
          + (f"results in {summary.save_dir}" if summary.save_dir else "nothing written, no results folder"))
    if summary.skipped:  # as ultralytics: the others are processed, and the run still fails
        print(f"{len(summary.skipped)} source(s) skipped, unreadable:", *summary.skipped, sep="\n  ")
        return 1
    return 0
