"""`scratchdet quantize`, `scratchdet engine` and `scratchdet bundle`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnx

from scratchdet.arguments import non_negative_int, positive_int, probability
from scratchdet.export.engine_plan import EnginePlan, check_plan_destinations, make_plan, trtexec_command
from scratchdet.export.quantize import (
    METHODS,
    TARGETS,
    CalibrationOptions,
    convert_fp16,
    quantization_summary,
    quantize_int8,
)
from scratchdet.export.tensorrt_check import verdict_lines
from scratchdet.export.tensorrt_rtx import RUNTIME as RTX
from scratchdet.export.tensorrt_rtx import TARGETS as RTX_TARGETS
from scratchdet.export.tensorrt_rtx import rtx_verdict_lines
from scratchdet.flags import add_model_argument
from scratchdet.models.contract import ENGINE_PRECISIONS, load_checked

log = logging.getLogger(__name__)


def calibration_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calib-images", type=positive_int, default=CalibrationOptions.images,
                        help="training images used to calibrate the INT8 ranges")
    parser.add_argument("--calib-method", choices=METHODS, default=CalibrationOptions.method,
                        help="how activation ranges are chosen from the calibration images")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for picking the calibration images")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weights for the ort target (default 7-bit: same detections on x86 CPUs "
                             "without VNNI)")


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet quantize`, `engine` or `bundle`."""
    {"quantize": _quantize_arguments, "engine": _engine_arguments, "bundle": _bundle_arguments}[command](parser)


def _quantize_arguments(quantize: argparse.ArgumentParser) -> None:
    add_model_argument(quantize, "the FP32 ONNX from `scratchdet export`", deprecated=("--onnx",))
    quantize.add_argument("--precision", choices=("int8", "fp16"), default="int8", help="output precision")
    quantize.add_argument("--data", help="dataset whose training images calibrate INT8")
    quantize.add_argument("--target", choices=TARGETS, default="ort",
                          help="ort: U8S8 for CPUs; tensorrt: symmetric S8S8 for engines")
    quantize.add_argument("--out", help="default: beside the ONNX, model-int8-TARGET.onnx or model-fp16.onnx")
    calibration_arguments(quantize)
    quantize.set_defaults(run=run_quantize)


def _engine_arguments(engine: argparse.ArgumentParser) -> None:
    add_model_argument(engine, "the ONNX to build: model.onnx (fp32), model-fp16.onnx or model-int8-tensorrt.onnx",
                       deprecated=("--onnx",))
    engine.add_argument("--precision", choices=ENGINE_PRECISIONS, required=True,
                        help="engine precision; must match the ONNX's (engines are strongly typed)")
    engine.add_argument("--min-batch", type=positive_int, default=1, help="smallest batch of the optimisation profile")
    engine.add_argument("--opt-batch", type=positive_int, default=1, help="batch TensorRT tunes kernels for")
    engine.add_argument("--max-batch", type=positive_int, default=8, help="largest batch of the optimisation profile")
    engine.add_argument("--workspace-mib", type=positive_int, default=1024, help="builder workspace memory pool (MiB)")
    engine.add_argument("--dla-core", type=non_negative_int,
                        help="Jetson DLA core (TensorRT 10.0-10.7 or 11.4.1+), GPU fallback "
                        "on; needs --min-batch = --opt-batch = --max-batch")
    engine.add_argument("--runtime", choices=("tensorrt", RTX), default="tensorrt",
                        help="tensorrt: TensorRT 10/11 on this GPU host or Jetson; tensorrt-rtx: TensorRT for RTX, "
                             "compiled ahead of time on any machine, GPU or not, for the --sm targets")
    engine.add_argument("--sm", default="",
                        help=f"tensorrt-rtx only: comma-separated targets ({', '.join(RTX_TARGETS)}); default: "
                             "TensorRT-RTX's own default")
    engine.add_argument("--out", help="engine path (default: RUN/engines/MODEL-PRECISION.engine, "
                                      "MODEL-PRECISION.rtx.engine for tensorrt-rtx; + .json sidecar)")
    engine.set_defaults(run=run_engine)


def calibration_options(args: argparse.Namespace) -> CalibrationOptions:
    return CalibrationOptions(args.calib_images, args.calib_method, args.seed, not args.full_range)


def run_quantize(args: argparse.Namespace) -> None:
    source = Path(args.model)
    if args.precision == "fp16":
        out = convert_fp16(source, Path(args.out) if args.out else source.with_name(f"{source.stem}-fp16.onnx"))
    else:
        if not args.data:
            raise ValueError("INT8 quantisation needs --data DATASET (its training images calibrate the ranges)")
        out = Path(args.out) if args.out else source.with_name(f"{source.stem}-int8-{args.target}.onnx")
        quantize_int8(source, args.data, args.target, out, calibration_options(args))
    summary = quantization_summary(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {summary['precision']}): "
          f"{summary['QuantizeLinear']} QuantizeLinear, {summary['DequantizeLinear']} DequantizeLinear nodes")
    graph = onnx.load(out)
    print("\n".join(verdict_lines(graph) + rtx_verdict_lines(graph)))


def run_engine(args: argparse.Namespace) -> None:
    if args.runtime == RTX:
        run_rtx_engine(args)
        return
    if args.sm:
        raise ValueError("--sm names TensorRT-RTX targets: add --runtime tensorrt-rtx (TensorRT 10/11 build for the "
                         "GPU they run on)")
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.models.inference.cuda_device import CudaError, gpu_info
    from scratchdet.models.inference.tensorrt_backend import import_tensorrt

    onnx_path = Path(args.model)
    _, metadata = load_checked(onnx_path)
    batches = (args.min_batch, args.opt_batch, args.max_batch)
    out = Path(args.out) if args.out else None

    def plan_for(version: str) -> EnginePlan:
        plan = make_plan(onnx_path, metadata, args.precision, version, batches, args.workspace_mib, args.dla_core,
                         out)
        check_plan_destinations(plan)
        return plan

    # JetPack 6's 10.3 and 11.4.1 (the first 11.x with DLA again) stand for their majors: the request and its
    # destinations are refused here, before TensorRT is looked for, whether or not it is installed
    device_plans = [plan_for(version) for version in ("10.3", "11.4.1")]
    try:
        trt = import_tensorrt()
        gpu_info()
    except (ImportError, CudaError) as error:
        lines = [trtexec_command(plan) for plan in device_plans]
        raise RuntimeError(f"cannot build here: {error}. The ONNX is {onnx_path.resolve()}; on the device run\n"
                           f"  TensorRT 10: {lines[0]}\n  TensorRT 11: {lines[1]}") from None
    plan = plan_for(trt.__version__)
    print(f"trtexec equivalent: {trtexec_command(plan)}")
    engine = build_engine(plan, metadata)
    print(f"engine {engine} ({engine.stat().st_size / 1e6:.1f} MB), sidecar {plan.sidecar}")


def run_rtx_engine(args: argparse.Namespace) -> None:
    """`scratchdet engine --runtime tensorrt-rtx`: an ahead-of-time engine and its sidecar, GPU or not."""
    from scratchdet.export.tensorrt_rtx import make_rtx_engine, parse_targets, rtx_version

    if args.dla_core is not None:
        raise ValueError("--dla-core is for Jetson's TensorRT; TensorRT-RTX has no DLA")
    targets = parse_targets(args.sm)
    engine, build = make_rtx_engine(Path(args.model), args.precision, targets,
                                    (args.min_batch, args.opt_batch, args.max_batch),
                                    Path(args.out) if args.out else None, args.workspace_mib)
    print(f"{args.model}: {build.verdict()}")
    print(f"engine {engine} ({engine.stat().st_size / 1e6:.1f} MB, TensorRT-RTX {rtx_version()}, "
          f"{', '.join(targets) or 'default targets'}), sidecar {engine.with_suffix('.json')}")


def _bundle_arguments(bundle: argparse.ArgumentParser) -> None:
    add_model_argument(bundle, "the FP32 ONNX from `scratchdet export`", deprecated=("--onnx",))
    bundle.add_argument("--data", required=True, help="dataset whose training images calibrate INT8")
    bundle.add_argument("--out", help="default: RUN/bundle")
    bundle.add_argument("--conf", type=probability,
                        help="deployment score threshold for DeepStream (default: the ONNX's deploy_score_threshold, "
                             "else 0.25); evaluation keeps the ONNX's own low threshold")
    bundle.add_argument("--max-batch", type=positive_int, default=8,
                        help="largest batch of the engines build_engine.sh builds")
    bundle.add_argument("--rtx", action="store_true",
                        help="also carry TensorRT-RTX engines (built here, no GPU needed) for the --rtx-sm targets")
    bundle.add_argument("--rtx-sm", default="", help="TensorRT-RTX targets of --rtx, e.g. SM86,SM89 (default: "
                                                    "TensorRT-RTX's own)")
    calibration_arguments(bundle)
    bundle.set_defaults(run=run_bundle)


def run_bundle(args: argparse.Namespace) -> None:
    from scratchdet.export.bundle import make_bundle
    from scratchdet.export.tensorrt_rtx import parse_targets

    if args.rtx_sm and not args.rtx:
        raise ValueError("--rtx-sm names the targets of TensorRT-RTX engines: add --rtx")
    rtx_targets = parse_targets(args.rtx_sm) if args.rtx else None
    source = Path(args.model)
    out = Path(args.out) if args.out else source.parent.parent / "bundle"
    folder = make_bundle(source, args.data, out, calibration_options(args), score_threshold=args.conf,
                         max_batch=args.max_batch, rtx_targets=rtx_targets)
    print(f"bundle {folder} and {folder.with_suffix('.tar.gz')}:")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:32s} {path.stat().st_size / 1e6:8.2f} MB")
