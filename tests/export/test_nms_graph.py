"""The ONNX NMS tail on hand-made inputs, run by ONNX Runtime and OpenVINO in both output layouts and checked
against models.boxes.nms on the same boxes and scores; and built by a real TensorRT (TensorRT-RTX, SM86)."""

import numpy as np
import onnx
import pytest

from scratchdet.export.nms_graph import LOOP_NAME, TRIPS_OUTPUT, nms_tail_model, to_tfssd_layout
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.tensorrt_rtx import build_rtx, rtx_available
from scratchdet.models.boxes import nms
from scratchdet.models.config import PostprocessConfig, load_model_config
from scratchdet.models.contract import unpack_outputs
from scratchdet.models.inference.onnxruntime_backend import import_onnxruntime
from scratchdet.models.inference.openvino_backend import import_openvino

FRAME = 300  # the tfssd layout divides boxes by the input size


def tail(num_priors: int, num_classes: int, config: PostprocessConfig, layout: str) -> onnx.ModelProto:
    model = nms_tail_model(num_priors, num_classes, config)
    return to_tfssd_layout(model, FRAME) if layout == "tfssd" else model


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray], extra: tuple[str, ...] = ()):
    if extra:
        model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                                  for name in extra)
    session = import_onnxruntime().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def run_openvino(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    ov = import_openvino()
    compiled = ov.Core().compile_model(ov.Core().read_model(model.SerializeToString(), b""), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled.create_infer_request().infer(feeds)
    return {name: np.array(value) for output, value in results.items() for name in output.get_names()}


RUNTIMES = {"onnxruntime": run_onnxruntime, "openvino": run_openvino}


def run_tail(boxes, scores, config: PostprocessConfig, runtime: str = "onnxruntime", layout: str = "scratchdet"):
    """boxes [P, 4], scores [P, C] of one image -> its Detections from the ONNX tail."""
    boxes = np.asarray(boxes, np.float32)[None]
    scores = np.asarray(scores, np.float32)[None]
    model = tail(boxes.shape[1], scores.shape[2], config, layout)
    onnx.checker.check_model(model, full_check=True)
    outputs = RUNTIMES[runtime](model, {"boxes": boxes, "scores": scores})
    (detections,) = unpack_outputs({k: v for k, v in outputs.items() if not k.startswith("nms/")}, FRAME)
    return detections


def assert_same_as_numpy_nms(boxes: np.ndarray, scores: np.ndarray, config: PostprocessConfig, **where) -> int:
    """The tail keeps exactly what models.boxes.nms keeps over every (prior, class) candidate; returns the count."""
    got = run_tail(boxes, scores, config, **where)
    classes = scores.shape[1]
    candidates = scores.reshape(-1) > config.score_threshold
    index = np.flatnonzero(candidates)
    kept = index[nms(np.repeat(boxes, classes, axis=0)[index], scores.reshape(-1)[index], index % classes,
                     config.iou_threshold)]
    exact = where.get("layout", "scratchdet") == "scratchdet"  # tfssd boxes go through / FRAME and back
    np.testing.assert_array_equal(got.class_ids, kept % classes)
    np.testing.assert_array_equal(got.scores, scores.reshape(-1)[kept])
    np.testing.assert_allclose(got.boxes, boxes[kept // classes], rtol=0 if exact else 1e-6, atol=0 if exact else 1e-4)
    return len(kept)


OVERLAPPING = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]  # IoU of the first two: 9/11


def test_overlapping_box_of_a_class_is_suppressed_other_classes_untouched():
    scores = [[0.9, 0.0], [0.8, 0.7], [0.6, 0.0]]
    dets = run_tail(OVERLAPPING, scores, PostprocessConfig())
    assert dets.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert dets.class_ids.tolist() == [0, 1, 0]  # box 1 survives in class 1: only a class suppresses itself
    np.testing.assert_allclose(dets.boxes[1], OVERLAPPING[1])


def test_iou_exactly_at_the_threshold_keeps_both():
    boxes = [[0, 0, 2, 2], [1, 0, 3, 2]]  # IoU exactly 1/3 (exact in float32 arithmetic)
    dets = run_tail(boxes, [[0.9], [0.8]], PostprocessConfig(iou_threshold=1 / 3))
    assert len(dets) == 2
    assert len(run_tail(boxes, [[0.9], [0.8]], PostprocessConfig(iou_threshold=0.33))) == 1


def test_score_exactly_at_the_threshold_is_dropped():
    dets = run_tail(OVERLAPPING, [[0.5], [0.25], [0.5]], PostprocessConfig(score_threshold=0.25))
    assert dets.scores.tolist() == [0.5, 0.5]


def test_equal_scores_come_out_in_class_then_rank_order():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30]]
    dets = run_tail(boxes, [[0.5, 0.5], [0.5, 0.5]], PostprocessConfig())
    assert dets.class_ids.tolist() == [0, 0, 1, 1]
    assert dets.scores.tolist() == [0.5] * 4


def test_more_survivors_than_max_det_keep_the_best():
    rng = np.random.default_rng(0)
    corners = np.arange(40, dtype=np.float32)[:, None] * 20  # 40 disjoint boxes
    boxes = np.concatenate([corners, corners, corners + 10, corners + 10], axis=1)
    scores = rng.uniform(0.1, 1.0, (40, 1))
    dets = run_tail(boxes, scores, PostprocessConfig(max_det=7, pre_nms_topk=40))
    assert len(dets) == 7
    np.testing.assert_allclose(dets.scores, np.sort(scores[:, 0])[::-1][:7], rtol=1e-6)


def test_zero_survivors_give_zero_detections():
    dets = run_tail(OVERLAPPING, [[0.001], [0.002], [0.0]], PostprocessConfig(score_threshold=0.01))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)


def random_boxes(rng: np.random.Generator, count: int, spread: float = 250) -> np.ndarray:
    corners = rng.uniform(0, spread, (count, 2))
    return np.concatenate([corners, corners + rng.uniform(5, 50, (count, 2))], axis=1).astype(np.float32)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("layout", ["scratchdet", "tfssd"])
@pytest.mark.parametrize("seed", range(3))
def test_keeps_what_the_numpy_nms_keeps_on_random_boxes(seed, layout, runtime):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 120, spread=100)  # crowded: many overlaps above 0.45
    scores = rng.uniform(0.0, 1.0, (120, 3)).astype(np.float32)  # distinct: no tie order to argue about
    config = PostprocessConfig(score_threshold=0.2, iou_threshold=0.45, pre_nms_topk=120, max_det=360)
    assert 0 < assert_same_as_numpy_nms(boxes, scores, config, layout=layout, runtime=runtime) < 0.8 * 360


def chain(length: int, step: float) -> np.ndarray:
    """Boxes 10 px wide, each `step` px right of the last: with step 2.5, neighbours overlap by IoU 0.6 and
    boxes two apart by 1/3, so greedy NMS keeps every other box, and each decision hangs on the one before."""
    x = np.arange(length, dtype=np.float32)[:, None] * step
    return np.concatenate([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], axis=1)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("order", ["along", "against", "shuffled"])
def test_chains_of_overlapping_boxes_keep_exactly_the_greedy_set(order, runtime):
    rng = np.random.default_rng(1)
    length = 64
    ranks = {"along": np.arange(length), "against": np.arange(length)[::-1],
             "shuffled": rng.permutation(length)}[order]
    scores = 1 - ranks[:, None] / (2 * length)  # all > 0.5
    # class 1 runs the chain in the other direction, its scores half a step off class 0's: no ties
    scores = np.concatenate([scores, scores[::-1] - 1 / (4 * length)], axis=1).astype(np.float32)
    config = PostprocessConfig(score_threshold=0.01, pre_nms_topk=length, max_det=2 * length)
    kept = assert_same_as_numpy_nms(chain(length, 2.5), scores, config, runtime=runtime)
    if order != "shuffled":
        assert kept == length  # every other box, in each of the two classes


def test_loop_passes_follow_the_longest_suppression_chain():
    # keep starts at `valid`, right for rank 0; each pass settles one rank more, so a chain of n boxes takes
    # n - 1 passes plus one that sees no change (n, the loop's bound); disjoint boxes one.
    def passes(boxes: np.ndarray) -> float:
        scores = np.linspace(0.9, 0.5, len(boxes), dtype=np.float32)[None, :, None]
        model = nms_tail_model(len(boxes), 1, PostprocessConfig(pre_nms_topk=len(boxes), max_det=len(boxes)))
        return float(run_onnxruntime(model, {"boxes": boxes[None], "scores": scores}, (TRIPS_OUTPUT,))[
            TRIPS_OUTPUT][0])

    assert passes(chain(30, 2.5)) == 30
    assert passes(chain(30, 20.0)) == 1
    assert any(n.name == LOOP_NAME for n in nms_tail_model(30, 1, PostprocessConfig()).graph.node)


@pytest.mark.skipif(not rtx_available(), reason="TensorRT-RTX (tensorrt-rtx-cu12-bindings) is not installed: "
                    "`make setup` installs it with the dev extras")
@pytest.mark.parametrize("layout", ["scratchdet", "tfssd"])
def test_tensorrt_rtx_builds_the_demo_model_with_its_nms_tail(tmp_path, layout):
    from scratchdet.models.ssd import SSD

    model = SSD(load_model_config("tiny")).eval()
    names = [f"class{i}" for i in range(1, model.config.num_classes)]
    path = export_onnx(model, names, tmp_path / "model.onnx", ExportOptions(layout=layout)).path
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Loop" in ops and "NonMaxSuppression" not in ops
    build = build_rtx(path, ("SM86",))
    print(f"{layout}: TensorRT-RTX {build.verdict()}")
    assert build.built, build.verdict()
