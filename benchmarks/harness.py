"""`scratchdet bench`: one row per model file: size, GFLOPs, latency split, FPS, throughput, accuracy.

Every model is timed end to end (image in, detections out) through the same Detector API, on the
same real image, interleaved with the others; a model that fails to load or run becomes a row with
its error and the run goes on.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np

from scratchdet.benchmarks.peak import Peak, limit_of, peak_calls, peak_from_rounds
from scratchdet.benchmarks.receipts import is_noisy, receipts, snapshot
from scratchdet.benchmarks.timing import interleave, latency_stats
from scratchdet.models.config import ModelConfig, from_dict
from scratchdet.models.inference.formats import FORMATS, model_metadata
from scratchdet.models.inference.predictor import StageTimes
from scratchdet.models.inference.runtime_choice import cpu_model
from scratchdet.models.info import count_gflops
from scratchdet.models.ssd import SSD
from scratchdet.runtime.detector import Detector
from scratchdet.train.data.load import load_dataset
from scratchdet.train.data.records import DetectionSet
from scratchdet.train.evaluate import validate

log = logging.getLogger(__name__)

PAPER_FPS = 25.0  # ScratchDet300 (Root-ResNet-34) on a GPU, VOC07 test (paper, Table 5)
LIBRARIES = ("torch", "onnxruntime", "openvino", "onnx", "numpy", "opencv-python-headless", "tensorrt")
# --runtime names for .onnx models: Detector options of each.
class RuntimeOptions(TypedDict, total=False):
    """The Detector options a runtime name stands for."""

    runtime: str
    precision_hint: str


RUNTIMES: dict[str, RuntimeOptions] = {
    "ort": {"runtime": "onnxruntime"}, "openvino": {"runtime": "openvino", "precision_hint": "f32"},
    "openvino-bf16": {"runtime": "openvino", "precision_hint": "bf16"}}
STAGES = ("preprocess", "network", "postprocess")
# report name -> StageTimes field; "network" is the backend's run, decoding and NMS included (in the graph,
# or PyTorch's own)
STAGE_TIMES = {"preprocess": "preprocess", "network": "backend", "postprocess": "postprocess"}


@dataclass
class Row:
    name: str
    path: str
    format: str
    precision: str = ""
    runtime: str = ""
    size_mb: float = 0.0
    gflops: float = 0.0
    latency_ms: dict = field(default_factory=dict)  # end to end at batch 1: LatencyStats
    # Per stage (preprocess / network / postprocess), from the same timed calls as latency_ms: each
    # call's end-to-end time contains its stages, so end-to-end p50 >= every stage's p50, and the
    # stage means add up to the end-to-end mean less the call overhead.
    stages_p50_ms: dict = field(default_factory=dict)
    stages_mean_ms: dict = field(default_factory=dict)
    fps: float = 0.0  # 1000 / p50 end-to-end at batch 1
    network_fps: float = 0.0  # 1000 / p50 of the network stage alone
    throughput: dict = field(default_factory=dict)  # batch -> images/s
    map50: float | None = None
    coco_ap: float | None = None
    roofline_fps: float | None = None  # the limit: measured register peak of this precision / GFLOPs
    roofline_fraction: float | None = None  # network FPS / that limit
    relative_speed: float | None = None  # reference-conv ms / network ms: comparable across machines
    noisy: bool = False  # rounds spread beyond receipts.NOISY_BOUND: its speed is not to be trusted
    status: str = "ok"


def environment(threads: int) -> dict:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "platform": platform.platform(), "libraries": versions, "gpu": _gpu()}


def _gpu() -> str | None:
    try:
        from scratchdet.models.inference.cuda_device import gpu_info

        return "{} (sm_{})".format(*gpu_info())
    except Exception:  # no cuda-python, no driver, no GPU: all mean "none here"
        return None


def model_config_of(path: Path) -> ModelConfig:
    """The architecture behind a model file, to count its GFLOPs from the network itself."""
    return from_dict(ModelConfig, model_metadata(path)["model_config"], str(path))


def accuracy(detector: Detector, data: DetectionSet, batch: int = 8) -> tuple[float, float]:
    result = validate(detector, data, batch)
    return result.map50, result.coco_ap


def display_names(paths: list[Path]) -> list[str]:
    """File names, lengthened by parent folders where models share one (bccd_cpu/export/model.onnx)."""
    names = []
    for path in paths:
        depth = 1
        while depth < len(path.parts) and sum(p.parts[-depth:] == path.parts[-depth:] for p in paths) > 1:
            depth += 1
        names.append("/".join(path.parts[-depth:]))
    return names


def _open(path: Path, name: str, threads: int, runtime: str = "ort",
          classes: list[str] | None = None) -> tuple[Row, Detector | None]:
    row = Row(name, str(path), FORMATS[path.suffix].label if path.suffix in FORMATS else path.suffix)
    try:
        torch_threads(threads)
        # No spinning: interleaved sessions would otherwise steal each other's cores between calls.
        options = RUNTIMES[runtime] if path.suffix == ".onnx" else RuntimeOptions()
        detector = Detector(path, conf=0.0, threads=threads, spinning=False, **options)
        backend = detector.backend
        row.precision, row.runtime = backend.precision, f"{backend.name} ({backend.provider})"
        row.size_mb = path.stat().st_size / 1e6
        config = model_config_of(path)
        row.gflops = count_gflops(SSD(config), config.input_size)
        if classes is not None and detector.class_names != classes:
            raise ValueError(f"{path}: the model's classes {detector.class_names} differ from the dataset's "
                             f"{classes}; its accuracy there would be meaningless")
        return row, detector
    except Exception as error:  # a broken model is a failed row, not a failed benchmark
        row.status = f"failed to load: {type(error).__name__}: {error}"
        return row, None


def _runs(row: Row, detector: Detector, image: np.ndarray) -> bool:
    """One call before timing: a model that loads but cannot run becomes a failed row."""
    try:
        detector.detect(image)
        return True
    except Exception as error:
        row.status = f"failed to run: {type(error).__name__}: {error}"
        return False


def torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_benchmark(models: list[str | Path], data: str | Path | None, batches: tuple[int, ...] = (1, 8),
                  repeats: int = 5, per_round: int = 10, threads: int = 2, peak: Peak | None = None,
                  runtimes: tuple[str, ...] = ("ort",)) -> dict:
    """The report as a dict (see `Row`), with environment and peak; timing interleaves all models.

    `runtimes`: each .onnx model runs on each of these (keys of RUNTIMES); other formats run once. With both
    ort and openvino, "runtime_measurements" holds per model precision the end-to-end p50 of each (what
    `--runtime auto` reads, runtime_choice.record).
    """
    before = snapshot()
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}: choose from {', '.join(RUNTIMES)}")
    paths = [Path(m) for m in models]
    val = load_dataset(data, "val") if data else None
    image: np.ndarray | None = cv2.imread(str(val.records[0].path)) if val else np.random.default_rng(0).integers(
        0, 255, (480, 640, 3), dtype=np.uint8)
    if image is None:  # cv2.imread's answer to an unreadable file
        raise ValueError(f"{val.records[0].path if val else data}: cannot read the image")
    classes = val.class_names if val else None
    entries = [(p, name, r) for p, name in zip(paths, display_names(paths))
               for r in (runtimes if p.suffix == ".onnx" else runtimes[:1])]
    opened = [_open(p, name if len(runtimes) == 1 or p.suffix != ".onnx" else f"{name} [{r}]", threads, r, classes)
              for p, name, r in entries]
    live = {f"{row.path}|{row.name}": (row, detector) for row, detector in opened
            if detector is not None and _runs(row, detector, image)}
    calls: dict[str, Callable[[], object]] = {key: partial(d.detect, image) for key, (_, d) in live.items()}
    if peak is None:  # the limits are measured interleaved with the models, under the same conditions
        calls.update(peak_calls(threads))
    stages: dict[str, dict[str, list[float]]] = {key: {s: [] for s in STAGES} for key in live}

    def record_stages(key: str) -> None:  # the stage times of the call just timed, not of warm-up calls
        if key in live:
            for stage in STAGES:
                stages[key][stage].append(getattr(live[key][1].last_times, STAGE_TIMES[stage]))

    rounds = interleave(calls, repeats, per_round, on_sample=record_stages)
    peak = peak or peak_from_rounds(rounds, threads)
    for key, (row, detector) in live.items():
        _fill_speed(row, detector, rounds[key], stages[key], peak, image, batches)
        if val is not None:
            try:
                row.map50, row.coco_ap = accuracy(detector, val)
            except Exception as error:
                row.status = f"accuracy failed: {type(error).__name__}: {error}"
    rows = [row for row, _ in opened]
    return {"environment": environment(threads), "receipts": receipts(threads, before, snapshot()),
            "peak": asdict(peak), "paper_fps": PAPER_FPS, "data": str(data) if data else None, "classes": classes,
            "batches": list(batches), "rows": [asdict(row) for row in rows],
            "runtime_measurements": runtime_measurements([(p, r) for p, _, r in entries], rows, threads)}


def runtime_measurements(entries: list[tuple[Path, str]], rows: list[Row], threads: int) -> dict[str, dict]:
    """Per model precision, the end-to-end p50 of ONNX Runtime and OpenVINO (f32) on the same .onnx file, from
    rows timed interleaved; where several files share a precision, the first one's."""
    timed: dict[Path, dict[str, Row]] = {}
    for (path, runtime), row in zip(entries, rows):
        if row.status == "ok" and runtime in ("ort", "openvino"):
            timed.setdefault(path, {})[runtime] = row
    result: dict[str, dict] = {}
    for path, pair in timed.items():
        if len(pair) == 2:
            ort, openvino = pair["ort"], pair["openvino"]
            result.setdefault(ort.precision, {
                "p50_ms": {"onnxruntime": ort.latency_ms["p50"], "openvino": openvino.latency_ms["p50"]},
                "threads": threads, "model": str(path), "noisy": ort.noisy or openvino.noisy})
    return result


def _timed(detector: Detector, image: np.ndarray | list[np.ndarray]) -> StageTimes:
    detector.detect(image)
    if detector.last_times is None:
        raise RuntimeError(f"{type(detector).__name__}.detect recorded no stage times")
    return detector.last_times


def _fill_speed(row: Row, detector: Detector, rounds: list[list[float]], stages: dict[str, list[float]],
                peak: Peak, image: np.ndarray, batches: tuple[int, ...]) -> None:
    stats = latency_stats(rounds)
    row.latency_ms = stats.as_dict()
    row.stages_p50_ms = {stage: float(np.median(samples)) for stage, samples in stages.items()}
    row.stages_mean_ms = {stage: float(np.mean(samples)) for stage, samples in stages.items()}
    row.fps = 1000.0 / stats.p50
    row.network_fps = 1000.0 / row.stages_p50_ms["network"]
    peak_rate = limit_of(peak, row.precision)
    row.roofline_fps = peak_rate / row.gflops if row.gflops else None
    row.roofline_fraction = row.network_fps / row.roofline_fps if row.roofline_fps else None
    row.relative_speed = peak.reference_ms / row.stages_p50_ms["network"]
    row.noisy = is_noisy(row.latency_ms)
    for batch in (b for b in batches if b > 1):
        images = [image] * batch
        detector.detect(images)  # warm-up at this batch size
        totals = [_timed(detector, images).total for _ in range(3)]
        row.throughput[str(batch)] = batch * 1000.0 / float(np.median(totals))


def failed_rows(report: dict) -> list[dict]:
    """Rows whose model failed to load, run or score."""
    return [row for row in report["rows"] if row["status"] != "ok"]
