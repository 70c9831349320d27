from pathlib import Path

import numpy as np
import pytest

from scratchdet.models.detections import Detections
from scratchdet.train.curves import plot_curves
from scratchdet.train.data.records import ImageRecord
from scratchdet.train.evaluate import evaluate


def record(boxes, labels, difficult=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.array(difficult)
    return ImageRecord(0, Path("x.jpg"), 100, 100, boxes, np.array(labels), difficult)


def detections(rows):
    boxes = np.array([r[0] for r in rows], dtype=np.float32).reshape(-1, 4)
    return Detections.from_arrays(boxes, [r[1] for r in rows], [r[2] for r in rows], frame="image")


@pytest.fixture
def case():
    records = [record([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),  # class ids: A = 0, B = 1
               record([[0, 0, 10, 10], [40, 40, 50, 50]], [1, 0], difficult=[False, True])]
    found = [detections([([0, 0, 10, 10], 0.9, 0),     # A right
                         ([20, 20, 30, 30], 0.8, 0),   # A on a B: wrong class
                         ([50, 50, 60, 60], 0.3, 1),   # B on nothing
                         ([1, 1, 10, 10], 0.2, 0)]),   # A duplicate, below conf
             detections([([40, 40, 50, 50], 0.95, 0)])]  # A on a difficult A: ignored; the B is missed
    return records, found


def test_precision_recall_f1_and_confusion_by_hand(case):
    report = evaluate(*case, ["A", "B"], conf=0.25)
    a, b = report.at_conf["A"], report.at_conf["B"]
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert (b["precision"], b["recall"], b["f1"], b["ground_truth"]) == (0.0, 0.0, 0.0, 2)
    assert (a["best_f1"], a["best_f1_conf"]) == pytest.approx((1.0, 0.9))
    assert report.overall == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})
    # rows predicted A, B, background; columns true A, B, background
    np.testing.assert_array_equal(report.confusion, [[1, 1, 0], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_allclose(report.matches[0].scores, [0.9, 0.8, 0.2], rtol=1e-6)  # difficult: neither way


def test_plots_are_written(case, tmp_path):
    written = plot_curves(evaluate(*case, ["A", "B"]), tmp_path)
    assert [p.name for p in written] == ["pr_curve.png", "confusion_matrix.png"]
    import matplotlib.image

    assert all(matplotlib.image.imread(p).shape[0] > 400 for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png", "pr_curve.png"]
