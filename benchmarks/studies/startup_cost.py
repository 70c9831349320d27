"""What opening, exporting and pre-processing cost, and how often each repeats work: two source trees timed
alternately in one run (docs/results/hot-paths.md).

    python -m scratchdet.benchmarks.studies.startup_cost --trees ../house-before . --rounds 5 \\
        --image ../shared/datasets/bccd/images/BloodImage_00000.jpg

A tree is a checkout whose `scratchdet` imports with PYTHONPATH=TREE (its scratchdet/ links the stage folders).
Each round runs both trees back to back, their order swapped every round, so the host's load falls on both alike;
per tree a fresh process exports, and another opens the model it wrote (as a user's predict would) and
pre-processes. Per tree:
- start-up: `Detector(model.onnx)` (runtime auto) until the first image's detections are back, ms; ONNX reads.
- export: `scratchdet export --model CKPT --data DATA`, s; BN folds (fold_batchnorm calls); ONNX reads.
- pre-processing: `prepare` of one image in RGB (as evaluation passes it, colour "rgb") and in BGR (as OpenCV
  reads it: the control, a path neither tree should differ on), ms; colour conversions (cv2.cvtColor calls and
  channel-reordering index copies) from the file read (`read_rgb`) to the model's input.
An ONNX read is a Python open of a .onnx file for reading, an ONNX Runtime session or a TensorRT-RTX parse
given a path rather than the model's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from scratchdet.arguments import positive_int

TIMES = {"startup_ms": "predict start-up, ms (median)", "export_s": "export, s (median)",
         "prepare_rgb_ms": "pre-processing an RGB image, ms (median)",
         "prepare_bgr_ms": "pre-processing a BGR image (control), ms (median)"}
COUNTS = {"startup_reads": "ONNX reads at start-up", "export_reads": "ONNX reads in one export",
          "export_folds": "BN folds in one export", "conversions_rgb": "colour conversions, RGB image (read + prepare)",
          "conversions_bgr": "colour conversions, BGR image (prepare)"}


class CountingArray(np.ndarray):
    """An image whose channel-reordering index copies (image[..., [2, 1, 0]]) are counted in `reorders`."""

    reorders = 0

    def __getitem__(self, key: Any) -> Any:
        last = key[-1] if isinstance(key, tuple) else key
        if isinstance(last, (list, np.ndarray)):
            CountingArray.reorders += 1
        return super().__getitem__(key)


def _is_read(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return "r" in mode and "+" not in mode
    return isinstance(flags, int) and not flags & (os.O_WRONLY | os.O_RDWR)


class Reads:
    """ONNX reads by opener while `active`: Python opens of .onnx files (an audit hook, which cannot be removed:
    one per process), ONNX Runtime sessions and TensorRT-RTX parses given a path."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.active = False
        sys.addaudithook(self._hook)
        self._wrap_sessions()
        self._wrap_rtx()

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and str(args[0]).endswith(".onnx") and _is_read(*args[1:3]):
            self.counts["python open"] += 1

    def _counted(self, label: str, function: Callable, position: int) -> Callable:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.active and len(args) > position and isinstance(args[position], (str, os.PathLike)):
                self.counts[label] += 1
            return function(*args, **kwargs)
        return counted

    def _wrap_sessions(self) -> None:
        import onnxruntime

        session = onnxruntime.InferenceSession
        session.__init__ = self._counted("onnxruntime session", session.__init__, 1)

    def _wrap_rtx(self) -> None:
        from scratchdet.export import tensorrt_rtx

        tensorrt_rtx.build_rtx = self._counted("tensorrt-rtx parse", tensorrt_rtx.build_rtx, 0)

    @contextmanager
    def during(self) -> Iterator[Counter[str]]:
        """The reads inside the block, by opener."""
        self.counts, self.active = Counter(), True
        try:
            yield self.counts
        finally:
            self.active = False


def count_calls(module_prefix: str, function: Callable) -> Counter[str]:
    """Counts calls of `function` through every loaded module under `module_prefix` that imported it by name."""
    calls: Counter[str] = Counter()

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[function.__name__] += 1
        return function(*args, **kwargs)
    for name, module in list(sys.modules.items()):
        if name.startswith(module_prefix):
            for attribute, value in list(vars(module).items()):
                if value is function:
                    setattr(module, attribute, counted)
    return calls


def _times_ms(call: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def measure_export(checkpoint: Path, data: Path, out: Path, reads: Reads) -> dict[str, Any]:
    """One `scratchdet export` in this process: seconds, BN folds and ONNX reads."""
    import scratchdet.export.cli  # noqa: F401 (loads every module that imports fold_batchnorm)
    from scratchdet.cli import main
    from scratchdet.export import fold_bn

    folds = count_calls("scratchdet", fold_bn.fold_batchnorm)
    with reads.during() as counted:
        started = time.perf_counter()
        code = main(["export", "--model", str(checkpoint), "--data", str(data), "--out", str(out)])
        seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"scratchdet export exited {code}")
    return {"export_s": [seconds], "export_folds": folds["fold_batchnorm"], "export_reads": sum(counted.values()),
            "export_reads_by": dict(counted)}


def measure_startup(model: Path, image: np.ndarray, repeats: int, reads: Reads) -> dict[str, Any]:
    """`Detector(model)` to the first detections, `repeats` times; the first one's ONNX reads."""
    from scratchdet.runtime.detector import Detector

    def start() -> None:
        with Detector(model) as detector:
            detector.detect(image)
    with reads.during() as counted:
        first = _times_ms(start, 1)
    return {"startup_ms": first + _times_ms(start, repeats - 1), "startup_reads": sum(counted.values()),
            "startup_reads_by": dict(counted)}


def measure_prepare(path: Path, repeats: int) -> dict[str, Any]:
    """Pre-processing times of one image in RGB and in BGR, and the colour conversions of each."""
    import cv2

    from scratchdet.models.inference.preprocess import prepare
    from scratchdet.runtime.results import read_image
    from scratchdet.train.data.images import read_rgb

    conversions = count_calls("cv2", cv2.cvtColor)
    found: dict[str, Any] = {}
    for color, read in (("rgb", read_rgb), ("bgr", read_image)):
        conversions.clear()
        CountingArray.reorders = 0
        image = read(path)
        prepare([image.view(CountingArray)], 300, color)
        found[f"conversions_{color}"] = conversions["cvtColor"] + CountingArray.reorders
        found[f"prepare_{color}_ms"] = _times_ms(lambda: prepare([image], 300, color), repeats)  # noqa: B023
    return found


def worker(args: argparse.Namespace) -> None:
    """One part of one tree's measurements in this process, written as JSON to --result: "export", or "open"
    (start-up and pre-processing, in a process of their own as a user's predict would be)."""
    import scratchdet
    from scratchdet.models.files import write_text
    from scratchdet.runtime.results import read_image

    reads = Reads()
    model = args.work / "model.onnx"
    found: dict[str, Any] = {"scratchdet": str(Path(scratchdet.__file__).resolve().parent)}
    if args.part == "export":
        found |= measure_export(args.model, args.data, model, reads)
    else:
        found |= measure_startup(model, read_image(args.image), args.repeats, reads)
        found |= measure_prepare(args.image, args.repeats * 6)
    write_text(args.result, json.dumps(found))


def make_checkpoint(out: Path) -> tuple[Path, Path]:
    """The tiny config trained two short epochs on 60 synthetic images (as the tests' tiny checkpoint)."""
    from dataclasses import replace

    from scratchdet.train.config import load_config
    from scratchdet.train.data.synth import make_synthetic_dataset
    from scratchdet.train.trainer import Trainer

    data = make_synthetic_dataset(out / "data", images=60, seed=0)
    model_config, train_config = load_config("tiny")
    Trainer(model_config, replace(train_config, epochs=2, batch_size=8, eval_every=2), data, out / "train").fit()
    return out / "train" / "last.pt", data


def run_tree(tree: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The export, then start-up and pre-processing on the model it wrote, each in a fresh process importing
    scratchdet from `tree`."""
    work.mkdir(parents=True)
    found: dict[str, Any] = {}
    env = {**os.environ, "PYTHONPATH": str(tree), "SCRATCHDET_RUNTIME_FILE": str(work / "no-recommendation.json")}
    for part in ("export", "open"):
        result = work / f"{part}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", part, "--model", str(args.model),
                   "--data", str(args.data), "--image", str(args.image), "--repeats", str(args.repeats), "--work",
                   str(work), "--result", str(result)]
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(f"{tree}: the {part} worker exited {finished.returncode}: {finished.stderr[-2000:]}")
        found |= json.loads(result.read_text())
    if Path(found["scratchdet"]) != (tree / "scratchdet").resolve():
        raise RuntimeError(f"{tree}: the worker imported scratchdet from {found['scratchdet']}")
    return found


def collect(trees: list[Path], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every round's results per tree, the trees' order swapped each round."""
    results: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
    for round_ in range(args.rounds):
        for index, tree in enumerate(trees if round_ % 2 == 0 else trees[::-1]):
            results[str(tree)].append(run_tree(tree, args.out / f"round{round_}-{index}", args))
            print(f"round {round_ + 1}/{args.rounds}: {tree} done", file=sys.stderr, flush=True)
    return results


def summarise(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Medians of every time over all rounds; counts as measured (the largest, should rounds disagree)."""
    summary = {key: float(np.median([t for r in rounds for t in r[key]])) for key in TIMES}
    return summary | {key: max(r[key] for r in rounds) for key in COUNTS}


def ratios(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, float]:
    """After / before per measure: for a time, the median over rounds of the ratio of the two trees' medians in that
    round (run back to back, so a change of load between rounds cancels); for a count, the ratio of the counts."""
    paired = {key: float(np.median([np.median(a[key]) / np.median(b[key]) for b, a in zip(before, after)]))
              for key in TIMES}
    counts = summarise(before), summarise(after)
    return paired | {key: counts[1][key] / counts[0][key] if counts[0][key] else float("nan") for key in COUNTS}


def table(before: dict[str, float], after: dict[str, float], ratio: dict[str, float], labels: tuple[str, str]) -> str:
    """Markdown: one row per measure, both trees and after / before."""
    lines = [f"| measure | {labels[0]} | {labels[1]} | after / before |", "|---|---:|---:|---:|"]
    for key, what in (TIMES | COUNTS).items():
        digits = 0 if key in COUNTS else 3 if key == "export_s" else 2
        shown = "-" if np.isnan(ratio[key]) else f"{ratio[key]:.2f}"
        lines.append(f"| {what} | {before[key]:.{digits}f} | {after[key]:.{digits}f} | {shown} |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="the two source trees")
    parser.add_argument("--model", type=Path, help="checkpoint (default: a tiny one trained here on synthetic data)")
    parser.add_argument("--data", type=Path, help="dataset of --model (parity images of the export)")
    parser.add_argument("--image", type=Path, help="the image detected and pre-processed (default: one of --data)")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="start-ups per round and tree (and 6x as many pre-processings)")
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--worker", dest="part", choices=("export", "open"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.part and not args.trees:
        parser.error("give --trees BEFORE AFTER")
    if (args.model is None) != (args.data is None):
        parser.error("give --model and --data together (or neither: a tiny checkpoint is trained)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.part:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        args.out = (args.out or Path(scratch)).resolve()
        if args.model is None:
            args.model, args.data = make_checkpoint(args.out / "checkpoint")
        args.image = args.image or sorted((args.data / "images").iterdir())[0]
        trees = [tree.resolve() for tree in args.trees]
        results = collect(trees, args)
        before, after = (summarise(results[str(tree)]) for tree in trees)
        ratio = ratios(results[str(trees[0])], results[str(trees[1])])
        print(table(before, after, ratio, (f"before ({trees[0].name})", f"after ({trees[1].name})")))
        print(f"\n{args.rounds} rounds; ONNX reads by opener: " + "; ".join(
            f"{tree.name}: start-up {results[str(tree)][0]['startup_reads_by']}, export "
            f"{results[str(tree)][0]['export_reads_by']}" for tree in trees))


if __name__ == "__main__":
    main()
