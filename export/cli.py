"""`scratchdet export`: checkpoint (or config) -> ONNX with decode + NMS, verified and TensorRT-checked."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnx
from scratchdet.export.contract import load_checked
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.onnx_runner import create_session
from scratchdet.export.tensorrt_check import check_tensorrt_compatibility, require_tensorrt_compatible
from scratchdet.export.verify import dataset_images, verify_onnx
from scratchdet.models.checkpoint import file_sha256, load_model
from scratchdet.models.config import load_model_config
from scratchdet.models.postprocess import NMSConfig
from scratchdet.models.ssd import SSD
from scratchdet.train.data.load import load_dataset

log = logging.getLogger(__name__)


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet export`."""
    parser.add_argument("--weights", help="checkpoint (.pt)")
    parser.add_argument("--config", help="alone: export random weights of a config (speed work before training); "
                        "with --weights: the config the checkpoint must have been trained with")
    parser.add_argument("--out", help="ONNX path (default: RUN/export/model.onnx next to the checkpoint)")
    parser.add_argument("--data", help="dataset whose val images check ONNX vs PyTorch parity")
    parser.add_argument("--max-det", type=int, default=NMSConfig.max_det)
    parser.add_argument("--score-thr", type=float, default=NMSConfig.score_threshold)
    parser.add_argument("--iou-thr", type=float, default=NMSConfig.iou_threshold)
    parser.add_argument("--pre-nms-topk", type=int, default=NMSConfig.pre_nms_topk)
    parser.add_argument("--opset", type=int, default=ExportOptions.opset)
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    parser.add_argument("--onnx", help="an existing ONNX file, for --verify or --check-tensorrt")
    parser.add_argument("--verify", action="store_true", help="re-run parity of --onnx against --weights")
    parser.add_argument("--check-tensorrt", action="store_true", help="check --onnx against TensorRT's parser rules")
    parser.set_defaults(run=run_export)


def _source_model(args: argparse.Namespace) -> tuple[SSD, list[str], str | None, Path]:
    """(model, class names, checkpoint sha256, default output) from --weights or --config."""
    if args.weights:
        # num_classes is set from the dataset at training time, so a config file need not match it.
        expected = load_model_config(args.config) if args.config else None
        model, checkpoint = load_model(args.weights, expected, ignore=("num_classes",))
        return model, checkpoint["class_names"], file_sha256(args.weights), Path(args.weights).parent / "export"
    if not args.config:
        raise ValueError("export needs --weights CKPT or --config CFG")
    config = load_model_config(args.config)
    log.warning("exporting RANDOM weights of config '%s' (for speed work; accuracy is meaningless)", config.name)
    names = [f"class{i}" for i in range(1, config.num_classes)]
    return SSD(config).eval(), names, None, Path("runs") / config.name / "export"


def _parity(model: SSD, onnx_path: Path, data: str | None, nms: NMSConfig) -> str:
    import numpy as np

    if data:
        images = dataset_images(load_dataset(data, "val"), model.config.input_size, count=16)
    else:
        size = model.config.input_size
        images = np.random.default_rng(0).uniform(0, 255, (4, 3, size, size)).astype(np.float32)
        log.info("no --data: parity checked on 4 random images")
    report = verify_onnx(model, create_session(onnx_path), images, nms)
    if not report.ok:
        raise RuntimeError(f"{onnx_path}: ONNX Runtime disagrees with PyTorch: {report.summary()}")
    return report.summary()


def run_export(args: argparse.Namespace) -> None:
    if args.check_tensorrt and not args.verify and args.onnx:
        require_tensorrt_compatible(onnx.load(args.onnx), args.onnx)
        print(f"{args.onnx}: TensorRT 10/11 parser rules OK")
        return
    model, class_names, sha256, default_dir = _source_model(args)
    if args.verify:
        if not args.onnx:
            raise ValueError("--verify needs --onnx FILE (and --weights CKPT)")
        _, metadata = load_checked(args.onnx)
        nms = NMSConfig(metadata["score_threshold"], metadata["iou_threshold"], metadata["pre_nms_topk"],
                         metadata["max_det"])
        print(_parity(model, Path(args.onnx), args.data, nms))
        return
    nms = NMSConfig(args.score_thr, args.iou_thr, args.pre_nms_topk, args.max_det)
    out = Path(args.out) if args.out else default_dir / "model.onnx"
    report = export_onnx(model, class_names, out, ExportOptions(args.opset, nms, not args.no_simplify), sha256)
    findings = check_tensorrt_compatibility(onnx.load(str(out)))
    print(f"exported      {out} ({out.stat().st_size / 1e6:.2f} MB)")
    print(f"nodes         {report.nodes_before_simplify} -> {report.nodes_after_simplify} after onnxsim; "
          f"BatchNormalization {report.op_counts.get('BatchNormalization', 0)}, "
          f"NonMaxSuppression {report.op_counts.get('NonMaxSuppression', 0)}")
    print(f"BN folding    max abs diff of raw outputs {report.fold_max_abs_diff:.2e}")
    print(f"TensorRT      {'parser rules OK' if not findings else '; '.join(map(str, findings))}")
    print(_parity(model, out, args.data, nms))
