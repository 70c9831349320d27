"""Where INT8 gains and where it does not: per-layer ONNX Runtime kernel times of two exports of one model.

    python -m scratchdet.benchmarks.studies.layer_profile RUN/export/model.onnx RUN/export/model-int8-ort.onnx

Both models run under ORT's profiler on the same random image; each convolution kernel is mapped back to
the module that exported it (ORT renames fused nodes: ".../conv1.2/Relu_output_0_nchwc" in FP32,
".../conv1.0/Conv_token_36" in INT8, both module ".../conv1"), and the table prints the two times and
their ratio, largest first. The two models are profiled one after the other, so on a busy machine read
the ratios, not the absolute times, and repeat.

    python -m scratchdet.benchmarks.studies.layer_profile RUN/export/model-int8-ort.onnx --openvino

profiles one file on ONNX Runtime and on OpenVINO (its per-layer PERF_COUNT times, batch fixed at 1), and
prints each convolution's GOPs and its share of this machine's register-level limit for the model's
precision (benchmarks/peak.py, measured in the same process): where each runtime leaves time on the table.
OpenVINO fuses a residual Add into the convolution before it; ONNX Runtime runs it as its own QLinearAdd.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

CONV_KERNELS = ("Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "ConvInteger")
ORT_SUFFIX = re.compile(r"(_nchwc|_token_\d+)+$")
OPENVINO_CONVS = ("Convolution", "GroupConvolution")


def conv_module(node_name: str) -> str:
    """The exporting module of a (possibly fused) conv kernel: drop the op name and the conv_bn index."""
    parts = ORT_SUFFIX.sub("", node_name).split("/")[:-1]
    if len(parts) >= 2 and re.fullmatch(re.escape(parts[-2]) + r"\.\d+", parts[-1]):
        parts = parts[:-1]
    return "/".join(parts)


def kernel_times(onnx_path: str | Path, runs: int = 20, threads: int = 2) -> dict[str, float]:
    """Mean ms per run: each conv module, plus 'other:<op>' for the remaining kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    image = np.random.default_rng(0).uniform(0, 255, (1, *shape[1:])).astype(np.float32)
    for _ in range(runs + 1):
        session.run(None, {"images": image})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    # The first run allocates and packs weights: count only kernels after it ends.
    first_run = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    after_warmup = first_run["ts"] + first_run["dur"]
    totals: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < after_warmup:
            continue
        op, node = event["args"]["op_name"], event["name"].removesuffix("_kernel_time")
        totals[conv_module(node) if op in CONV_KERNELS else f"other:{op}"] += event["dur"]
    return {key: micros / runs / 1e3 for key, micros in totals.items()}


def openvino_kernel_times(onnx_path: str | Path, runs: int = 20, threads: int = 2) -> dict[str, float]:
    """Mean ms per run on OpenVINO's CPU plugin (f32 hint, batch 1), keyed as `kernel_times` keys ONNX Runtime's."""
    from scratchdet.models.inference.openvino_backend import compile_onnx

    request = compile_onnx(onnx_path, threads, batch=1, profile=True).create_infer_request()
    image = np.random.default_rng(0).uniform(0, 255, (1, *request.get_input_tensor().shape[1:])).astype(np.float32)
    request.infer([image])  # the first inference allocates and packs weights
    totals: collections.Counter[str] = collections.Counter()
    for _ in range(runs):
        request.infer([image])
        for layer in request.profiling_info:
            if layer.status != layer.Status.EXECUTED:
                continue
            # OpenVINO names a convolution split from its bias ".../Conv/WithoutBiases".
            key = (conv_module(layer.node_name.removesuffix("/WithoutBiases")) if layer.node_type in OPENVINO_CONVS
                   else f"other:{layer.node_type}")
            totals[key] += layer.real_time.total_seconds() * 1e3
    return {key: ms / runs for key, ms in totals.items()}


def conv_gops(onnx_path: str | Path) -> dict[str, float]:
    """Multiply-adds x 2 of each conv module at batch 1, in billions (shapes from ONNX shape inference). These
    are the file's convolutions as they stand: in an INT8 file for ONNX Runtime the first conv reads the image
    padded to 4 channels, so its GOPs are 4/3 of the FP32 file's."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
              for info in [*model.graph.value_info, *model.graph.output]}
    shapes.update({tensor.name: list(tensor.dims) for tensor in model.graph.initializer})
    gops: collections.Counter[str] = collections.Counter()
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight, output = shapes[node.input[1]], shapes[node.output[0]]
            gops[conv_module(node.name)] += 2 * int(np.prod(weight)) * output[2] * output[3] / 1e9
    return dict(gops)


def compare(baseline: dict[str, float], candidate: dict[str, float]) -> list[tuple[str, float, float]]:
    """(layer, baseline ms, candidate ms) for every layer of either, largest baseline time first."""
    layers = sorted(set(baseline) | set(candidate), key=lambda k: (-baseline.get(k, 0.0), k))
    return [(layer, baseline.get(layer, 0.0), candidate.get(layer, 0.0)) for layer in layers]


def format_table(rows: list[tuple[str, float, float]], names: tuple[str, str], top: int,
                 gops: dict[str, float] | None = None, limit: float | None = None) -> str:
    """The table, largest first; with `gops` and `limit` (G op/s) also each row's % of the limit per column."""
    def ratio(a: float, b: float) -> str:
        return f"{a / b:6.2f}x" if b > 0 else "      -"

    def share(layer_gops: float, ms: float) -> str:
        return f"{100 * layer_gops / (ms / 1e3) / limit:5.0f}%" if limit and ms > 0 and layer_gops else "     -"

    def line(a: float, b: float, label: str, layer_gops: float = 0.0) -> str:
        times = f"{a:9.3f}  {b:9.3f}  {ratio(a, b)}"
        if gops is None:
            return f"{times}  {label}"
        return f"{times}  {layer_gops:6.2f} {share(layer_gops, a)} {share(layer_gops, b)}  {label}"

    head = f"{names[0]:>10s} {names[1]:>10s}   ratio"
    lines = [head + ("  layer" if gops is None else "    GOPs  %lim A  %lim B  layer")]
    lines += [line(a, b, layer, (gops or {}).get(layer, 0.0)) for layer, a, b in rows[:top]]
    convs = [(layer, a, b) for layer, a, b in rows if not layer.startswith("other:")]
    total_gops = sum((gops or {}).get(layer, 0.0) for layer, _, _ in convs)
    conv_a, conv_b = sum(a for _, a, _ in convs), sum(b for _, _, b in convs)
    all_a, all_b = sum(a for _, a, _ in rows), sum(b for _, _, b in rows)
    lines.append(line(conv_a, conv_b, f"all convolutions ({len(convs)} layers)", total_gops))
    lines.append(line(all_a, all_b, "all kernels (ms per run)", total_gops))
    return "\n".join(lines)


def measured_limit(onnx_path: str | Path, threads: int) -> float | None:
    """This machine's register-level limit (G op/s) for the model's precision: the fastest of 12 calls."""
    from scratchdet.benchmarks.peak import RegisterKernels

    kernels = RegisterKernels.build()
    if kernels is None:
        return None
    int8 = any(node.op_type == "QuantizeLinear" for node in onnx.load(str(onnx_path)).graph.node)
    name = "register_int8" if int8 else "register_fp32"
    call = kernels.calls(threads)[name]
    fastest = min(_seconds(call) for _ in range(12))  # the first calls after a model run ramp up
    return kernels.ops_per_call(name, threads) / fastest / 1e9


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="e.g. the FP32 ONNX")
    parser.add_argument("candidate", nargs="?", help="e.g. its INT8 Q/DQ copy (not with --openvino)")
    parser.add_argument("--openvino", action="store_true",
                        help="profile the baseline file on ONNX Runtime and on OpenVINO instead")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="rows to print")
    args = parser.parse_args(argv)
    if args.openvino == (args.candidate is not None):
        parser.error("give a candidate ONNX, or --openvino to compare runtimes on the one file")
    # The clock this machine gives the kernels drifts by ~5 % over a minute: the limit is the higher of a
    # measurement before and one after the profiles.
    before = measured_limit(args.baseline, args.threads) if args.openvino else None
    baseline = kernel_times(args.baseline, args.runs, args.threads)
    if args.openvino:
        candidate, names = openvino_kernel_times(args.baseline, args.runs, args.threads), ("ort", "openvino")
        after = measured_limit(args.baseline, args.threads)
        gops, limit = conv_gops(args.baseline), max(before or 0.0, after or 0.0) or None
    else:
        candidate = kernel_times(args.candidate, args.runs, args.threads)
        names, gops, limit = (Path(args.baseline).stem, Path(args.candidate).stem), None, None
    print(format_table(compare(baseline, candidate), names, args.top, gops, limit))
    if limit:
        print(f"limit: {limit:.0f} G op/s (register kernels, {args.threads} threads, this run)")


if __name__ == "__main__":
    main()
