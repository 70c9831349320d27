import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

from scratchdet.benchmarks.studies import startup_cost
from scratchdet.benchmarks.studies.startup_cost import COUNTS, TIMES, CountingArray, count_calls, table


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


def test_table_gives_each_measure_its_ratio():
    before = dict.fromkeys(TIMES, 2.0) | dict.fromkeys(COUNTS, 2)
    after = dict.fromkeys(TIMES, 1.0) | dict.fromkeys(COUNTS, 1) | {"conversions_bgr": 0}
    rows = table(before, after, ("before", "after")).splitlines()
    assert rows[0] == "| measure | before | after | ratio |"
    assert len(rows) == 2 + len(TIMES) + len(COUNTS)
    assert rows[2] == f"| {TIMES['startup_ms']} | 2.00 | 1.00 | 0.50 |"
    assert rows[-1] == f"| {COUNTS['conversions_bgr']} | 2 | 0 | 0.00 |"
    assert startup_cost.summarise([{k: [3.0, 1.0] for k in TIMES} | dict.fromkeys(COUNTS, 1),
                                   {k: [2.0] for k in TIMES} | dict.fromkeys(COUNTS, 2)])["startup_ms"] == 2.0
