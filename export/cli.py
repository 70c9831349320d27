"""`scratchdet export`: checkpoint (or config) -> ONNX with decode + NMS, verified and TensorRT-checked."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from scratchdet.arguments import int_range, positive_int, probability
from scratchdet.export.fold_bn import fold_batchnorm
from scratchdet.export.onnx_export import OPSETS, ExportOptions, export_onnx
from scratchdet.export.tensorrt_check import require_tensorrt_compatible, verdict_lines
from scratchdet.export.tensorrt_rtx import rtx_verdict_lines
from scratchdet.export.verify import verify_onnx
from scratchdet.flags import add_model_argument
from scratchdet.models.checkpoint import load_model
from scratchdet.models.config import PostprocessConfig, load_model_config
from scratchdet.models.contract import LAYOUTS, load_checked, read_onnx
from scratchdet.models.files import check_destination, file_sha256
from scratchdet.models.ssd import SSD
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch

log = logging.getLogger(__name__)


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet export`."""
    add_model_argument(parser, "checkpoint (.pt) to export", deprecated=("--weights",), required=False)
    parser.add_argument("--config", help="alone: export random weights of a config (speed work before training); "
                        "with --model: the config the checkpoint must have been trained with")
    parser.add_argument("--out", help="ONNX path (default: RUN/export/model.onnx next to the checkpoint)")
    parser.add_argument("--data", help="dataset whose val images check ONNX vs PyTorch parity")
    parser.add_argument("--max-det", type=positive_int, help="detections kept per image by the in-graph NMS "
                        "(default: the model's postprocess.max_det)")
    parser.add_argument("--score-thr", type=probability, help="in-graph NMS score threshold; keep the evaluation "
                        "value so every format can be evaluated (default: the model's postprocess.score_threshold)")
    parser.add_argument("--iou-thr", type=probability, help="in-graph NMS IoU threshold (default: the model's)")
    parser.add_argument("--pre-nms-topk", type=positive_int,
                        help="candidates per class before NMS (default: the model's)")
    parser.add_argument("--deploy-conf", type=probability, help="score threshold recorded for deployments (predict, "
                        "DeepStream, board runner; default: the model's postprocess.deploy_score_threshold)")
    parser.add_argument("--opset", type=int_range(OPSETS.start, OPSETS.stop - 1), default=ExportOptions.opset,
                        help="ONNX opset")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    parser.add_argument("--layout", choices=list(LAYOUTS), default=ExportOptions.layout,
                        help="output layout: scratchdet (int32 count and classes, x1,y1,x2,y2 pixels; our DeepStream "
                        "parser) or tfssd (the float32 TF-SSD outputs stock DeepStream's NvDsInferParseCustomTfSSD "
                        "reads, nothing to compile); same detections")
    parser.add_argument("--onnx", help="an existing ONNX file, for --verify or --check-tensorrt")
    parser.add_argument("--verify", action="store_true", help="re-run parity of --onnx against --model")
    parser.add_argument("--check-tensorrt", action="store_true", help="check --onnx against TensorRT's parser rules")
    parser.set_defaults(run=run_export)


def _source_model(args: argparse.Namespace) -> tuple[SSD, list[str], str | None, Path]:
    """(model, class names, checkpoint sha256, default output) from --model or --config."""
    if args.model:
        # num_classes is set from the dataset at training time, so a config file need not match it.
        expected = load_model_config(args.config) if args.config else None
        model, checkpoint = load_model(args.model, expected, ignore=("num_classes", "postprocess"))
        return model, checkpoint["class_names"], file_sha256(args.model), Path(args.model).parent / "export"
    if not args.config:
        raise ValueError("export needs --model CKPT or --config CFG")
    config = load_model_config(args.config)
    log.warning("exporting RANDOM weights of config '%s' (for speed work; accuracy is meaningless)", config.name)
    names = [f"class{i}" for i in range(1, config.num_classes)]
    return SSD(config).eval(), names, None, Path("runs") / config.name / "export"


def _postprocess(args: argparse.Namespace, model: SSD) -> PostprocessConfig:
    """The model's post-processing settings with the command line's overrides."""
    given = {"score_threshold": args.score_thr, "iou_threshold": args.iou_thr, "pre_nms_topk": args.pre_nms_topk,
             "max_det": args.max_det, "deploy_score_threshold": args.deploy_conf}
    return replace(model.config.postprocess, **{k: v for k, v in given.items() if v is not None})


def _parity_images(model: SSD, data: str | None) -> np.ndarray:
    """The images parity is checked on: 16 val images of --data (read before anything is written), else 4
    random ones."""
    if data:
        return dataset_batch(load_dataset(data, "val").records[:16], model.config.input_size)
    size = model.config.input_size
    log.info("no --data: parity checked on 4 random images")
    return np.random.default_rng(0).uniform(0, 255, (4, 3, size, size)).astype(np.float32)


def _parity(folded: SSD, class_names: list[str], onnx_path: Path, graph: onnx.ModelProto, images: np.ndarray) -> str:
    report = verify_onnx(folded, class_names, onnx_path, images, graph)
    if not report.ok:
        raise RuntimeError(f"{onnx_path}: ONNX Runtime disagrees with PyTorch: {report.summary()}")
    return report.summary()


def run_export(args: argparse.Namespace) -> None:
    if args.check_tensorrt and not args.verify and args.onnx:
        graph = read_onnx(args.onnx)
        print("\n".join(f"{args.onnx}: {line}" for line in verdict_lines(graph) + rtx_verdict_lines(args.onnx)))
        require_tensorrt_compatible(graph, args.onnx)
        return
    if args.out:  # every input and destination is checked before the export writes anything
        check_destination(args.out)
    model, class_names, sha256, default_dir = _source_model(args)
    images = _parity_images(model, args.data)
    if args.verify:
        if not args.onnx:
            raise ValueError("--verify needs --onnx FILE (and --model CKPT)")
        graph, metadata = load_checked(args.onnx)
        if metadata["precision"] != "fp32":
            raise ValueError(f"{args.onnx}: --verify checks an FP32 export against its checkpoint within float "
                             f"rounding; this model is {metadata['precision']} (bench measures its accuracy)")
        print(_parity(fold_batchnorm(model), class_names, Path(args.onnx), graph, images))
        return
    out = Path(args.out) if args.out else default_dir / "model.onnx"
    options = ExportOptions(args.opset, _postprocess(args, model), not args.no_simplify, args.layout)
    report = export_onnx(model, class_names, out, options, sha256)
    print(f"exported      {out} ({out.stat().st_size / 1e6:.2f} MB)")
    print(f"nodes         {report.nodes_before_simplify} -> {report.nodes_after_simplify} after onnxsim; "
          f"BatchNormalization {report.op_counts.get('BatchNormalization', 0)}, "
          f"NMS Loop {report.op_counts.get('Loop', 0)}")
    print(f"BN folding    max abs diff of raw outputs {report.fold_max_abs_diff:.2e}")
    print("\n".join(verdict_lines(report.graph) + rtx_verdict_lines(report.graph)))
    print(_parity(report.folded, class_names, out, report.graph, images))
