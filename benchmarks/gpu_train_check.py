"""`make gpu-train-check`: training and PyTorch inference on a CUDA GPU, proved in one command
(docs/gpu-acceptance.md#gpu-train-check).

    python -m scratchdet.benchmarks.gpu_train_check [--out runs/gpu-train-check]
    python -m scratchdet.benchmarks.gpu_train_check --dry-run     # the same stages on the CPU, tiny budgets

Runs with the host's own Python and torch (>= 2.4, its CUDA build); beyond torch it needs numpy, OpenCV,
PyYAML, tqdm and Pillow. matplotlib (plots) and pycocotools (COCO AP) are optional; without pycocotools the
training stages, which validate, are skipped with a line in the report. Stages, each on its own (a failure
is a FAIL row and the others run):

1. train-fp16 / train-bf16: the tiny config on synthetic data, a few hundred steps under each autocast mode;
   every logged loss finite, the loss falling and val mAP@0.5 rising.
2. resume-cpu-checkpoint: one epoch on the CPU with AMP off, then resumed on the GPU with fp16 (an empty
   GradScaler state must not stop it).
3. kill-resume: a GPU run killed mid-epoch (SIGKILL) and resumed, against an uninterrupted one.
4. ddp: `torchrun --nproc_per_node=N` on the N GPUs present (NCCL), the weights equal on every rank.
5. train-throughput: images/s of the training step of ssd300_root_resnet34 at batch 32 under fp16 AMP.
6. inference: the paper model in FP32/FP16/BF16 at batch 1, 8 and 32, CUDA events after a warm-up.
7. onnxruntime-cuda: the paper model exported to ONNX, on ONNX Runtime's CUDA provider (when installed).

Writes OUT/report.json and OUT/report.md with the environment (GPU, driver, CUDA, torch, cuDNN), rewritten after
every stage (benchmarks/stages.py, as gpu_check). Without a GPU it exits 1 with one line naming what is missing.
--dry-run runs the stages on the CPU (gloo for DDP, bf16 in place of fp16, batch 2, a few steps): it proves the
script, its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scratchdet.benchmarks import stages as shared
from scratchdet.benchmarks.stages import Outcome, Skip

if TYPE_CHECKING:  # beyond stages.py (standard library only), scratchdet is imported after checking the host
    from scratchdet.models.config import ModelConfig
    from scratchdet.train.config import TrainConfig

MIN_TORCH = (2, 4)
REQUIRED = {"numpy": "numpy", "cv2": "opencv-python-headless", "yaml": "pyyaml", "tqdm": "tqdm", "PIL": "pillow"}
PAPER_FPS = 25.0  # ScratchDet300 (Root-ResNet-34) on a Tesla P40, batch 1 (Zhu et al., CVPR 2019, Table 6)
PAPER_MODEL = "ssd300_root_resnet34"
# Kill + resume on a GPU: deterministic: true makes cuDNN pick deterministic algorithms, but CUDA kernels built
# on atomics (index_put/scatter backward in the loss, some cuDNN paths) still add in a varying order, so the
# runs may differ in the last bits and drift a little. CPU runs must be bit-identical (docs/train.md#exact-resume).
GPU_RESUME_TOLERANCE = 1e-2  # largest relative difference of a step's loss


@dataclass(frozen=True)
class Budget:
    """How much each stage runs: sized so the GPU check ends in under 8 minutes, the dry run in about 1."""

    images: int  # synthetic dataset (80 % train)
    batch: int  # tiny config
    train_epochs: int
    eval_every: int
    kill_epochs: int
    ddp_epochs: int
    throughput_batch: int
    throughput_steps: tuple[int, int]  # warm-up, timed
    inference_batches: tuple[int, ...]
    inference_iterations: tuple[int, int]  # warm-up, timed
    workers: int | None  # None: the trainer's choice (min(8, CPUs per rank) on CUDA)
    input_size: int | None  # of the tiny config (None: its own 128)
    speed_config: str  # the model of the throughput and inference stages
    plots: bool  # the trainer's PNGs (when matplotlib is there): seconds per epoch on a loaded CPU


GPU_BUDGET = Budget(images=320, batch=16, train_epochs=20, eval_every=5, kill_epochs=4, ddp_epochs=2,
                    throughput_batch=32, throughput_steps=(10, 30), inference_batches=(1, 8, 32),
                    inference_iterations=(20, 100), workers=None, input_size=None, speed_config=PAPER_MODEL,
                    plots=True)
# The dry run must take about a minute on a loaded 2-core CPU, where one tiny step at batch 8 can take seconds.
DRY_BUDGET = Budget(images=10, batch=4, train_epochs=2, eval_every=1, kill_epochs=2, ddp_epochs=1,
                    throughput_batch=2, throughput_steps=(1, 2), inference_batches=(1, 2),
                    inference_iterations=(1, 3), workers=0, input_size=64, speed_config="tiny", plots=False)


@dataclass(frozen=True)
class Context:
    out: Path
    data: Path
    dry_run: bool
    budget: Budget

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"


def missing_requirements(dry_run: bool) -> list[str]:
    """What this host lacks for the check (empty when everything is there)."""
    try:
        import torch
    except ImportError:
        return [f"PyTorch >= {'.'.join(map(str, MIN_TORCH))} (pip install torch)"]
    missing = []
    found = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if found < MIN_TORCH:
        missing.append(f"PyTorch >= {'.'.join(map(str, MIN_TORCH))} (found {torch.__version__})")
    missing += [f"{module} (pip install {package})" for module, package in REQUIRED.items()
                if importlib.util.find_spec(module) is None]
    if not dry_run and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        missing.append(f"a CUDA GPU visible to PyTorch (torch {torch.__version__} is {build}; "
                       f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return missing


def environment() -> dict[str, Any]:
    """GPU, driver, CUDA, torch, cuDNN and where scratchdet was imported from."""
    import torch

    import scratchdet.models

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "scratchdet": str(Path(scratchdet.models.__file__).parent.parent)}
    if torch.cuda.is_available():
        info["gpus"] = [_gpu(i) for i in range(torch.cuda.device_count())]
        info["driver"] = _nvidia_smi("driver_version")
    for module in ("matplotlib", "pycocotools", "onnx", "onnxruntime", "onnxsim"):
        info[module] = _version(module)
    return info


def _gpu(index: int) -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    memory = torch.cuda.get_device_properties(index).total_memory / 2**30
    return f"{torch.cuda.get_device_name(index)} (sm_{major}{minor}, {memory:.0f} GiB)"


def _nvidia_smi(field: str) -> str | None:
    try:
        result = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    with contextlib.suppress(Exception):  # a broken install reports no version rather than stopping the report
        return str(__import__(module).__version__)
    return "installed"


# -- training stages -------------------------------------------------------------------------------------
def _configs(ctx: Context, name: str) -> tuple[ModelConfig, TrainConfig]:
    """(model, train) config `name`; the budget's input size applies to `tiny`, its workers to both."""
    from scratchdet.train.config import load_config

    model_config, train_config = load_config(name)
    if name == "tiny" and ctx.budget.input_size:
        model_config = replace(model_config, input_size=ctx.budget.input_size)
    return model_config, replace(train_config, workers=ctx.budget.workers,
                                 plots=ctx.budget.plots and importlib.util.find_spec("matplotlib") is not None)


def _tiny(ctx: Context, **overrides: Any) -> tuple[ModelConfig, TrainConfig]:
    """The tiny config with this check's budget applied (and `overrides`)."""
    model_config, train_config = _configs(ctx, "tiny")
    values = {"epochs": ctx.budget.train_epochs, "batch_size": ctx.budget.batch, "eval_every": ctx.budget.eval_every,
              **overrides}
    return model_config, replace(train_config, **values)


def _needs_validation() -> None:
    if importlib.util.find_spec("pycocotools") is None:
        raise Skip("pycocotools not installed (pip install pycocotools==2.0.11): every epoch's validation needs it")


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def train_stage(ctx: Context, amp: str) -> Outcome:
    """Train tiny under `amp`; passes when every loss is finite, the loss falls and (on a GPU) mAP rises."""
    import numpy as np
    import torch

    from scratchdet.train.trainer import Trainer

    if amp == "fp16" and ctx.dry_run:
        raise Skip("fp16 autocast is CUDA only (dry run on the CPU)")
    if amp == "bf16" and not ctx.dry_run and not torch.cuda.is_bf16_supported():
        raise Skip(f"{torch.cuda.get_device_name()} has no bf16 (before Ampere)")
    _needs_validation()
    run = ctx.out / f"train-{amp}"
    Trainer(*_tiny(ctx, amp=amp), ctx.data, run).fit()
    records = _records(run)
    losses = [r["loss"] for r in records if r["type"] == "step"]
    skipped = [r for r in records if r["type"] == "skipped"]
    maps = [r["map50"] for r in records if r["type"] == "epoch" and "map50" in r]
    tenth = max(len(losses) // 10, 1)
    first, last = float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))
    finite, falling = bool(np.isfinite(losses).all()), last < first
    rising = maps[-1] > maps[0] if len(maps) > 1 else None
    passed = finite and (ctx.dry_run or (falling and bool(rising)))
    speed = [r["images_per_s"] for r in records if r["type"] == "epoch"][-1]
    reasons = ", ".join(sorted({s["reason"] for s in skipped})) or "none"
    detail = (f"{len(losses)} steps ({len(skipped)} skipped: {reasons}), loss {first:.3f} -> {last:.3f}, "
              f"mAP@0.5 {' -> '.join(f'{m:.3f}' for m in maps)}"
              + (" (only finite losses gated on a dry-run budget)" if ctx.dry_run else ""))
    return Outcome(detail, {"steps": len(losses), "skipped_steps": len(skipped), "loss_first": first,
                            "loss_last": last, "map50": maps, "images_per_s": speed}, passed)


def _config_file(ctx: Context, name: str, **overrides: Any) -> Path:
    """The tiny config with the budget applied, as a file `scratchdet train` reads."""
    import yaml

    from scratchdet.models.config import to_dict
    from scratchdet.models.files import write_text

    model_config, train_config = _tiny(ctx, **overrides)
    path = ctx.out / f"{name}.yaml"
    write_text(path, yaml.safe_dump({"model": to_dict(model_config), "train": to_dict(train_config)}, sort_keys=False))
    return path


def _scratchdet(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "scratchdet", *map(str, args)]


# Lines of a failed command's output that say why, whichever process wrote them. torchrun ends with its own
# report (ChildFailedError: every rank's exit code, the first failure under "Root Cause"), and a rank it stopped
# because another failed is listed there too, as SIGTERM; the failing rank's C++ or Python error comes earlier.
CAUSE_MARKERS = ("terminate called", "what():", "Error", "error:", "Signal ", "Killed")
TORCHRUN_REPORT = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"
ROOT_CAUSE = "Root Cause (first observed failure):"


def failure_causes(output: str, keep: int = 4) -> list[str]:
    """The lines of a failed command's output that say why: torchrun's root cause first, then the ranks' own errors."""
    lines = [line.strip() for line in output.strip().splitlines()]
    own, report = lines, []
    if any(TORCHRUN_REPORT in line for line in lines):
        start = max(i for i, line in enumerate(lines) if TORCHRUN_REPORT in line)
        agent = max((i for i in range(start) if lines[i].startswith("Traceback")), default=start)
        own, report = lines[:agent], lines[start:]
    root = []
    if ROOT_CAUSE in report:
        block = report[report.index(ROOT_CAUSE) + 1:]
        field = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in block if ":" in line)}
        why = field.get("traceback", "")  # a signal's name says more than its exit code; a traceback comes below
        root = [f"root cause: rank {field.get('rank', '?')}, exitcode {field.get('exitcode', '?')}"
                + (f" ({why})" if why.startswith("Signal") else "")]
    errors = list(dict.fromkeys(line for line in own if any(m in line for m in CAUSE_MARKERS)))
    return root + errors[:keep] or lines[-3:]


def _run(command: list[str], env: dict[str, str] | None = None, timeout: float = 300,
         log: Path | None = None) -> subprocess.CompletedProcess:
    """Run `command`; on failure raise with its cause lines, its whole output kept in `log` when given."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        kept = ""
        if log is not None:
            from scratchdet.models.files import write_text

            write_text(log, f"$ {' '.join(command)}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
            kept = f" (whole output: {log})"
        causes = failure_causes(f"{result.stdout}\n{result.stderr}")
        raise RuntimeError(f"{Path(command[0]).name} {' '.join(command[1:4])} ... exited {result.returncode}: "
                           f"{' | '.join(causes)}{kept}")
    return result


def resume_cpu_stage(ctx: Context) -> Outcome:
    """One epoch on the CPU with AMP off (no GradScaler state), resumed on the device with fp16 (bf16 dry)."""
    from scratchdet.models.checkpoint import read_checkpoint
    from scratchdet.train.trainer import Trainer

    _needs_validation()
    run, amp = ctx.out / "resume-cpu", "bf16" if ctx.dry_run else "fp16"
    if ctx.dry_run:  # already on the CPU: spare a process start (seconds on a loaded CPU)
        Trainer(*_tiny(ctx, epochs=1, amp="off"), ctx.data, run).fit()
    else:  # a GPU host trains on the CPU only where CUDA is hidden
        config = _config_file(ctx, "resume-cpu", epochs=1, amp="off")
        _run(_scratchdet("train", "--config", config, "--data", ctx.data, "--out", run),
             env={"CUDA_VISIBLE_DEVICES": ""})
    saved = read_checkpoint(run / "last.pt")
    model_config, train_config = _tiny(ctx, epochs=2, amp=amp)
    trainer = Trainer(model_config, train_config, ctx.data, run)
    trainer.resume()
    trainer.fit()
    resumed = read_checkpoint(run / "last.pt")
    steps = [r for r in _records(run) if r["type"] == "step" and r["epoch"] == 2]
    passed = saved["scaler"] == {} and resumed["epoch"] == 2 and len(steps) > 0
    scale = f", GradScaler scale {trainer.scaler.get_scale():g}" if trainer.scaler.is_enabled() else ""
    detail = (f"CPU epoch 1 (scaler state {saved['scaler'] or 'empty'}), epoch 2 on {trainer.device} with {amp}: "
              f"{len(steps)} steps, last loss {steps[-1]['loss']:.3f}{scale}" if steps else "no steps")
    return Outcome(detail, {"steps_after_resume": len(steps)}, passed)


def _kill_mid_epoch(command: list[str], run: Path, timeout: float = 300) -> int:
    """Start `command`, SIGKILL it once epoch 2 has logged a step; returns the epoch its last.pt holds."""
    from scratchdet.models.checkpoint import read_checkpoint

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            metrics = run / "metrics.jsonl"
            if metrics.is_file() and any(r["type"] == "step" and r["epoch"] == 2 for r in _records(run)):
                break
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    if not (run / "last.pt").is_file():
        raise RuntimeError(f"{run}: the killed run wrote no last.pt (exit {process.returncode})")
    return int(read_checkpoint(run / "last.pt")["epoch"])


@contextlib.contextmanager
def _deterministic_scope() -> Iterator[None]:
    """deterministic: true changes process-wide torch flags: put them back for the stages after."""
    import torch

    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[0], flags[1]
        torch.use_deterministic_algorithms(flags[2], warn_only=flags[3])


def kill_resume_stage(ctx: Context) -> Outcome:
    """An uninterrupted run against one SIGKILLed in epoch 2 and resumed: equal on CPU, within tolerance on GPU."""
    import torch

    from scratchdet.models.checkpoint import read_checkpoint
    from scratchdet.train.config import load_config
    from scratchdet.train.trainer import Trainer

    _needs_validation()
    config = _config_file(ctx, "kill-resume", epochs=ctx.budget.kill_epochs, eval_every=ctx.budget.kill_epochs,
                          deterministic=True, **({"amp": "bf16"} if ctx.dry_run else {}))
    straight, killed = ctx.out / "kill-resume" / "straight", ctx.out / "kill-resume" / "killed"
    with _deterministic_scope():
        Trainer(*load_config(config), ctx.data, straight).fit()
        at = _kill_mid_epoch(_scratchdet("train", "--config", config, "--data", ctx.data, "--out", killed), killed)
        trainer = Trainer(*load_config(config), ctx.data, killed)
        trainer.resume()
        trainer.fit()
    a, b = read_checkpoint(straight / "last.pt")["model"], read_checkpoint(killed / "last.pt")["model"]
    identical = all(torch.equal(a[k], b[k]) for k in a)
    weight_diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    loss_a, loss_b = ({r["iteration"]: r["loss"] for r in _records(run) if r["type"] == "step"}
                      for run in (straight, killed))
    if loss_a.keys() != loss_b.keys():
        raise RuntimeError(f"iterations {sorted(set(loss_a) ^ set(loss_b))[:5]} logged by one run only")
    loss_diff = max(abs(loss_a[i] - loss_b[i]) / max(abs(loss_a[i]), 1e-12) for i in loss_a)
    passed = identical or (not ctx.dry_run and loss_diff <= GPU_RESUME_TOLERANCE)
    rule = "bit-identical required on CPU" if ctx.dry_run else f"tolerance {GPU_RESUME_TOLERANCE:g} relative loss"
    return Outcome(f"killed in epoch {at + 1}, resumed; weights {'bit-identical' if identical else 'differ'} "
                   f"(max |Δw| {weight_diff:.2e}), step losses max rel Δ {loss_diff:.2e} ({rule})",
                   {"killed_after_epoch": at, "identical": identical, "max_weight_diff": weight_diff,
                    "max_relative_loss_diff": loss_diff}, passed)


def ddp_stage(ctx: Context) -> Outcome:
    """torchrun on every GPU (NCCL; 2 CPU ranks on gloo in a dry run): one weight digest on every rank."""
    import torch

    _needs_validation()
    ranks = 2 if ctx.dry_run else torch.cuda.device_count()
    run = ctx.out / "ddp"
    config = _config_file(ctx, "ddp", epochs=ctx.budget.ddp_epochs, eval_every=ctx.budget.ddp_epochs,
                          batch_size=ctx.budget.batch * ranks)
    result = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   "-m", "scratchdet", "train", "--config", str(config), "--data", str(ctx.data), "--out", str(run)],
                  timeout=600, log=ctx.out / "ddp.log")
    backend = "nccl" if "process group: nccl" in result.stderr else "gloo" if "process group: gloo" in result.stderr \
        else "unknown"
    (record,) = [r for r in _records(run) if r["type"] == "ranks"]
    digests = record["param_sha256"]
    passed = len(digests) == ranks and len(set(digests)) == 1 and backend == ("gloo" if ctx.dry_run else "nccl")
    return Outcome(f"{ranks} rank(s) on {backend}, weights {'agree' if len(set(digests)) == 1 else 'DIFFER'} "
                   f"(sha256 {digests[0][:12]}…)", {"ranks": ranks, "backend": backend, "param_sha256": digests},
                   passed)


# -- speed stages ----------------------------------------------------------------------------------------
def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def throughput_stage(ctx: Context) -> Outcome:
    """Images/s of the paper model's training step (forward, loss, backward, SGD) under AMP; data excluded."""
    from scratchdet.train.trainer import SkippedStep, Trainer

    model_config, train_config = _configs(ctx, ctx.budget.speed_config)
    batch, amp = ctx.budget.throughput_batch, "bf16" if ctx.dry_run else "fp16"
    train_config = replace(train_config, batch_size=batch, epochs=1, amp=amp)
    trainer = Trainer(model_config, train_config, ctx.data, ctx.out / "throughput")
    batches = [b[:3] for _, b in zip(range(4), trainer.loader)]  # cycled: the timed steps read no data
    warmup, timed = ctx.budget.throughput_steps
    for i in range(warmup):  # cuDNN autotuning and the GradScaler's first scale happen here
        trainer.step(*batches[i % len(batches)])
    _synchronize(ctx.device)
    started, skipped = time.perf_counter(), 0
    for i in range(timed):
        skipped += isinstance(trainer.step(*batches[i % len(batches)]), SkippedStep)
    _synchronize(ctx.device)
    images_per_s = timed * batch / (time.perf_counter() - started)
    return Outcome(f"{model_config.name} batch {batch} {amp}: {images_per_s:.1f} images/s over {timed} steps "
                   f"({skipped} skipped), data loading excluded",
                   {"images_per_s": images_per_s, "batch": batch, "amp": amp, "steps": timed}, skipped < timed)


def _timings(call: Callable[[], Any], device: str, warmup: int, iterations: int) -> list[float]:
    """Milliseconds per call: CUDA events on a GPU (the GPU's time, no host jitter), perf_counter on CPU."""
    import torch

    for _ in range(warmup):
        call()
    _synchronize(device)
    times = []
    for _ in range(iterations):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1e3)
    return times


def _model(ctx: Context, name: str, device: str):
    import torch

    from scratchdet.models.ssd import SSD

    torch.manual_seed(0)  # random weights: speed does not depend on them, NMS load a little (score threshold 0.01)
    return SSD(_configs(ctx, name)[0]).to(device).eval()


def inference_stage(ctx: Context) -> Outcome:
    """The paper model (random weights) cast to FP32/FP16/BF16: network + decoding + NMS per batch."""
    import copy

    import numpy as np
    import torch

    from scratchdet.models.postprocess import postprocess

    model = _model(ctx, ctx.budget.speed_config, ctx.device)
    rows: list[dict[str, Any]] = []
    size = model.config.input_size
    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16} if ctx.dry_run else \
        {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    warmup, iterations = ctx.budget.inference_iterations
    for name, dtype in precisions.items():
        cast = copy.deepcopy(model).to(dtype)
        for batch in ctx.budget.inference_batches:
            images = torch.rand(batch, 3, size, size, device=ctx.device, dtype=dtype) * 255

            @torch.no_grad()
            def call(cast=cast, images=images) -> None:
                offsets, logits = cast(images)
                postprocess(offsets.float(), logits.float(), model.priors, model.box_coder, model.config.postprocess,
                            model.config.input_size)

            ms = np.array(_timings(call, ctx.device, warmup, iterations))
            p50 = float(np.percentile(ms, 50))
            rows.append({"precision": name, "batch": batch, "p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)),
                         "mean_ms": float(ms.mean()), "fps": batch * 1e3 / p50, "iterations": iterations})
        del cast
    best = max(r["fps"] for r in rows if r["batch"] == 1)
    versus = "" if ctx.dry_run else f" vs the paper's {PAPER_FPS:g} on a Tesla P40 (x{best / PAPER_FPS:.2f})"
    return Outcome(f"{model.config.name}: best batch-1 {best:.1f} FPS{versus}; table below",
                   {"rows": rows, "config": model.config.name}, all(np.isfinite(r["p50_ms"]) for r in rows))


def onnxruntime_stage(ctx: Context) -> Outcome:
    """The paper model exported (decoding + NMS in the graph) and run on ONNX Runtime's CUDA provider."""
    import numpy as np

    if ctx.dry_run:
        raise Skip("dry run: ONNX Runtime's CUDA provider needs a GPU")
    for module, package in (("onnxruntime", "onnxruntime-gpu"), ("onnx", "onnx"), ("onnxscript", "onnxscript")):
        if importlib.util.find_spec(module) is None:
            raise Skip(f"{module} not installed (pip install {package})")
    import onnxruntime

    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.inference.onnxruntime_backend import OnnxBackend

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise Skip(f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    model = _model(ctx, PAPER_MODEL, "cpu")
    names = [f"class{i}" for i in range(model.config.num_classes - 1)]
    options = ExportOptions(simplify=importlib.util.find_spec("onnxsim") is not None)
    path = export_onnx(model, names, ctx.out / "onnx" / "model.onnx", options).path
    backend = OnnxBackend(path, providers=["CUDAExecutionProvider"])
    images = np.random.default_rng(0).uniform(0, 255, (1, 3, 300, 300)).astype(np.float32)
    warmup, iterations = ctx.budget.inference_iterations
    ms = np.array(_timings(lambda: backend.infer(images), "cpu", warmup, iterations))  # host clock: copies included
    p50 = float(np.percentile(ms, 50))
    return Outcome(f"{backend.provider} batch 1: p50 {p50:.2f} ms, {1e3 / p50:.1f} FPS (host clock, copies "
                   f"included{'' if options.simplify else '; onnxsim not installed, graph not simplified'})",
                   {"provider": backend.provider, "p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)),
                    "fps": 1e3 / p50, "simplified": options.simplify}, backend.provider == "CUDAExecutionProvider")


STAGES: dict[str, Callable[[Context], Outcome]] = {
    "train-fp16": lambda ctx: train_stage(ctx, "fp16"),
    "train-bf16": lambda ctx: train_stage(ctx, "bf16"),
    "resume-cpu-checkpoint": resume_cpu_stage,
    "kill-resume": kill_resume_stage,
    "ddp": ddp_stage,
    "train-throughput": throughput_stage,
    "inference": inference_stage,
    "onnxruntime-cuda": onnxruntime_stage,
}
RUN_FOLDERS = ("train-fp16", "train-bf16", "resume-cpu", "kill-resume", "ddp", "throughput", "onnx")


def run_stage(name: str, ctx: Context) -> dict[str, Any]:
    """One stage as a report row: its numbers, PASS/FAIL/SKIP and the detail, seconds (stages.run_stage: an exception
    is a FAIL row)."""
    result = shared.run_stage(partial(STAGES[name], ctx))
    row = {**result.data, "status": result.status, "detail": result.detail, "stage": name, "seconds": result.seconds}
    print(f"{name}: {row['status']} ({row['seconds']} s) {row['detail']}", file=sys.stderr, flush=True)
    return row


def run(out: Path, dry_run: bool, stages: list[str] | None = None) -> dict[str, Any]:
    """All stages (or `stages`); returns the report, also written to out/report.{json,md} after every stage."""
    from scratchdet.train.data.synth import make_synthetic_dataset

    started = time.perf_counter()
    budget = DRY_BUDGET if dry_run else GPU_BUDGET
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FOLDERS:  # a rerun starts from clean run folders (`scratchdet train` refuses used ones)
        shutil.rmtree(out / name, ignore_errors=True)
    data = make_synthetic_dataset(out / "data", images=budget.images, seed=0)
    ctx = Context(out, data, dry_run, budget)
    names = list(stages or STAGES)
    rows: list[dict[str, Any]] = []
    report = {"dry_run": dry_run, "environment": environment(), "budget": budget.__dict__, "stages": rows}
    for name in names:
        rows.append(run_stage(name, ctx))
        report.update(seconds=round(time.perf_counter() - started, 1), stages_left=names[len(rows):],
                      passed=shared.verdict(rows, dry_run=False, allowed=(shared.PASS, shared.SKIP)) == shared.PASS)
        shared.write_report(out, report, markdown)
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report: banner (dry run), environment, one row per stage, the inference table."""
    env = report["environment"]
    lines = []
    if report["dry_run"]:
        lines += ["**DRY RUN on the CPU: tiny budgets (tiny at 64 px, also in place of the paper model), gloo for "
                  "DDP, bf16 in place of fp16. It proves the stages run; its numbers say nothing about a GPU.**", ""]
    gpus = ", ".join(env.get("gpus", [])) or "none"
    lines += [f"GPU: {gpus}; driver {env.get('driver')}; CUDA {env['cuda']}; torch {env['torch']}; cuDNN "
              f"{env['cudnn']}; Python {env['python']}; {env['cpus']} CPUs; scratchdet from {env['scratchdet']}",
              "", "| stage | status | s | detail |", "|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['status']} | {r['seconds']} | {r['detail']} |" for r in report["stages"]]
    inference = next((r for r in report["stages"] if r["stage"] == "inference" and "rows" in r), None)
    if inference:
        lines += ["", f"PyTorch inference of {inference['config']} (random weights, network + decoding + NMS, "
                  f"{'host clock' if report['dry_run'] else 'CUDA events'}; paper: {PAPER_FPS:g} FPS on a Tesla P40)",
                  "", "| precision | batch | p50 ms | p99 ms | mean ms | FPS | FPS / paper |",
                  "|---|---|---|---|---|---|---|"]
        for r in inference["rows"]:
            versus = "" if report["dry_run"] else f"{r['fps'] / PAPER_FPS:.2f}"  # the dry run times tiny
            lines.append(f"| {r['precision']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['mean_ms']:.2f} | {r['fps']:.1f} | {versus} |")
    left = report.get("stages_left")
    overall = f"RUNNING, {len(left)} stage(s) left: {', '.join(left)}" if left else (
        "PASS" if report["passed"] else "FAIL")
    lines += ["", f"Overall: {overall} in {report['seconds']} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchdet.benchmarks.gpu_train_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-train-check"))
    parser.add_argument("--dry-run", action="store_true", help="the stages on the CPU with tiny budgets")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), help="run only these stages")
    args = parser.parse_args(argv)
    missing = missing_requirements(args.dry_run)
    if missing:
        print(f"gpu-train-check: cannot run here, missing: {'; '.join(missing)} (--dry-run runs on the CPU)",
              file=sys.stderr)
        return 1
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run(args.out, args.dry_run, args.stages)
    print(markdown(report))
    print(f"report: {args.out / 'report.md'} and report.json")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
