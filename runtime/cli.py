"""`scratchdet val` and `scratchdet predict`: what runs any model format."""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchdet.arguments import non_negative_int, positive_int, probability
from scratchdet.flags import add_model_argument
from scratchdet.runtime.results import TXT_FORMAT


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet val` or `predict`."""
    {"val": _val_arguments, "predict": _predict_arguments}[command](parser)


def _val_arguments(val: argparse.ArgumentParser) -> None:
    add_model_argument(val, "model to evaluate: .pt checkpoint, .onnx (any precision) or .engine",
                       deprecated=("--weights",))
    val.add_argument("--data", required=True, help="dataset folder (COCO layout or VOC root)")
    val.add_argument("--split", default="val", help="dataset split evaluated")
    val.add_argument("--batch", type=positive_int, default=16, help="images per call to the model")
    _runtime_argument(val)
    _precision_hint_argument(val)
    val.add_argument("--conf", type=probability, default=0.25,
                     help="confidence for precision, recall, F1 and the confusion matrix (AP uses every score)")
    val.add_argument("--save-dir", default="runs/val",
                     help="folder for metrics.json, pr_curve.png and confusion_matrix.png; taken already, the next "
                          "free SAVE_DIR2, SAVE_DIR3, ... is used")
    val.add_argument("--exist-ok", action="store_true", help="write into --save-dir even if it exists")
    val.add_argument("--json", help="also write the metrics to this file")
    val.set_defaults(run=run_val)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
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
    _runtime_argument(parser)
    _precision_hint_argument(parser)
    parser.set_defaults(run=run_predict)


def run_val(args: argparse.Namespace) -> None:
    import json

    from scratchdet.models.files import check_destination, write_text
    from scratchdet.paths import output_folder
    from scratchdet.runtime.detector import Detector
    from scratchdet.train.curves import plot_curves
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import detect_dataset, evaluate

    if args.json:  # every destination is checked before the evaluation
        check_destination(args.json)
    check_destination(args.save_dir, folder=True)
    data = load_dataset(args.data, args.split)
    with Detector(args.model, conf=0.0, runtime=args.runtime, precision_hint=args.precision_hint) as detector:
        detections = detect_dataset(detector, data, args.batch)
        backend = f"{detector.backend.name}, {detector.backend.precision}"
    result = evaluate(data.records, detections, data.class_names, args.conf)
    print(f"{args.model} ({backend}) on {args.data} [{args.split}, {len(data.records)} images]")
    print(result.summary())
    for name, values in result.per_class.items():
        print(f"  {name:20s} AP50 {values['ap50']:.4f}  AP50(11pt) {values['ap50_11point']:.4f}  "
              f"COCO AP {values['coco_ap']:.4f}")
    print(result.at_conf_summary())
    with output_folder(args.save_dir, args.exist_ok) as out:
        plots = plot_curves(result, out, title=f"{Path(args.model).name} on {Path(args.data).name}/{args.split}: ")
        metrics = {**result.metrics(), "model": str(args.model)}
        for path in [out / "metrics.json", *([Path(args.json)] if args.json else [])]:
            write_text(path, json.dumps(metrics, indent=2))
    print(f"results in {out}: metrics.json, {', '.join(p.name for p in plots)}")


def _runtime_argument(parser: argparse.ArgumentParser) -> None:
    from scratchdet.models.inference.formats import AUTO, FORMATS

    runtimes = sorted({runtime for model_format in FORMATS.values() for runtime in model_format.runtimes})
    parser.add_argument("--runtime", default=AUTO, choices=(AUTO, *runtimes),
                        help=".onnx models: auto (default: OpenVINO where `scratchdet bench --runtime ort,openvino` "
                             "measured it faster on this host for the model's precision, else onnxruntime; the choice "
                             "and why are logged), onnxruntime or openvino (pip install 'scratchdet-edge[openvino]'); "
                             ".pt and .engine have one runtime each")


def _precision_hint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision-hint", default="f32", choices=("f32", "bf16"),
                        help="OpenVINO's float precision: bf16 is faster on CPUs with BF16 and changes the results")


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
