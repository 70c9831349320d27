"""`make gpu-check`: the TensorRT path proved in one command on the first host with a GPU and TensorRT.

    python -m scratchdet.benchmarks.gpu_check --data DATA [--model CKPT] [--out runs/gpu-check]
    python -m scratchdet.benchmarks.gpu_check --data DATA --dry-run      # report format on ONNX Runtime

Steps: check TensorRT, cuda-python and a GPU (else one line naming what is missing, exit 1); train the tiny
config briefly unless --model is given; export FP32, convert FP16, quantise INT8 (TensorRT flavour); build
the three engines; run `pytest -m tensorrt`; compare each engine with ONNX Runtime FP32 (mAP on the val split
and detections at the deployment threshold, within TOLERANCES); time the network at batch 1 and at the
profile's max batch; write OUT/report.json and OUT/report.md. --dry-run runs the FP32/FP16/INT8 ONNX models
on ONNX Runtime in place of engines, to show the report; its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchdet.flags import add_model_argument

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Tolerance:
    """An engine passes when |mAP50 - ORT FP32| <= map50 and `matched` of ORT's detections are found again
    (same class, IoU >= iou, score within score)."""

    map50: float
    matched: float
    iou: float
    score: float


TOLERANCES = {"fp32": Tolerance(0.005, 0.99, 0.99, 0.001), "fp16": Tolerance(0.01, 0.95, 0.95, 0.01),
              "int8": Tolerance(0.03, 0.80, 0.80, 0.05)}


def missing_requirements() -> list[str]:
    """What this host lacks for the TensorRT path (empty when everything is there)."""
    from scratchdet.models.inference.cuda_device import CudaError, gpu_info
    from scratchdet.models.inference.tensorrt_backend import import_tensorrt

    missing = []
    try:
        import_tensorrt()
    except ImportError:
        missing.append("TensorRT Python bindings (pip install tensorrt, or JetPack's python3-libnvinfer)")
    try:
        gpu_info()
    except CudaError as error:
        missing.append(f"a usable NVIDIA GPU through cuda-python ({error})")
    return missing


def latency(run, batch: np.ndarray, warmup: int, iterations: int) -> dict[str, float]:
    """Milliseconds per call of run(batch): mean, p50, p90, p95, p99, and images per second."""
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - started) * 1e3)
    ms = np.array(times)
    stats = {"mean": float(ms.mean()), **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 95, 99)}}
    return {**stats, "throughput": len(batch) * 1e3 / stats["mean"], "batch": len(batch), "iterations": iterations}


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    low, high = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    areas = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(areas - inter, 1e-9)


def matched_fraction(reference: list, candidate: list, tolerance: Tolerance) -> tuple[float, int, int]:
    """(share of reference detections found in candidate, reference count, candidate count) over all images.

    Found: a candidate of the same class whose box has IoU >= tolerance.iou with it or lies within 1 pixel
    of it (boxes clipped to the image edge can have no area), with a score within tolerance.score.
    """
    found = total = count = 0
    for ref, cand in zip(reference, candidate):
        total, count = total + len(ref.scores), count + len(cand.scores)
        for box, score, class_id in zip(ref.boxes, ref.scores, ref.class_ids):
            same = cand.class_ids == class_id
            if not same.any():
                continue
            boxes, scores = cand.boxes[same], cand.scores[same]
            near = (_iou(box, boxes) >= tolerance.iou) | (np.abs(boxes - box).max(axis=1) <= 1.0)
            found += bool((near & (np.abs(scores - score) <= tolerance.score)).any())
    return (found / total if total else 1.0), total, count


def _train(data: Path, out: Path, epochs: int) -> Path:
    from dataclasses import replace

    from scratchdet.train.config import load_config
    from scratchdet.train.trainer import Trainer

    model_config, train_config = load_config("tiny")
    Trainer(model_config, replace(train_config, epochs=epochs, eval_every=epochs), data, out).fit()
    return out / "last.pt"


def _models(weights: Path, data: Path, out: Path) -> dict[str, Path]:
    """FP32, FP16 and INT8 (TensorRT flavour) ONNX of the checkpoint."""
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(weights)
    fp32 = export_onnx(model, checkpoint["class_names"], out / "export" / "model.onnx", ExportOptions()).path
    return {"fp32": fp32, "fp16": convert_fp16(fp32, out / "export" / "model-fp16.onnx"),
            "int8": quantize_int8(fp32, data, "tensorrt", out / "export" / "model-int8-tensorrt.onnx",
                                  CalibrationOptions(images=32))}


def _engines(onnx: dict[str, Path], max_batch: int) -> dict[str, Path]:
    import tensorrt

    from scratchdet.export.engine_plan import make_plan
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.models.contract import load_checked

    engines = {}
    for precision, path in onnx.items():
        _, metadata = load_checked(path)
        plan = make_plan(path, metadata, precision, tensorrt.__version__, (1, 1, max_batch))
        engines[precision] = build_engine(plan, metadata)
    return engines


def _pytest_tensorrt() -> dict[str, Any]:
    tests = Path(__file__).resolve().parents[1] / "tests"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "tensorrt", str(tests)],
                            capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return {"exit_code": result.returncode, "summary": lines[-1] if lines else result.stderr[-300:]}


def _measure(name: str, model: Path, data, images: list, batch_one: np.ndarray, max_batch: int,
             iterations: int) -> tuple[dict[str, Any], list]:
    from scratchdet.benchmarks.harness import accuracy
    from scratchdet.runtime.detector import Detector

    # runtime=None: each format's first runtime (ONNX Runtime with CUDA for .onnx), not auto's CPU choice
    with Detector(model, conf=0.0, runtime=None) as evaluation:  # the in-graph NMS keeps the evaluation threshold
        map50, coco_ap = accuracy(evaluation, data)
    # the model's deployment threshold: detections are compared where users see them
    deployed = Detector(model, runtime=None)
    detections = deployed.detect(images)
    many = np.repeat(batch_one, max_batch, axis=0)
    row = {"name": name, "model": str(model), "precision": deployed.backend.precision, "map50": map50,
           "coco_ap": coco_ap, "deploy_conf": deployed.conf,
           "batch_1": latency(deployed.backend.infer, batch_one, 10, iterations),
           f"batch_{max_batch}": latency(deployed.backend.infer, many, 3, max(iterations // 4, 5))}
    deployed.close()
    return row, detections


def run(data: Path, out: Path, weights: Path | None, dry_run: bool, max_batch: int, iterations: int,
        epochs: int) -> dict[str, Any]:
    """Everything after the requirements check; returns the report (also written to out)."""
    import cv2

    from scratchdet.benchmarks.harness import environment
    from scratchdet.train.data.load import load_dataset
    from scratchdet.train.evaluate import dataset_batch

    out.mkdir(parents=True, exist_ok=True)
    weights = weights or _train(data, out / "train", epochs)
    onnx = _models(weights, data, out)
    candidates = onnx if dry_run else _engines(onnx, max_batch)
    tests = {"exit_code": None, "summary": "not run (dry run)"} if dry_run else _pytest_tensorrt()
    val = load_dataset(data, "val")
    images = [cv2.imread(str(r.path), cv2.IMREAD_UNCHANGED) for r in val.records]
    batch_one = dataset_batch(val.records[:1], _input_size(onnx["fp32"]))
    reference, ref_detections = _measure("ONNX Runtime fp32 (reference)", onnx["fp32"], val, images, batch_one,
                                         max_batch, iterations)
    rows = [reference]
    for precision, model in candidates.items():
        row, detections = _measure(f"{'ONNX Runtime' if dry_run else 'TensorRT'} {precision}", model, val, images,
                                   batch_one, max_batch, iterations)
        tolerance = TOLERANCES[precision]
        share, ref_count, count = matched_fraction(ref_detections, detections, tolerance)
        delta = row["map50"] - reference["map50"]
        row.update(map50_delta=delta, matched=share, detections=count, reference_detections=ref_count,
                   tolerance=tolerance.__dict__, passed=bool(abs(delta) <= tolerance.map50
                                                             and share >= tolerance.matched))
        rows.append(row)
    report = {"dry_run": dry_run, "environment": environment(os.cpu_count() or 1), "data": str(data),
              "weights": str(weights), "images": len(images), "deploy_conf": reference["deploy_conf"],
              "max_batch": max_batch,
              "pytest_tensorrt": tests, "rows": rows,
              "passed": all(r.get("passed", True) for r in rows) and tests["exit_code"] in (0, None)}
    _write(out, report)
    return report


def _input_size(onnx: Path) -> int:
    from scratchdet.models.contract import load_checked

    return int(load_checked(onnx)[1]["input_size"])


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, the dry-run banner first when it is one."""
    lines = []
    if report["dry_run"]:
        lines += ["**DRY RUN on ONNX Runtime (CPU): no TensorRT engine was built or run. The rows show the report's "
                  "format; their numbers say nothing about a GPU.**", ""]
    batch = f"batch_{report['max_batch']}"
    lines += [f"`pytest -m tensorrt`: {report['pytest_tensorrt']['summary']}", "",
              f"{report['images']} val images; detections compared at score >= {report['deploy_conf']}; latency is "
              f"the network (backend.infer, NMS included) in ms.", "",
              "| model | mAP50 | Δ mAP50 | COCO AP | matched | dets (ref) | b1 mean | p50 | p90 | p95 | p99 "
              f"| b1 img/s | b{report['max_batch']} p50 | b{report['max_batch']} img/s | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        one, many = row["batch_1"], row[batch]
        verdict = "reference" if "passed" not in row else ("PASS" if row["passed"] else "FAIL")
        delta = f"{row['map50_delta']:+.4f}" if "map50_delta" in row else ""
        matched = f"{row['matched']:.1%}" if "matched" in row else ""
        dets = f"{row['detections']} ({row['reference_detections']})" if "detections" in row else ""
        lines.append(f"| {row['name']} | {row['map50']:.4f} | {delta} | {row['coco_ap']:.4f} | {matched} | {dets} | "
                     f"{one['mean']:.2f} | {one['p50']:.2f} | {one['p90']:.2f} | {one['p95']:.2f} | {one['p99']:.2f} | "
                     f"{one['throughput']:.1f} | {many['p50']:.2f} | {many['throughput']:.1f} | {verdict} |")
    lines += ["", "Tolerances vs ONNX Runtime FP32: " + "; ".join(
        f"{p} |Δ mAP50| <= {t.map50}, >= {t.matched:.0%} matched (IoU >= {t.iou}, score ±{t.score})"
        for p, t in TOLERANCES.items()), "", f"Overall: {'PASS' if report['passed'] else 'FAIL'}", ""]
    return "\n".join(lines)


def _write(out: Path, report: dict[str, Any]) -> None:
    for name, text in (("report.json", json.dumps(report, indent=2)), ("report.md", markdown(report))):
        temporary = out / f".{name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchdet.benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset (train split calibrates INT8, val split is measured)")
    add_model_argument(parser, "checkpoint (default: train the tiny config --epochs epochs)", deprecated=("--weights",),
                       required=False, type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--dry-run", action="store_true", help="ONNX Runtime in place of engines: the report format")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=200, help="timed calls at batch 1")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.dry_run:
        missing = missing_requirements()
        if missing:
            print(f"gpu-check: cannot run here, missing: {'; '.join(missing)} (try --dry-run for the report format)",
                  file=sys.stderr)
            return 1
    report = run(Path(args.data), args.out, args.model, args.dry_run, args.max_batch, args.iterations, args.epochs)
    print(markdown(report))
    print(f"report: {args.out / 'report.md'} and report.json")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
