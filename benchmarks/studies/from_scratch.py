"""What a user would train instead: our config against ultralytics' YOLO11n, both from scratch, same data,
same epochs, CPU time of each training measured (user + sys), both scored by the project's evaluator.

    python -m scratchdet.benchmarks.studies.from_scratch --data ../shared/datasets/bccd --out runs/study \\
        --config bccd_cpu --seeds 0 1 2 --epochs 65 [--recipe paper] [--yolo-python /opt/yolo/bin/python]

Our side trains with this package in a child process (`scratchdet train`); the YOLO side, only with
--yolo-python, in a child of that interpreter. ultralytics is AGPL-3.0 and stays out of this project's
install: give it its own venv (`python -m venv /opt/yolo && /opt/yolo/bin/pip install ultralytics`, which
brings the CUDA build of torch; torchvision from the index needs that build, with the CPU torch its ops fail
with "operator torchvision::nms does not exist"). The dataset is written in the YOLO layout once (images
symlinked), YOLO trains with `pretrained=False` on it, predicts the val images at conf 0.001, and those
detections are scored with train/evaluate.py (pycocotools) exactly as ours are.

Every child runs with OMP_NUM_THREADS = --threads and its CPU time is the rusage that wait4 returns for it:
user + sys of the child and every process it waited for (data-loading workers), so neither load from other
processes nor the other trainings of a --jobs 2 study count. Both sides validate during training by default
(ours every train.eval_every epochs, YOLO every epoch); that time is part of the CPU time.
Writes OUT/study.json and OUT/study.md; a finished (arm, seed) is reused when the study is run again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scratchdet.arguments import positive_int
from scratchdet.models.checkpoint import load_model
from scratchdet.models.detections import Detections
from scratchdet.models.files import write_text
from scratchdet.models.inference.predictor import Predictor
from scratchdet.models.inference.torch_backend import TorchBackend
from scratchdet.train.config import load_config
from scratchdet.train.data.convert import convert_dataset
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import EvalResult, evaluate, validate

log = logging.getLogger(__name__)

# Run by the YOLO venv's interpreter: train from scratch, then the val images' detections as JSON lines.
YOLO_TRAIN = """
import sys
from ultralytics import YOLO
data, epochs, imgsz, seed, project, name, model = sys.argv[1:8]
YOLO(model).train(data=data, epochs=int(epochs), imgsz=int(imgsz), seed=int(seed), pretrained=False, device="cpu",
                  project=project, name=name, exist_ok=True, plots=False)
"""
YOLO_PREDICT = """
import json, sys
from ultralytics import YOLO
weights, imgsz, out, *images = sys.argv[1:]
model = YOLO(weights)
with open(out, "w") as file:
    for image in images:
        result = model.predict(image, imgsz=int(imgsz), conf=0.001, max_det=300, device="cpu", verbose=False)[0]
        boxes = result.boxes
        file.write(json.dumps({"boxes": boxes.xyxy.tolist(), "scores": boxes.conf.tolist(),
                               "class_ids": boxes.cls.int().tolist()}) + "\\n")
"""


@dataclass
class StudyRun:
    """One trained (arm, seed): CPU time of its training and the val metrics."""

    arm: str
    seed: int
    user_s: float
    sys_s: float
    wall_s: float
    coco_ap: float
    ap50: float
    ap75: float
    map50: float  # VOC all-point AP@0.5, mean over classes

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def timed_child(command: list[str], threads: int, log_path: Path) -> tuple[float, float, float]:
    """Run `command` to completion with `threads` OpenMP threads; (user s, sys s, wall s) of it and its children.

    Raises:
        RuntimeError: the command failed, naming it and its log file.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        # wait4, not getrusage(RUSAGE_CHILDREN): the usage of this child alone while others run beside it
        _, status, usage = os.wait4(child.pid, 0)
        code, wall = os.waitstatus_to_exitcode(status), time.perf_counter() - started
        child.returncode = code  # reaped here: Popen must not wait for it again
        output.seek(0)
        write_text(log_path, output.read())
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited with {code}; see {log_path}")
    return usage.ru_utime, usage.ru_stime, wall


def score(result: EvalResult, arm: str, seed: int, times: tuple[float, float, float]) -> StudyRun:
    return StudyRun(arm, seed, *times, coco_ap=result.coco_ap, ap50=result.coco["AP50"], ap75=result.coco["AP75"],
                    map50=result.map50)


def run_ours(config: str, recipe: str | None, data: str, folder: Path, seed: int, epochs: int,
             threads: int) -> StudyRun:
    """Train `config` (with `recipe`) in a child process, then score its last.pt (the EMA when it has one)."""
    command = [sys.executable, "-m", "scratchdet", "train", "--config", config, "--data", data, "--out", str(folder),
               "--seed", str(seed), "--epochs", str(epochs), "--exist-ok", *(["--recipe", recipe] if recipe else [])]
    times = timed_child(command, threads, folder.with_suffix(".log"))
    model, checkpoint = load_model(folder / "last.pt")
    result = validate(Predictor(TorchBackend(model, checkpoint["class_names"])), load_dataset(data, "val"))
    return score(result, folder.parent.name, seed, times)


def run_yolo(python: str, model: str, imgsz: int, data: str, folder: Path, seed: int, epochs: int,
             threads: int) -> StudyRun:
    """Train YOLO from scratch with `python` (a venv holding ultralytics), predict val, score here."""
    yolo_data = folder.parent.parent / "yolo-data"  # one copy for every seed, written by run_study
    command = [python, "-c", YOLO_TRAIN, str(yolo_data / "data.yaml"), str(epochs), str(imgsz), str(seed),
               str(folder.parent), folder.name, model]
    times = timed_child(command, threads, folder.with_suffix(".log"))
    val = load_dataset(data, "val")
    predictions = folder / "val_detections.jsonl"
    timed_child([python, "-c", YOLO_PREDICT, str(folder / "weights" / "last.pt"), str(imgsz), str(predictions),
                 *[str(r.path) for r in val.records]], threads, folder.with_suffix(".predict.log"))
    detections = [Detections.from_arrays(np.array(d["boxes"]), np.array(d["scores"]), np.array(d["class_ids"]),
                                         frame="image") for d in map(json.loads, predictions.read_text().splitlines())]
    return score(evaluate(val.records, detections, val.class_names), folder.parent.name, seed, times)


def summary(runs: list[StudyRun]) -> str:
    """The study as Markdown: one row per run, then mean and range per arm."""
    lines = ["| arm | seed | CPU s (user + sys) | sys s | COCO AP | AP50 | AP75 | mAP@0.5 (VOC) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.arm} | {r.seed} | {r.cpu_s:,.0f} | {r.sys_s:,.0f} | {r.coco_ap:.3f} | {r.ap50:.3f} | "
              f"{r.ap75:.3f} | {r.map50:.3f} |" for r in runs]
    for arm in dict.fromkeys(r.arm for r in runs):
        mine = [r for r in runs if r.arm == arm]
        ap = [r.coco_ap for r in mine]
        lines.append(f"\n{arm}: COCO AP mean {np.mean(ap):.3f} (min {min(ap):.3f}, max {max(ap):.3f}) over "
                     f"{len(mine)} seed(s); CPU time mean {np.mean([r.cpu_s for r in mine]):,.0f} s")
    return "\n".join(lines) + "\n"


def run_study(args: argparse.Namespace) -> list[StudyRun]:
    out = Path(args.out)
    done_path = out / "study.json"
    done = {(r["arm"], r["seed"]): StudyRun(**r) for r in json.loads(done_path.read_text())} \
        if done_path.is_file() else {}
    name = load_config(args.config)[0].name + (f"-{args.recipe}" if args.recipe else "")
    arms = [("ours-" + name, None)] + ([("yolo-" + Path(args.yolo_model).stem, args.yolo_python)]
                                       if args.yolo_python else [])
    if args.yolo_python and not (out / "yolo-data" / "data.yaml").is_file():
        convert_dataset(args.data, "yolo", out / "yolo-data", symlink=True)  # once, before trainings run beside it
    lock = threading.Lock()

    def train(arm: str, python: str | None, seed: int) -> None:
        folder = out / arm / f"seed{seed}"
        log.info("%s seed %d -> %s", arm, seed, folder)
        run = (run_yolo(python, args.yolo_model, args.yolo_imgsz, args.data, folder, seed, args.epochs, args.threads)
               if python else
               run_ours(args.config, args.recipe, args.data, folder, seed, args.epochs, args.threads))
        with lock:
            done[(arm, seed)] = run
            write_text(done_path, json.dumps([asdict(r) for r in done.values()], indent=2))

    pending = [(arm, python, seed) for seed in args.seeds for arm, python in arms if (arm, seed) not in done]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(train, *job) for job in pending]:
            future.result()
    runs = [done[(arm, seed)] for seed in args.seeds for arm, _ in arms]
    write_text(out / "study.md", summary(runs))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder (trained on train, scored on val)")
    parser.add_argument("--out", required=True, help="study folder: run folders, study.json, study.md")
    parser.add_argument("--config", default="bccd_cpu", help="our config file or shipped config name")
    parser.add_argument("--recipe", help="a named recipe over the config's train section (e.g. paper)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=positive_int, required=True, help="epochs of both sides")
    parser.add_argument("--threads", type=positive_int, default=1, help="OpenMP threads of each training")
    parser.add_argument("--jobs", type=positive_int, default=1, help="trainings at once (CPU time stays per training)")
    parser.add_argument("--yolo-python", help="interpreter of a venv with ultralytics; omit to train ours only")
    parser.add_argument("--yolo-model", default="yolo11n.yaml", help="ultralytics model YAML (from scratch)")
    parser.add_argument("--yolo-imgsz", type=int, default=320)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs = run_study(args)
    print(summary(runs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
