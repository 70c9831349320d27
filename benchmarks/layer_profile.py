"""Where INT8 gains and where it does not: per-layer ONNX Runtime kernel times of two exports of one model.

    python -m scratchdet.benchmarks.layer_profile RUN/export/model.onnx RUN/export/model-int8-ort.onnx

Both models run under ORT's profiler on the same random image; each convolution kernel is mapped back to
the module that exported it (ORT renames fused nodes: ".../conv1.2/Relu_output_0_nchwc" in FP32,
".../conv1.0/Conv_token_36" in INT8, both module ".../conv1"), and the table prints the two times and
their ratio, largest first. The two models are profiled one after the other, so on a busy machine read
the ratios, not the absolute times, and repeat.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

import numpy as np

CONV_KERNELS = ("Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "ConvInteger")
ORT_SUFFIX = re.compile(r"(_nchwc|_token_\d+)+$")


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


def compare(baseline: dict[str, float], candidate: dict[str, float]) -> list[tuple[str, float, float]]:
    """(layer, baseline ms, candidate ms) for every layer of either, largest baseline time first."""
    layers = sorted(set(baseline) | set(candidate), key=lambda k: (-baseline.get(k, 0.0), k))
    return [(layer, baseline.get(layer, 0.0), candidate.get(layer, 0.0)) for layer in layers]


def format_table(rows: list[tuple[str, float, float]], names: tuple[str, str], top: int) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:6.2f}x" if b > 0 else "      -"

    lines = [f"{names[0]:>10s} {names[1]:>10s}   ratio  layer"]
    lines += [f"{a:9.3f}  {b:9.3f}  {ratio(a, b)}  {layer}" for layer, a, b in rows[:top]]
    convs = [(a, b) for layer, a, b in rows if not layer.startswith("other:")]
    conv_a, conv_b = sum(a for a, _ in convs), sum(b for _, b in convs)
    all_a, all_b = sum(a for _, a, _ in rows), sum(b for _, _, b in rows)
    lines.append(f"{conv_a:9.3f}  {conv_b:9.3f}  {ratio(conv_a, conv_b)}  all convolutions ({len(convs)} layers)")
    lines.append(f"{all_a:9.3f}  {all_b:9.3f}  {ratio(all_a, all_b)}  all kernels (ms per run)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="e.g. the FP32 ONNX")
    parser.add_argument("candidate", help="e.g. its INT8 Q/DQ copy")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="rows to print")
    args = parser.parse_args(argv)
    rows = compare(kernel_times(args.baseline, args.runs, args.threads),
                   kernel_times(args.candidate, args.runs, args.threads))
    print(format_table(rows, (Path(args.baseline).stem, Path(args.candidate).stem), args.top))


if __name__ == "__main__":
    main()
