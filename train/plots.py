"""The run folder's derived outputs, rebuilt from metrics.jsonl after every epoch.

results.csv (one row per epoch) and the plots: loss split into box and class, learning rate, gradient
L2 norm (log axis) and its fluctuation (the window in the title), validation accuracy. Every plot is
titled with the run folder's name and the config's. Epochs are counted from 1 everywhere
(metrics.jsonl, results.csv, plots, checkpoints), as the progress bar counts them.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from scratchdet.bounded_yaml import load_yaml
from scratchdet.models.files import write_text
from scratchdet.train.figures import save, subplots

CSV_COLUMNS = ("epoch", "train_loss", "box_loss", "cls_loss", "lr", "grad_norm", "images_per_s", "elapsed_s",
               "map50", "map50_11point", "coco_ap")


def read_metrics(path: str | Path) -> list[dict]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_config(run: Path) -> dict:
    """The resolved config the trainer wrote (config.yaml), or {} for runs made before it existed."""
    path = run / "config.yaml"
    return (load_yaml(path) or {}) if path.is_file() else {}


def epoch_rows(records: list[dict]) -> list[dict]:
    """One row per finished epoch: the epoch record plus its steps' mean losses, last LR, mean gradient norm."""
    steps: dict[int, list[dict]] = {}
    for record in records:
        if record.get("type") == "step":
            steps.setdefault(record["epoch"], []).append(record)
    rows = []
    for record in (r for r in records if r.get("type") == "epoch"):
        own = steps.get(record["epoch"], [])
        means = {key: float(np.mean([s[key] for s in own])) if own else None
                 for key in ("box_loss", "cls_loss", "grad_norm")}
        rows.append({**{key: record.get(key) for key in CSV_COLUMNS}, **means,
                     "lr": own[-1]["lr"] if own else None})
    return rows


def write_results_csv(run: Path, records: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else format(v, ".6g") if isinstance(v, float) else v for k, v in row.items()}
                     for row in epoch_rows(records))
    path = run / "results.csv"
    write_text(path, buffer.getvalue())
    return path


def _figure(run: Path, name: str, title: str, draw) -> Path:
    figure, axis = subplots(figsize=(7, 4))
    draw(axis)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return save(figure, run / name)


def write_plots(run: str | Path) -> list[Path]:
    """results.csv and the PNGs next to metrics.jsonl; returns their paths."""
    run = Path(run)
    records = read_metrics(run / "metrics.jsonl")
    config = run_config(run)
    label = f"{run.name} ({config.get('model', {}).get('name', 'config unknown')})"
    window = config.get("train", {}).get("grad_window")
    steps = [r for r in records if r.get("type") == "step"]
    epochs = [r for r in records if r.get("type") == "epoch" and "map50" in r]
    written = [write_results_csv(run, records)]
    if steps:
        x = [s["iteration"] for s in steps]

        def series(key: str) -> list[float]:
            return [s[key] for s in steps]

        def loss(axis) -> None:
            for key, name in (("loss", "total"), ("box_loss", "box (Smooth L1)"), ("cls_loss", "class (CE)")):
                axis.plot(x, series(key), linewidth=0.8, label=name)
            axis.set(xlabel="iteration", ylabel="loss")
            axis.legend()

        def gradient(axis) -> None:
            axis.plot(x, series("grad_norm"), linewidth=0.8)
            axis.set(xlabel="iteration", ylabel="L2 norm (log scale)", yscale="log")

        def fluctuation(axis) -> None:
            axis.plot(x, series("fluctuation"), linewidth=0.8)
            if window and x[-1] > window:  # before it, the window holds every step so far, warm-up included
                axis.axvline(window, color="grey", linestyle=":", label="window full")
                axis.legend()
            axis.set(xlabel="iteration", ylabel="std / mean of the norm")

        written += [
            _figure(run, "loss.png", f"{label}: training loss, box + class", loss),
            _figure(run, "lr.png", f"{label}: learning rate",
                    lambda axis: (axis.plot(x, series("lr"), linewidth=0.8), axis.set(xlabel="iteration",
                                                                                       ylabel="LR"))),
            _figure(run, "grad_norm.png", f"{label}: L2 norm of the whole gradient", gradient),
            _figure(run, "grad_fluctuation.png", f"{label}: gradient-norm fluctuation, std / mean over the last "
                    f"{window if window else '?'} steps", fluctuation),
        ]
    if epochs:
        def accuracy(axis) -> None:
            numbers = [e["epoch"] for e in epochs]
            axis.plot(numbers, [e["map50"] for e in epochs], marker="o", label="VOC mAP@0.5")
            axis.plot(numbers, [e["coco_ap"] for e in epochs], marker="s", label="COCO AP")
            axis.set(xlabel="epoch (from 1)", ylabel="accuracy on val", ylim=(0, 1))
            axis.xaxis.get_major_locator().set_params(integer=True)
            axis.legend()

        written.append(_figure(run, "map.png", f"{label}: validation accuracy", accuracy))
    return written
