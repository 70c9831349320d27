"""`make gpu-check`: the TensorRT path proved in one command on the first host with a GPU and TensorRT.

    python -m scratchdet.benchmarks.gpu_check --data DATA [--model CKPT] [--out runs/gpu-check]
    python -m scratchdet.benchmarks.gpu_check --data DATA --prepare-only     # CPU side: the ONNX models only
    python -m scratchdet.benchmarks.gpu_check --data DATA --models DIR       # GPU side, no torch needed
    python -m scratchdet.benchmarks.gpu_check --data DATA --dry-run          # every stage; ONNX Runtime where it can

Every stage (STAGES) runs on its own: an exception becomes that stage's FAIL row with the error, the next
stages still run (those that need its output FAIL saying so), and OUT/report.json and OUT/report.md are
rewritten after each stage, so a failed build still leaves the report. The verdict is PASS only when every
stage passed; a skipped `pytest -m tensorrt` test is a FAIL. --dry-run shows every stage, runs the ones that
have an ONNX Runtime equivalent on ONNX Runtime (their numbers say nothing about a GPU) and marks the rest
NOT RUN with what they would do.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from scratchdet.arguments import positive_int
from scratchdet.benchmarks.stages import NOT_RUN, PASS, Outcome, StageError, require, run_stage, verdict, write_report
from scratchdet.export.engine_layers import LayerInformationError, layers_from_inspector_json
from scratchdet.export.engine_layers import convolution_precisions as engine_convolution_precisions
from scratchdet.flags import add_model_argument
from scratchdet.models.boxes import Tolerance, matched_count, tolerance
from scratchdet.models.contract import ENGINE_PRECISIONS as PRECISIONS

MODEL_FILES = {"fp32": "model.onnx", "fp16": "model-fp16.onnx", "int8": "model-int8-tensorrt.onnx",
               "random": "model-random.onnx", "network": "network.onnx", "bundle": "bundle"}
BATCHES = (1, 3)  # and the profile's max: batch invariance
MEMORY_CYCLES = 50
MEMORY_GROWTH_MIB = 16  # allowed drift of cudaMemGetInfo's free memory over the cycles (allocator noise)
GRAPH_ATOL = 1e-5  # a replayed CUDA graph runs the same kernels as the uncaptured enqueue


def gpu_tolerance(precision: str) -> Tolerance:
    """The engine-vs-ONNX Runtime FP32 tolerance of a precision (FP32 engines are built without TF32, so held
    to FP32 tolerances)."""
    return tolerance(f"gpu-{precision}")


# ---------------------------------------------------------------------------------------------------------------
# The stages' rows (the runner, report writer and verdict are benchmarks/stages.py's)


@dataclass(frozen=True)
class Stage:
    name: str
    what: str  # what it checks, shown in the report and by --dry-run
    run: Callable[[Any], Outcome]
    dry_run: str | None = None  # what it runs in a dry run; None: TensorRT only (NOT RUN)
    dry_run_on: str = "ONNX Runtime"  # where that runs


def run_stages(stages: list[Stage], context: Any, dry_run: bool,
               write: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Run every stage in turn, each on its own (stages.run_stage); rows are written (write(rows)) after each."""
    rows: list[dict[str, Any]] = []
    for stage in stages:
        row: dict[str, Any] = {"stage": stage.name, "what": stage.what}
        if dry_run and stage.dry_run is None:
            row.update(status=NOT_RUN, ran_on="-", detail="would run on TensorRT (needs a GPU)")
        else:
            row["ran_on"] = stage.dry_run_on if dry_run else "TensorRT"
            if dry_run:
                row["what"] = f"{stage.what} (dry run: {stage.dry_run})"
            result = run_stage(partial(stage.run, context))
            row.update(status=result.status, detail=result.detail)
            if result.status == PASS:
                row["data"] = result.data
            row["seconds"] = result.seconds
        rows.append(row)
        write(rows)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Decisions, each a plain function tested without a GPU


@dataclass(frozen=True)
class PytestOutcome:
    tests: int
    failures: int
    errors: int
    skipped: list[str]  # "test id: reason" per skipped test

    @property
    def passed(self) -> bool:
        """Passed only when tests ran and none failed, errored or was skipped: a skip on a GPU host is a fault."""
        return self.tests > 0 and not self.failures and not self.errors and not self.skipped

    def summary(self) -> str:
        ran = self.tests - self.failures - self.errors - len(self.skipped)
        text = f"{self.tests} tests: {ran} passed, {self.failures} failed, {self.errors} errors, " \
               f"{len(self.skipped)} skipped"
        return text + (f" (skipped counts as FAIL: {'; '.join(self.skipped[:5])})" if self.skipped else "")


def pytest_outcome(junit_xml: str) -> PytestOutcome:
    """pytest's --junitxml report (built in, no plugin) as counts and the skipped tests with their reasons."""
    root = ElementTree.fromstring(junit_xml)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = 0
    skipped = []
    for suite in suites:
        for case in suite.iter("testcase"):
            tests += 1
            failures += case.find("failure") is not None
            errors += case.find("error") is not None
            skip = case.find("skipped")
            if skip is not None:  # a module skipped at collection says why in the text, not the message
                reason = skip.get("message", "")
                if reason == "collection skipped" and skip.text:
                    reason = skip.text.rsplit("Skipped: ", 1)[-1].strip().removesuffix("')")
                name = ".".join(part for part in (case.get("classname"), case.get("name")) if part)
                skipped.append(f"{name}: {reason}")
    return PytestOutcome(tests, failures, errors, skipped)


def detection_differences(reference: Any, candidate: Any, atol: float) -> str | None:
    """None when two images' detections are the same (count, classes, boxes and scores within atol), else why."""
    if len(reference.scores) != len(candidate.scores):
        return f"{len(reference.scores)} vs {len(candidate.scores)} detections"
    if not np.array_equal(reference.class_ids, candidate.class_ids):
        return "classes differ"
    box = float(np.abs(reference.boxes - candidate.boxes).max(initial=0.0))
    score = float(np.abs(reference.scores - candidate.scores).max(initial=0.0))
    if box > atol * max(1.0, float(np.abs(reference.boxes).max(initial=0.0))) or score > atol:
        return f"boxes differ by {box:.3g} px, scores by {score:.3g}"
    return None


def batch_mismatches(runs: dict[int, list[Any]], atol: float) -> list[str]:
    """Images whose detections at some batch size differ from batch 1's: 'image 4 at batch 8: 3 vs 2 ...'."""
    reference = runs[min(runs)]
    found = []
    for batch, detections in sorted(runs.items()):
        for index, (a, b) in enumerate(zip(reference, detections)):
            difference = detection_differences(a, b, atol)
            if difference:
                found.append(f"image {index} at batch {batch}: {difference}")
    return found


def memory_growth_mib(free_bytes: list[int]) -> float:
    """Device memory lost over the cycles (free before the first minus free after the last), in MiB."""
    return (free_bytes[0] - free_bytes[-1]) / 2**20


def convolution_precisions(engine_information: str) -> tuple[int, list[str]]:
    """(convolution layers, names of those not in INT8) from IEngineInspector's JSON (ProfilingVerbosity.DETAILED),
    read by the same layer parser as TensorRT-RTX's build log (export/engine_layers.py).

    Raises:
        StageError: the information has no layer parameters (the engine was not built DETAILED).
    """
    try:
        return engine_convolution_precisions(layers_from_inspector_json(engine_information))
    except LayerInformationError as error:
        raise StageError(str(error)) from None


# ---------------------------------------------------------------------------------------------------------------
# The stages


@dataclass
class Context:
    data: Path
    out: Path
    weights: Path | None
    models_dir: Path | None
    dry_run: bool
    max_batch: int
    iterations: int
    epochs: int
    onnx: dict[str, Path] = field(default_factory=dict)
    engines: dict[str, Path] = field(default_factory=dict)
    bundle_engines: dict[str, Path] = field(default_factory=dict)
    val: Any = None
    images: list = field(default_factory=list)

    def candidates(self) -> dict[str, Path]:
        """What the accuracy and runtime stages run: the engines, or in a dry run the ONNX models."""
        return {p: self.onnx[p] for p in PRECISIONS if p in self.onnx} if self.dry_run else dict(self.engines)


def environment_record() -> dict[str, Any]:
    """Driver, CUDA runtime, cuda-python, TensorRT, GPU name and compute capability ('absent: why' when missing)."""
    from scratchdet.models.inference.cuda_device import CudaError, cuda_versions, gpu_info, version_text
    from scratchdet.models.inference.tensorrt_backend import import_tensorrt

    record: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        versions = cuda_versions()
        record.update(driver_cuda=version_text(versions.driver) if versions.driver else "absent: no NVIDIA driver",
                      cuda_runtime=version_text(versions.runtime), cuda_python=versions.bindings)
    except CudaError as error:
        record.update(driver_cuda=f"absent: {error}", cuda_runtime="absent", cuda_python="absent")
    try:
        record["tensorrt"] = import_tensorrt().__version__
    except ImportError as error:
        record["tensorrt"] = f"absent: {error}"
    try:
        record["gpu"], record["compute_capability"] = gpu_info()
    except CudaError as error:
        record["gpu"], record["compute_capability"] = f"absent: {error}", "absent"
    for name in ("numpy", "onnx", "onnxruntime", "opencv-python-headless"):
        try:
            record[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            record[name] = "absent"
    return record


def stage_environment(context: Context) -> Outcome:
    from scratchdet.models.inference.cuda_device import checked_versions

    record = environment_record()
    if not context.dry_run:
        checked_versions()  # a driver older than cuda-python's runtime fails here, naming both
    return Outcome(", ".join(f"{k} {v}" for k, v in record.items() if k not in ("platform", "python")), record)


def stage_models(context: Context) -> Outcome:
    if context.models_dir is not None:
        found = {kind: context.models_dir / name for kind, name in MODEL_FILES.items()}
        missing = [str(path) for path in found.values() if not path.exists()]
        if missing:
            raise StageError(f"--models {context.models_dir} lacks {', '.join(missing)} "
                              f"(write them with --prepare-only on a machine with torch)")
        context.onnx = found
        return Outcome(f"given in {context.models_dir}", {k: str(v) for k, v in found.items()})
    weights = context.weights or _train(context.data, context.out / "train", context.epochs)
    context.onnx = prepare_models(weights, context.data, context.out / "models")
    return Outcome(f"from {weights}: {', '.join(sorted(context.onnx))}",
                   {"weights": str(weights), **{k: str(v) for k, v in context.onnx.items()}})


def _train(data: Path, out: Path, epochs: int) -> Path:
    from dataclasses import replace

    from scratchdet.train.config import load_config
    from scratchdet.train.trainer import Trainer

    model_config, train_config = load_config("tiny")
    Trainer(model_config, replace(train_config, epochs=epochs, eval_every=epochs), data, out).fit()
    return out / "last.pt"


def prepare_models(weights: Path, data: Path, folder: Path) -> dict[str, Path]:
    """FP32, FP16, INT8 (TensorRT flavour) ONNX of the checkpoint; a randomly initialised model whose every
    score passes the in-graph NMS threshold (edge inputs); the network without decoding and NMS (NMS tail);
    the deployable bundle (build_engine.sh), made here as it is for a device."""
    from dataclasses import replace

    from scratchdet.export.bundle import make_bundle
    from scratchdet.export.onnx_export import ExportOptions, export_network_only, export_onnx
    from scratchdet.export.quantize import CalibrationOptions, convert_fp16, quantize_int8
    from scratchdet.models.checkpoint import load_model
    from scratchdet.models.ssd import SSD

    model, checkpoint = load_model(weights)
    names = checkpoint["class_names"]
    fp32 = export_onnx(model, names, folder / MODEL_FILES["fp32"], ExportOptions()).path
    random = SSD(model.config).eval()  # untrained: scores near 1/classes, all above a 0 threshold
    every_score = replace(model.config.postprocess, score_threshold=0.0)
    return {"fp32": fp32, "fp16": convert_fp16(fp32, folder / MODEL_FILES["fp16"]),
            "int8": quantize_int8(fp32, data, "tensorrt", folder / MODEL_FILES["int8"], CalibrationOptions(images=32)),
            "random": export_onnx(random, names, folder / MODEL_FILES["random"],
                                  ExportOptions(postprocess=every_score)).path,
            "network": export_network_only(model, folder / MODEL_FILES["network"]),
            "bundle": make_bundle(fp32, data, folder / MODEL_FILES["bundle"], CalibrationOptions(images=32),
                                  tarball=False)}


def _build(onnx: Path, precision: str, max_batch: int, out: Path, metadata_of: Path | None = None) -> Path:
    """An engine through the Python builder; `metadata_of`: the ONNX whose contract metadata the sidecar
    carries, for a graph without one (the network alone)."""
    import tensorrt

    from scratchdet.export.engine_plan import make_plan
    from scratchdet.export.tensorrt_build import build_engine
    from scratchdet.models.contract import load_checked

    _, model_metadata = load_checked(metadata_of or onnx)
    plan = make_plan(onnx, model_metadata, precision, tensorrt.__version__, (1, 1, max_batch),
                     out=out / f"{onnx.stem}-{precision}.engine")
    return build_engine(plan, model_metadata)


def _build_stage(precision: str) -> Callable[[Context], Outcome]:
    def build(context: Context) -> Outcome:
        require(context, "onnx")
        context.engines[precision] = _build(context.onnx[precision], precision, context.max_batch,
                                            context.out / "engines")
        return Outcome(str(context.engines[precision]))
    return build


def stage_bundle(context: Context) -> Outcome:
    """The bundle's build_engine.sh builds the engines; each loads with its sidecar; a wrong sidecar is refused."""
    require(context, "onnx")
    from scratchdet.export.bundle import ENGINES
    from scratchdet.models.contract import EngineMismatchError
    from scratchdet.models.files import write_bytes, write_text
    from scratchdet.runtime.detector import Detector

    if not context.images:
        _load_val(context)
    bundle = context.onnx["bundle"]
    result = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        raise StageError(f"build_engine.sh exited {result.returncode}: {result.stderr.strip()[-500:]}")
    counts = {}
    for precision, relative in ENGINES.items():
        engine = bundle / relative
        context.bundle_engines[precision] = engine
        with Detector(engine, conf=0.0) as detector:
            counts[precision] = sum(len(d.scores) for d in detector.detect(context.images[:4]))
    wrong = context.out / "wrong-sidecar" / Path(ENGINES["fp16"]).name
    wrong.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(wrong, (bundle / ENGINES["fp16"]).read_bytes())
    values = json.loads((bundle / ENGINES["fp16"]).with_suffix(".json").read_text())
    values["gpu_name"] = f"not {values['gpu_name']}"
    write_text(wrong.with_suffix(".json"), json.dumps(values))
    try:
        Detector(wrong).close()
    except EngineMismatchError as error:
        return Outcome(f"built {', '.join(counts)} with build_engine.sh, each loaded with its sidecar "
                       f"(detections on 4 images: {counts}); wrong sidecar refused: {str(error)[:120]}",
                       {"detections": counts})
    raise StageError(f"{wrong}: an engine whose sidecar names another GPU was loaded, not refused")


def stage_int8_layers(context: Context) -> Outcome:
    """Every INT8 engine's convolutions run in INT8 (IEngineInspector)."""
    import tensorrt

    from scratchdet.models.files import write_text

    engines = {name: path for name, path in (("python", context.engines.get("int8")),
                                             ("build_engine.sh", context.bundle_engines.get("int8"))) if path}
    if not engines:
        raise StageError("needs the INT8 engines from the build stages, which failed")
    found, problems = {}, []
    for name, path in engines.items():
        runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise StageError(f"{path}: TensorRT could not deserialize the engine")
        inspector = engine.create_engine_inspector()
        information = inspector.get_engine_information(tensorrt.LayerInformationFormat.JSON)
        write_text(path.with_suffix(".layers.json"), information)
        try:
            convolutions, not_int8 = convolution_precisions(information)
        except StageError as error:
            problems.append(f"{name} engine {path.name}: {error}")
            continue
        found[name] = {"convolutions": convolutions, "not_int8": not_int8}
        if not convolutions or not_int8:
            problems.append(f"{name} engine {path.name}: {len(not_int8)} of {convolutions} convolutions not in "
                            f"INT8 ({', '.join(not_int8[:3])})")
    if problems:
        raise StageError("; ".join(problems))
    return Outcome("; ".join(f"{n}: all {v['convolutions']} convolutions INT8" for n, v in found.items()), found)


def stage_pytest(context: Context) -> Outcome:
    """`pytest -m tensorrt`, its outcome read from the junit XML: a skip is a FAIL."""
    import os

    # The files holding `tensorrt` tests, not all of tests/: collecting the rest imports torch, which a deploy
    # install lacks (requirements/deploy-cu12.txt).
    tests = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "test_tensorrt.py"
    report = context.out / "pytest-tensorrt.xml"
    env = {**os.environ}
    if context.models_dir is not None:
        env["SCRATCHDET_GPU_MODELS"] = str(context.models_dir)  # tests/conftest.py: no training without torch
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "tensorrt", "-p", "no:cacheprovider",
                             f"--junitxml={report}", str(tests)], capture_output=True, text=True, env=env)
    if not report.is_file():
        raise StageError(f"pytest exited {result.returncode} without a report: {result.stdout[-300:]}")
    outcome = pytest_outcome(report.read_text())
    if not outcome.passed:
        raise StageError(outcome.summary())
    return Outcome(outcome.summary(), {"exit_code": result.returncode})


def _load_val(context: Context) -> None:
    import cv2

    from scratchdet.train.data.load import load_dataset

    context.val = load_dataset(context.data, "val")
    context.images = [cv2.imread(str(r.path), cv2.IMREAD_UNCHANGED) for r in context.val.records]


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


def _measure(name: str, model: Path, context: Context) -> tuple[dict[str, Any], list]:
    from scratchdet.models.inference.preprocess import prepare
    from scratchdet.runtime.detector import Detector
    from scratchdet.train.evaluate import validate

    # runtime=None: each format's first runtime (ONNX Runtime, with CUDA where it has it), not auto's CPU choice.
    # conf=0.0 keeps what the in-graph NMS kept (evaluation); the default conf is the deployment threshold.
    with Detector(model, conf=0.0, runtime=None) as evaluation:
        result = validate(evaluation, context.val, 8)
    with Detector(model, runtime=None) as deployed:
        detections = deployed.detect(context.images)
        batch_one = prepare(context.images[:1], deployed.input_size, "bgr")[0]
        many = np.repeat(batch_one, context.max_batch, axis=0)
        row = {"name": name, "model": str(model), "precision": deployed.backend.precision, "map50": result.map50,
               "coco_ap": result.coco_ap, "deploy_conf": deployed.conf,
               "batch_1": latency(deployed.backend.infer, batch_one, 10, context.iterations),
               f"batch_{context.max_batch}": latency(deployed.backend.infer, many, 3, max(context.iterations // 4, 5))}
    return row, detections


def stage_accuracy(context: Context) -> Outcome:
    """Each engine against ONNX Runtime FP32: mAP50 and detections at the deployment threshold; latency."""
    require(context, "onnx")
    _load_val(context)
    reference, ref_detections = _measure("ONNX Runtime fp32 (reference)", context.onnx["fp32"], context)
    rows, failed = [reference], []
    candidates = context.candidates()
    if not candidates:
        raise StageError("needs the engines from the build stages, which failed")
    for precision, model in candidates.items():
        row, detections = _measure(f"{'ONNX Runtime' if context.dry_run else 'TensorRT'} {precision}", model, context)
        tolerance = gpu_tolerance(precision)
        if tolerance.map50 is None or tolerance.matched is None:
            raise StageError(f"gpu-{precision} tolerance sets no map50 or matched bound")
        found, ref_count = matched_count(ref_detections, detections, tolerance)
        share, count = (found / ref_count if ref_count else 1.0), sum(len(d.scores) for d in detections)
        delta = row["map50"] - reference["map50"]
        row.update(map50_delta=delta, matched=share, detections=count, reference_detections=ref_count,
                   tolerance=asdict(tolerance), passed=bool(abs(delta) <= tolerance.map50
                                                             and share >= tolerance.matched))
        rows.append(row)
        if not row["passed"]:
            failed.append(f"{precision}: Δ mAP50 {delta:+.4f}, {share:.1%} matched")
    missing = [p for p in PRECISIONS if p not in candidates]
    if failed or missing:
        raise StageError("; ".join(failed + [f"{p}: no engine" for p in missing]))
    return Outcome(f"{len(candidates)} models within tolerance on {len(context.images)} val images", {"rows": rows})


def stage_batch_invariance(context: Context) -> Outcome:
    """Each image's detections at batch 1, 3 and the profile's max are the same."""
    require(context, "onnx")
    from scratchdet.runtime.detector import Detector

    if not context.images:
        _load_val(context)
    images = context.images[: context.max_batch]
    results, problems = {}, []
    for precision, model in context.candidates().items():
        with Detector(model, conf=0.0, runtime=None) as detector:
            runs = {}
            for batch in sorted({*BATCHES, context.max_batch}):
                runs[batch] = [d for start in range(0, len(images), batch)
                               for d in detector.detect(images[start: start + batch])]
        mismatches = batch_mismatches(runs, atol=1e-4 if precision == "fp32" else 1e-3)
        results[precision] = mismatches
        problems += [f"{precision} {m}" for m in mismatches[:3]]
    if problems:
        raise StageError("; ".join(problems))
    return Outcome(f"{len(images)} images equal at batches {sorted({*BATCHES, context.max_batch})} for "
                   f"{', '.join(results)}", {"mismatches": results})


def stage_edge_inputs(context: Context) -> Outcome:
    """A blank image gives zero detections; a random model whose every score passes gives exactly max_det rows."""
    require(context, "onnx")
    from scratchdet.runtime.detector import Detector

    # Blank: uniform gray (114, the letterbox fill ultralytics uses). Black and white are out of distribution
    # for a briefly trained model: the 5-epoch synthetic tiny model scores 1.0 on 149 boxes of a black image
    # on ONNX Runtime FP32 itself, which says nothing about an engine.
    blank = np.full((300, 300, 3), 114, np.uint8)
    models = dict(context.candidates())
    random = context.onnx["random"] if context.dry_run else _build(context.onnx["random"], "fp32", context.max_batch,
                                                                   context.out / "engines")
    if not context.images:
        _load_val(context)
    counts: dict[str, Any] = {}
    problems = []
    for precision, model in models.items():
        with Detector(model, runtime=None) as detector:  # the deployment threshold
            counts[f"{precision} blank"] = len(detector.detect(blank)[0].scores)
        if counts[f"{precision} blank"]:
            problems.append(f"{precision}: {counts[f'{precision} blank']} detections on a blank image")
    with Detector(random, conf=0.0, runtime=None) as detector:
        max_det = detector.backend.postprocess.max_det
        rows = [len(d.scores) for d in detector.detect([blank, *context.images[:2]])]
    counts["random"] = rows
    if any(n != max_det for n in rows):
        problems.append(f"random weights, every score passing: {rows} rows, expected {max_det} each")
    if problems:
        raise StageError("; ".join(problems))
    return Outcome(f"blank image: 0 detections ({', '.join(models)}); random weights: {max_det} rows per image",
                   counts)


def stage_cuda_graph(context: Context) -> Outcome:
    """CUDA-graph replay on other images than captured, at alternating batch sizes, against the uncaptured run."""
    require(context, "engines")
    from scratchdet.models.inference.tensorrt_backend import TensorRTBackend
    from scratchdet.runtime.detector import Detector

    if not context.images:
        _load_val(context)
    images = context.images
    if len(images) < 8:
        raise StageError(f"needs 8 val images, {context.data} has {len(images)}")
    problems, captured = [], {}
    for precision, engine in context.engines.items():
        with Detector(engine, conf=0.0) as plain, Detector(engine, conf=0.0, cuda_graph=True) as graphed:
            graphed.detect(images[:2])  # captures batch 2 on these images
            graphed.detect(images[2:5])  # captures batch 3
            for step, (start, batch) in enumerate([(5, 2), (0, 3), (3, 2), (4, 3)]):  # alternate, other images
                chunk = images[start: start + batch]
                for index, (a, b) in enumerate(zip(plain.detect(chunk), graphed.detect(chunk))):
                    difference = detection_differences(a, b, GRAPH_ATOL)
                    if difference:
                        problems.append(f"{precision} replay {step} image {start + index}: {difference}")
            backend = graphed.backend
            if not isinstance(backend, TensorRTBackend):
                raise StageError(f"{engine}: opened by {backend.name}, not TensorRT")
            captured[precision] = sorted(backend.graphs) if backend.use_cuda_graph else "fell back"
    if problems:
        raise StageError("; ".join(problems[:5]))
    return Outcome(f"replays equal the uncaptured runs; graphs per engine: {captured}", {"graphs": captured})


def stage_memory(context: Context) -> Outcome:
    """50 Detector open/close cycles leave device memory where it was (cudaMemGetInfo)."""
    require(context, "engines")
    from scratchdet.models.inference.cuda_device import cuda_call, cudart
    from scratchdet.runtime.detector import Detector

    runtime = cudart()
    engine = context.engines.get("fp16") or next(iter(context.engines.values()))
    blank = np.zeros((300, 300, 3), np.uint8)
    with Detector(engine) as detector:  # the first open loads CUDA libraries once: not a leak
        detector.detect(blank)
    free = []
    for _ in range(MEMORY_CYCLES):
        with Detector(engine) as detector:
            detector.detect(blank)
        del detector
        gc.collect()  # the engine and execution context free their device memory when collected
        cuda_call(runtime.cudaDeviceSynchronize())
        free.append(int(cuda_call(runtime.cudaMemGetInfo())[0]))
    growth = memory_growth_mib(free)
    detail = f"{MEMORY_CYCLES} cycles of {engine.name}: free device memory changed by {-growth:+.1f} MiB"
    if growth > MEMORY_GROWTH_MIB:
        raise StageError(f"{detail} (more than {MEMORY_GROWTH_MIB} MiB lost)")
    return Outcome(detail, {"free_mib": [f / 2**20 for f in free[:: max(1, MEMORY_CYCLES // 10)]]})


def stage_nms_tail(context: Context) -> Outcome:
    """The whole graph's time against the network alone (no decoding, no NMS): what the NMS tail costs."""
    require(context, "onnx")
    if not context.images:
        _load_val(context)
    backends: list[Any] = []  # TensorRT backends to close after timing
    if context.dry_run:
        import onnxruntime

        def session(path: Path) -> Callable[[np.ndarray], Any]:
            loaded = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return lambda batch: loaded.run(None, {"images": batch})
        models = {"full": session(context.onnx["fp32"]), "network": session(context.onnx["network"])}
    else:
        from scratchdet.models.inference.tensorrt_backend import TensorRTBackend

        if "fp32" not in context.engines:
            raise StageError("needs the fp32 engine from `build fp32`, which failed")
        network = _build(context.onnx["network"], "fp32", context.max_batch, context.out / "engines",
                         metadata_of=context.onnx["fp32"])  # both FP32 from FP32 ONNX: the same build settings
        backends += [TensorRTBackend(context.engines["fp32"]), TensorRTBackend(network)]
        models = {"full": backends[0].execute, "network": backends[1].execute}
    from scratchdet.models.inference.preprocess import prepare

    batch = prepare(context.images[:1], _input_size(context.onnx["fp32"]), "bgr")[0]  # a real image: NMS cost
    try:
        times = {name: latency(run, batch, 10, context.iterations)["p50"] for name, run in models.items()}
    finally:
        for backend in backends:
            backend.close()
    ratio = times["full"] / times["network"]
    return Outcome(f"p50 full {times['full']:.3f} ms, network only {times['network']:.3f} ms: the tail adds "
                   f"{(ratio - 1):.1%}", {"p50_ms": times, "ratio": ratio})


def _input_size(onnx: Path) -> int:
    from scratchdet.models.contract import load_checked

    return int(load_checked(onnx)[1]["input_size"])


STAGES = [
    Stage("environment", "driver, CUDA runtime, cuda-python, TensorRT, GPU and compute capability; a driver older "
          "than cuda-python's runtime fails", stage_environment, "records what is installed", "this machine"),
    Stage("models", "FP32/FP16/INT8 (TensorRT flavour) ONNX, a random-weights ONNX and the network alone",
          stage_models, "the same files", "this machine (torch)"),
    *[Stage(f"build {p}", f"{p} engine through the Python builder", _build_stage(p)) for p in PRECISIONS],
    Stage("bundle engines", "build_engine.sh (trtexec) builds the bundle's engines; each loads with its sidecar; "
          "an engine with a wrong sidecar is refused", stage_bundle),
    Stage("int8 layers", "IEngineInspector (DETAILED): every convolution of each INT8 engine runs in INT8",
          stage_int8_layers),
    Stage("pytest -m tensorrt", "the GPU tests; any skip, failure or error is a FAIL", stage_pytest),
    Stage("accuracy", "each engine vs ONNX Runtime FP32: mAP50 and detections within the gpu-* tolerances of "
          "models/boxes.py; latency",
          stage_accuracy, "the FP32/FP16/INT8 ONNX models"),
    Stage("batch invariance", "each image's detections equal at batch 1, 3 and the profile's max",
          stage_batch_invariance, "the ONNX models"),
    Stage("edge inputs", "a blank (gray) image: 0 detections; random weights with every score passing: max_det rows",
          stage_edge_inputs, "the ONNX models"),
    Stage("cuda graph", "graph replay on other images than captured, alternating batch 2 and 3, equals the "
          "uncaptured run", stage_cuda_graph),
    Stage("device memory", f"{MEMORY_CYCLES} Detector open/close cycles lose at most {MEMORY_GROWTH_MIB} MiB "
          "(cudaMemGetInfo)", stage_memory),
    Stage("nms tail", "p50 of the whole graph vs the network alone (export_network_only)", stage_nms_tail,
          "ONNX Runtime sessions of both"),
]


# ---------------------------------------------------------------------------------------------------------------
# Report


def markdown(report: dict[str, Any]) -> str:
    """The report: the dry-run banner first when it is one, the stage table, the accuracy table, the verdict."""
    lines = []
    if report["dry_run"]:
        lines += ["**DRY RUN: no TensorRT engine was built or run. Stages marked ONNX Runtime ran there; their "
                  "numbers say nothing about a GPU. NOT RUN stages need TensorRT and a GPU.**", ""]
    lines += ["| stage | checks | ran on | status | detail |", "|---|---|---|---|---|"]
    for row in report["stages"]:
        detail = str(row.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row['stage']} | {row['what']} | {row['ran_on']} | {row['status']} | {detail} |")
    accuracy = next((row for row in report["stages"] if row["stage"] == "accuracy" and row.get("data")), None)
    if accuracy:
        lines += ["", *_accuracy_table(accuracy["data"]["rows"], report["max_batch"])]
    lines += ["", "Tolerances vs ONNX Runtime FP32: " + "; ".join(
        f"{p} |Δ mAP50| <= {t.map50}, >= {t.matched:.0%} matched (IoU >= {t.iou}, score ±{t.score})"
        for p, t in ((p, gpu_tolerance(p)) for p in PRECISIONS)), "", f"Overall: {report['verdict']}", ""]
    return "\n".join(lines)


def _accuracy_table(rows: list[dict[str, Any]], max_batch: int) -> list[str]:
    lines = ["Latency is the network (backend.infer, NMS included) in ms.", "",
             "| model | mAP50 | Δ mAP50 | COCO AP | matched | dets (ref) | b1 mean | p50 | p90 | p95 | p99 "
             f"| b1 img/s | b{max_batch} p50 | b{max_batch} img/s | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        one, many = row["batch_1"], row[f"batch_{max_batch}"]
        verdict_text = "reference" if "passed" not in row else ("PASS" if row["passed"] else "FAIL")
        delta = f"{row['map50_delta']:+.4f}" if "map50_delta" in row else ""
        matched = f"{row['matched']:.1%}" if "matched" in row else ""
        dets = f"{row['detections']} ({row['reference_detections']})" if "detections" in row else ""
        lines.append(f"| {row['name']} | {row['map50']:.4f} | {delta} | {row['coco_ap']:.4f} | {matched} | {dets} | "
                     f"{one['mean']:.2f} | {one['p50']:.2f} | {one['p90']:.2f} | {one['p95']:.2f} | {one['p99']:.2f} | "
                     f"{one['throughput']:.1f} | {many['p50']:.2f} | {many['throughput']:.1f} | {verdict_text} |")
    return lines


def run(context: Context, stages: list[Stage] = STAGES) -> dict[str, Any]:
    """Every stage, the report rewritten after each; returns the report."""
    context.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"dry_run": context.dry_run, "data": str(context.data), "max_batch": context.max_batch,
                              "stages": [], "verdict": "RUNNING"}

    def write(rows: list[dict[str, Any]]) -> None:
        report.update(stages=rows, verdict=verdict(rows, context.dry_run) if len(rows) == len(stages) else "RUNNING")
        write_report(context.out, report, markdown)

    run_stages(stages, context, context.dry_run, write)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchdet.benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset (train split calibrates INT8, val split is measured)")
    add_model_argument(parser, "checkpoint (default: train the tiny config --epochs epochs)", deprecated=("--weights",),
                       required=False, type=Path)
    parser.add_argument("--models", type=Path, help="folder of the ONNX models --prepare-only wrote (no torch needed)")
    parser.add_argument("--prepare-only", action="store_true", help="write OUT/models (needs torch) and stop")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--dry-run", action="store_true", help="every stage; ONNX Runtime where one can run there")
    parser.add_argument("--max-batch", type=positive_int, default=8)
    parser.add_argument("--iterations", type=positive_int, default=200, help="timed calls at batch 1")
    parser.add_argument("--epochs", type=positive_int, default=5)
    args = parser.parse_args(argv)
    context = Context(Path(args.data), args.out, args.model, args.models, args.dry_run, args.max_batch,
                      args.iterations, args.epochs)
    if not args.dry_run and not args.prepare_only:
        missing = missing_requirements()
        if missing:
            print(f"gpu-check: cannot run here, missing: {'; '.join(missing)} (try --dry-run to see every stage)",
                  file=sys.stderr)
            return 1
    try:
        check_inputs(args)
    except (ValueError, OSError) as error:
        print(f"gpu-check: {error}", file=sys.stderr)
        return 1
    if args.prepare_only:
        outcome = stage_models(context)
        print(f"models: {outcome.detail}; on the GPU host: --models {args.out / 'models'}")
        return 0
    report = run(context)
    print(markdown(report))
    print(f"report: {args.out / 'report.md'} and report.json")
    return 0 if report["verdict"] in ("PASS", "DRY RUN OK") else 1


def check_inputs(args: argparse.Namespace) -> None:
    """Every input and destination, before the first stage writes anything.

    Raises:
        FileNotFoundError: --data, --model or --models does not exist.
        OSError: --out is a file, or a place where report.json and report.md cannot be written.
    """
    from scratchdet.models.files import check_destination

    for option, path in (("--data", args.data), ("--model", args.model), ("--models", args.models)):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{path}: not found ({option})")
    check_destination(args.out, folder=True)
    for name in ("report.json", "report.md"):
        check_destination(args.out / name)


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


if __name__ == "__main__":
    sys.exit(main())
