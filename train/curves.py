"""The PR curves and the confusion matrix of an evaluation (train/evaluate.py's `EvalResult`) as images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scratchdet.train.evaluate import EvalResult
from scratchdet.train.figures import save, subplots


def plot_curves(report: EvalResult, folder: str | Path, title: str = "") -> list[Path]:
    """pr_curve.png (per class, AP in the legend, the operating point at conf marked) and
    confusion_matrix.png (colour: share of each true class; numbers: counts) in `folder`."""
    folder = Path(folder)
    figure, axis = subplots(figsize=(6.5, 5))
    for name, m in zip(report.class_names, report.matches):
        recall, precision = m.curve()
        ap = report.per_class[name]["ap50"]
        line, = axis.plot(recall, precision, linewidth=1.2, label=f"{name} (AP50 {ap:.3f})")
        point = report.at_conf[name]
        axis.plot(point["recall"], point["precision"], "o", color=line.get_color())
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title=f"{title}precision-recall at IoU 0.5 (dots: conf {report.conf:g})")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    written = [save(figure, folder / "pr_curve.png", dpi=110)]

    names = [*report.class_names, "background"]
    counts = report.confusion
    shares = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    size = max(4.5, 0.6 * len(names) + 2.5)
    figure, axis = subplots(figsize=(size + 1, size))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(names)):
        for column in range(len(names)):
            if counts[row, column]:
                axis.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=8,
                          color="white" if shares[row, column] > 0.5 else "black")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set(xlabel="true class", ylabel="predicted class",
             title=f"{title}confusion at conf {report.conf:g}, IoU 0.5\n(colour: share of the true class)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    written.append(save(figure, folder / "confusion_matrix.png", dpi=110))
    return written
