"""`scratchdet val`: a model file (.pt, .onnx of any precision, .engine) scored on a labelled dataset split.

Beside evaluation because it is evaluation: the same loop (`evaluate.detect_dataset`), metrics and curves
as the validation of every training epoch; opening the model file is the inference layer's
(`models.inference.formats.open_backend`). Imports no torch unless the model is a checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scratchdet.arguments import positive_int, probability
from scratchdet.flags import add_model_argument, add_runtime_arguments


def configure(command: str, val: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet val`."""
    add_model_argument(val, "model to evaluate: .pt checkpoint, .onnx (any precision) or .engine",
                       deprecated=("--weights",))
    val.add_argument("--data", required=True, help="dataset folder (COCO layout or VOC root)")
    val.add_argument("--split", default="val", help="dataset split evaluated")
    val.add_argument("--batch", type=positive_int, default=16, help="images per call to the model")
    add_runtime_arguments(val)
    val.add_argument("--conf", type=probability, default=0.25,
                     help="confidence for precision, recall, F1 and the confusion matrix (AP uses every score)")
    val.add_argument("--save-dir", default="runs/val",
                     help="folder for metrics.json, pr_curve.png and confusion_matrix.png; taken already, the next "
                          "free SAVE_DIR2, SAVE_DIR3, ... is used")
    val.add_argument("--exist-ok", action="store_true", help="write into --save-dir even if it exists")
    val.add_argument("--json", help="also write the metrics to this file")
    val.set_defaults(run=run_val)


def run_val(args: argparse.Namespace) -> None:
    from scratchdet.models.files import check_destination, write_text
    from scratchdet.models.inference.formats import open_backend
    from scratchdet.models.inference.predictor import Predictor
    from scratchdet.paths import output_folder
    from scratchdet.train.curves import plot_curves
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import detect_dataset, evaluate

    if args.json:  # every destination is checked before the evaluation
        check_destination(args.json)
    check_destination(args.save_dir, folder=True)
    data = load_dataset(args.data, args.split)
    backend = open_backend(args.model, args.runtime, precision_hint=args.precision_hint)
    with Predictor(backend, conf=0.0) as predictor:
        detections = detect_dataset(predictor, data, args.batch)
    result = evaluate(data.records, detections, data.class_names, args.conf)
    print(f"{args.model} ({backend.name}, {backend.precision}) on {args.data} [{args.split}, "
          f"{len(data.records)} images]")
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
