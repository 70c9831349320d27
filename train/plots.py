"""The run's plots from metrics.jsonl: loss, gradient L2 norm and fluctuation per step, mAP per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scratchdet.models.files import atomic_write

STEP_PLOTS = {
    "loss.png": ("loss", "training loss (box + class)"),
    "grad_norm.png": ("grad_norm", "L2 norm of the whole gradient"),
    "grad_fluctuation.png": ("fluctuation", "gradient-norm fluctuation (std / mean over a window)"),
}


def read_metrics(path: str | Path) -> list[dict]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def write_plots(run: str | Path) -> list[Path]:
    """PNG files next to metrics.jsonl; returns their paths."""
    run = Path(run)
    records = read_metrics(run / "metrics.jsonl")
    steps = [r for r in records if r.get("type") == "step"]
    epochs = [r for r in records if r.get("type") == "epoch" and "map50" in r]
    written = []
    for name, (key, title) in STEP_PLOTS.items():
        if not steps:
            break
        figure, axis = plt.subplots(figsize=(7, 4))
        axis.plot([s["iteration"] for s in steps], [s[key] for s in steps], linewidth=0.8)
        axis.set(xlabel="iteration", ylabel=key, title=title)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        with atomic_write(run / name) as temporary:
            figure.savefig(temporary, dpi=100)
        plt.close(figure)
        written.append(run / name)
    if epochs:
        figure, axis = plt.subplots(figsize=(7, 4))
        x = [e["epoch"] + 1 for e in epochs]  # 1-based, as the progress bar counts
        axis.plot(x, [e["map50"] for e in epochs], marker="o", label="VOC mAP@0.5")
        axis.plot(x, [e["coco_ap"] for e in epochs], marker="s", label="COCO AP")
        axis.set(xlabel="epoch", ylabel="accuracy on val", title="validation accuracy", ylim=(0, 1))
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        with atomic_write(run / "map.png") as temporary:
            figure.savefig(temporary, dpi=100)
        plt.close(figure)
        written.append(run / "map.png")
    return written
