"""The class counts `scratchdet data check` prints: boxes and images per class, one column per split."""

from __future__ import annotations

import numpy as np

from scratchdet.train.data.records import DetectionSet


def class_counts(dataset: DetectionSet) -> list[tuple[int, int]]:
    """(boxes, images holding at least one) of each class, in class order."""
    boxes = np.zeros(len(dataset.class_names), dtype=np.int64)
    images = np.zeros(len(dataset.class_names), dtype=np.int64)
    for record in dataset.records:
        boxes += np.bincount(record.labels, minlength=len(boxes))
        images[np.unique(record.labels)] += 1
    return list(zip(boxes.tolist(), images.tolist()))


def class_table(sets: dict[str, DetectionSet]) -> str:
    """A text table: class, then 'boxes (images)' per split; a last row for images without boxes."""
    names = next(iter(sets.values())).class_names
    counts = {split: class_counts(dataset) for split, dataset in sets.items()}
    header = ["class", *sets]
    rows = [[name, *(f"{counts[s][i][0]} ({counts[s][i][1]})" for s in sets)] for i, name in enumerate(names)]
    rows.append(["(background images)", *(str(sum(len(r.boxes) == 0 for r in d.records)) for d in sets.values())])
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    return "\n".join(lines)
