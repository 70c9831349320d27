"""What box decoding and NMS in the graph cost, on ONNX Runtime CPU.

    python -m scratchdet.benchmarks.studies.nms_overhead --config ssd300_root_resnet34        # random weights
    python -m scratchdet.benchmarks.studies.nms_overhead --model runs/bccd_cpu/best.pt --data ../shared/datasets/bccd

Prints (1) the NMS tail alone on realistic scores (few candidates pass 0.01) and on uniform scores (every
candidate passes: an untrained model; bounded by the per-class top-k), (2) the full exported graph vs
the same network exported without decoding and NMS, timed A/B-interleaved on real or random images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import onnx

from scratchdet.arguments import positive_int
from scratchdet.benchmarks.timing import interleave, latency_stats, speed_ratios
from scratchdet.export.nms_graph import nms_tail_model
from scratchdet.export.onnx_export import ExportOptions, export_network_only, export_onnx
from scratchdet.flags import add_model_argument
from scratchdet.models.checkpoint import load_model
from scratchdet.models.config import load_model_config
from scratchdet.models.inference.onnxruntime_backend import create_session
from scratchdet.models.ssd import SSD


def tail_inputs(num_priors: int, num_classes: int, uniform: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Decoded boxes in a 300-pixel frame and softmax scores: uniform (untrained) or peaked (trained-like)."""
    rng = np.random.default_rng(seed)
    centres, sizes = rng.uniform(0, 300, (1, num_priors, 2)), rng.uniform(10, 120, (1, num_priors, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=-1).astype(np.float32)
    logits = rng.normal(0, 1, (1, num_priors, num_classes + 1))
    if not uniform:
        logits[..., 0] += 7  # background wins almost everywhere...
        hits = rng.choice(num_priors, 60, replace=False)  # ...except around 60 priors on objects
        logits[0, hits, rng.integers(1, num_classes + 1, 60)] += 12
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return {"boxes": boxes, "scores": scores[..., 1:].astype(np.float32)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="random weights of this config (speed does not depend on weights)")
    add_model_argument(parser, "checkpoint (.pt) instead of --config", deprecated=("--weights",), required=False)
    parser.add_argument("--data", help="dataset whose val images feed the A/B timing (default: random)")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=7)
    args = parser.parse_args(argv)
    if not (args.model or args.config):
        parser.error("give --model CKPT or --config CFG")
    if args.model:
        model, checkpoint = load_model(args.model)
        names = checkpoint["class_names"]
    else:
        model = SSD(load_model_config(args.config)).eval()
        names = [f"class{i}" for i in range(1, model.config.num_classes)]
    priors, classes, size = int(model.priors.shape[0]), len(names), model.config.input_size
    with tempfile.TemporaryDirectory() as folder:
        tail_path = Path(folder) / "tail.onnx"
        onnx.save(nms_tail_model(priors, classes, model.config.postprocess), str(tail_path))
        tail = create_session(tail_path, args.threads)
        feeds = {kind: tail_inputs(priors, classes, kind == "uniform") for kind in ("realistic", "uniform")}
        rounds = interleave({k: partial(tail.run, None, f) for k, f in feeds.items()}, args.repeats, 10)
        for kind in feeds:
            stats = latency_stats(rounds[kind])
            print(f"NMS tail alone, {kind} scores ({priors} priors x {classes} classes): p50 {stats.p50:.2f} ms, "
                  f"p90 {stats.p90:.2f} ms")
        full = export_onnx(model, names, Path(folder) / "full.onnx", ExportOptions()).path
        network = export_network_only(model, Path(folder) / "network.onnx")
        images = _images(args.data, size)
        sessions = {"network": create_session(network, args.threads, spinning=False),
                    "full": create_session(full, args.threads, spinning=False)}
        state = {"i": 0}

        def runner(name: str):
            def call() -> None:
                state["i"] = (state["i"] + 1) % len(images)
                sessions[name].run(None, {"images": images[state["i"]][None]})
            return call

        rounds = interleave({name: runner(name) for name in sessions}, args.repeats, 10)
        ratios = speed_ratios(rounds["full"], rounds["network"])  # full ms / network ms
        network_p50, full_p50 = (latency_stats(rounds[n]).p50 for n in ("network", "full"))
        print(f"network only p50 {network_p50:.1f} ms ({1000 / network_p50:.2f} FPS); full graph p50 "
              f"{full_p50:.1f} ms ({1000 / full_p50:.2f} FPS)")
        print(f"full / network time: median {np.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}), "
              f"target <= 1.05")


def _images(data: str | None, size: int) -> np.ndarray:
    if data:
        from scratchdet.train.data.load import load_dataset
        from scratchdet.train.evaluate import dataset_batch

        return dataset_batch(load_dataset(data, "val").records[:8], size)
    return np.random.default_rng(0).uniform(0, 255, (8, 3, size, size)).astype(np.float32)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, RuntimeError) as error:  # a bad file or value: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
