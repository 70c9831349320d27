"""`scratchdet predict` and `scratchdet bundle`."""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchdet.export.deploy_cli import calibration_arguments, calibration_options


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet predict` or `bundle`."""
    {"predict": _predict_arguments, "bundle": _bundle_arguments}[command](parser)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="image, folder, video file, or camera index (0)")
    parser.add_argument("--model", required=True, help=".pt checkpoint, .onnx model or .engine")
    parser.add_argument("--conf", type=float, default=0.25, help="minimum score kept")
    parser.add_argument("--classes", type=int, nargs="+", help="0-based class ids kept")
    parser.add_argument("--save-dir", default="runs/predict")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.set_defaults(run=run_predict)


def _bundle_arguments(bundle: argparse.ArgumentParser) -> None:
    bundle.add_argument("--onnx", required=True, help="the FP32 ONNX from `scratchdet export`")
    bundle.add_argument("--data", required=True, help="dataset whose training images calibrate INT8")
    bundle.add_argument("--out", help="default: RUN/bundle")
    calibration_arguments(bundle)
    bundle.set_defaults(run=run_bundle)


def run_predict(args: argparse.Namespace) -> None:
    from scratchdet.runtime.detector import Detector
    from scratchdet.runtime.predict import predict

    detector = Detector(args.model, conf=args.conf, classes=args.classes, threads=args.threads)
    count, seconds = predict(detector, args.source, args.save_dir)
    print(f"{count} image(s)/frame(s) in {seconds:.1f} s: {count / max(seconds, 1e-9):.1f} FPS end to end "
          f"({detector.backend.name}, {detector.backend.precision}); results in {args.save_dir}")


def run_bundle(args: argparse.Namespace) -> None:
    from scratchdet.runtime.bundle import make_bundle

    source = Path(args.onnx)
    out = Path(args.out) if args.out else source.parent.parent / "bundle"
    folder = make_bundle(source, args.data, out, calibration_options(args))
    print(f"bundle {folder} and {folder.with_suffix('.tar.gz')}:")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:32s} {path.stat().st_size / 1e6:8.2f} MB")
