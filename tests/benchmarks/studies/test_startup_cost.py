import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

from scratchdet.benchmarks.studies.startup_cost import (
    COUNTS,
    TIMES,
    CountingArray,
    count_calls,
    ratios,
    summarise,
    table,
)


def _identity(path):
    tensor = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [tensor],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_reads_count_what_opens_an_onnx_file_for_reading_only(tmp_path, onnx_reads):
    path = _identity(tmp_path / "model.onnx")
    reads = onnx_reads
    onnx.load(str(path))  # not counted: outside `during`
    with reads.during() as counted:
        model = onnx.load(str(path))
        onnx.save(model, str(tmp_path / "copy.onnx"))  # a write
        (tmp_path / "other.txt").write_text("x")
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # bytes
    assert counted == {"python open": 1, "onnxruntime session": 1}


def test_colour_conversions_count_cvtcolor_and_channel_reorders(monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "cvtColor", cv2.cvtColor)
    calls = count_calls("cv2", cv2.cvtColor)
    CountingArray.reorders = 0
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3).view(CountingArray)
    swapped = cv2.cvtColor(image[..., [2, 1, 0]], cv2.COLOR_BGR2RGB)
    image[0, 1:3]  # a plain slice: no reorder
    assert calls["cvtColor"] == 1 and CountingArray.reorders == 1
    assert np.array_equal(swapped, np.asarray(image))


def _round(milliseconds, count=1):
    return {key: [milliseconds] for key in TIMES} | dict.fromkeys(COUNTS, count)


def test_a_ratio_pairs_the_rounds_so_load_that_changed_between_rounds_cancels():
    before = [_round(1.0), _round(9.0), _round(9.0)]
    after = [_round(2.0), _round(2.0), _round(9.0)]
    # pooled medians say 9.0 -> 2.0 (0.22); round by round the after tree took 2x, 0.22x and 1x: median 1.0
    assert summarise(before)["startup_ms"] == 9.0 and summarise(after)["startup_ms"] == 2.0
    assert ratios(before, after)["startup_ms"] == 1.0


def test_the_table_shows_both_trees_and_the_ratio_of_each_measure():
    before, after = [_round(4.0, 2), _round(4.0, 2)], [_round(2.0, 1), _round(2.0, 0)]
    ratio = ratios(before, after)
    assert ratio["export_folds"] == 0.5  # counts: the largest of each tree's rounds
    rows = table(summarise(before), summarise(after), ratio | {"conversions_bgr": float("nan")},
                 ("before", "after")).splitlines()
    assert rows[0] == "| measure | before | after | after / before |"
    assert len(rows) == 2 + len(TIMES) + len(COUNTS)
    assert rows[2] == f"| {TIMES['startup_ms']} | 4.00 | 2.00 | 0.50 |"
    assert rows[-1] == f"| {COUNTS['conversions_bgr']} | 2 | 1 | - |"
