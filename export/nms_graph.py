"""Append the NMS tail to an exported graph: exact greedy per-class NMS in plain ONNX ops, no
NonMaxSuppression and no plugins, so that every TensorRT builds it (TensorRT-RTX has no NonMaxSuppression
kernel: NVIDIA/TensorRT-RTX#5; EfficientNMS_TRT is deprecated since TensorRT 10.12 and the SSD-era NMS plugins
are gone in 11).

Input tensors: `boxes` [B, P, 4] x1, y1, x2, y2 in input pixels and `scores` [B, P, C] (softmax, no
background). The tail is the algorithm of models.boxes.nms, one (image, class) row at a time:

  per class TopK(k = pre_nms_topk) -> candidates in rank order; bounded cost when every score passes
  GatherND of their boxes          -> [B, C * k, 4]
  IoU matrix per row               -> S[j, i] = IoU(j, i) > iou_threshold and j ranked before i   [B*C, k, k]
  Loop (greedy fixed point)        -> keep_i = valid_i and not any_j(keep_j and S[j, i]), until nothing changes
  TopK(max_det) of kept scores     -> det_scores, and the class and box of every detection
  num_dets = count(score > 0); rows past it are zero.

Why the loop is exact: the greedy decision of rank i depends only on the decisions of ranks before it, so the
equation above has one solution (greedy NMS), and each pass from keep = valid fixes at least the next rank in
order. At most k passes reach it; the loop stops at the first pass that changes nothing, which in practice is
the length of the longest suppression chain plus one (docs/results/nms.md). Boxes below the score threshold
rank after every valid box, so they can never suppress one; `valid` only drops them.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scratchdet.models.config import PostprocessConfig
from scratchdet.models.contract import OUTPUTS, TFSSD_OUTPUTS

LOOP_NAME = "nms/greedy_loop"
TRIPS_OUTPUT = "nms/loop_trips"  # float [1], passes the loop made; no graph output reads it (loop_trip_model does)


class _Builder:
    """Collects nodes and constants with unique names under a prefix. A Loop body gets a builder of its own
    (`parent` set): its constants become the body's initializers, since tools that rewrite the outer graph
    (onnxruntime.quantization) drop outer initializers that only a subgraph reads."""

    def __init__(self, prefix: str, parent: _Builder | None = None) -> None:
        self.prefix, self.count, self.parent = prefix, 0, parent
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []

    def const(self, value: np.ndarray | list | float, dtype=np.int64) -> str:
        name = f"{self.prefix}const_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, name: str | None = None, **attrs) -> list[str]:
        root = self if self.parent is None else self.parent  # one counter: node names unique across scopes
        root.count += 1
        names = [f"{self.prefix}{op_type.lower()}_{root.count}_{i}" for i in range(outputs)]
        if name is not None:
            names = [name]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{self.prefix}{op_type}_{root.count}",
                                           **attrs))
        return names


def _suppression_matrix(g: _Builder, boxes: str, k: int, iou_threshold: float) -> str:
    """S [N, k, k] float 0/1 from candidate boxes [N, k, 4] in rank order: S[j, i] = 1 when j ranks before i
    and IoU(j, i) > iou_threshold. The arithmetic is models.boxes.pairwise_iou's, op for op, so float32 IoU
    values (and so decisions at the threshold) are the same."""
    def corners(start: int) -> list[str]:  # [N, k, 1, 2] (as rows) and [N, 1, k, 2] (as columns)
        (pair,) = g.op("Slice", [boxes, g.const([start]), g.const([start + 2]), g.const([2])])  # [N, k, 2]
        return [g.op("Unsqueeze", [pair, g.const([2])])[0], g.op("Unsqueeze", [pair, g.const([1])])[0]]

    def product(pairs: str, axis: int) -> str:  # w * h of [..., 2] along `axis`, keeping it as size 1
        (w,) = g.op("Slice", [pairs, g.const([0]), g.const([1]), g.const([axis])])
        (h,) = g.op("Slice", [pairs, g.const([1]), g.const([2]), g.const([axis])])
        return g.op("Mul", [w, h])[0]

    zero = g.const(0.0, np.float32)
    (lo_rows, lo_cols), (hi_rows, hi_cols) = corners(0), corners(2)
    (top_left,) = g.op("Max", [lo_rows, lo_cols])  # [N, k, k, 2]
    (bottom_right,) = g.op("Min", [hi_rows, hi_cols])
    (overlap,) = g.op("Max", [g.op("Sub", [bottom_right, top_left])[0], zero])
    inter = product(overlap, 3)  # [N, k, k, 1]
    (lo,) = g.op("Slice", [boxes, g.const([0]), g.const([2]), g.const([2])])
    (hi,) = g.op("Slice", [boxes, g.const([2]), g.const([4]), g.const([2])])
    (sides,) = g.op("Max", [g.op("Sub", [hi, lo])[0], zero])
    area = product(sides, 2)  # [N, k, 1]
    (area_rows,) = g.op("Unsqueeze", [area, g.const([2])])  # [N, k, 1, 1]
    (area_cols,) = g.op("Unsqueeze", [area, g.const([1])])  # [N, 1, k, 1]
    (union,) = g.op("Sub", [g.op("Add", [area_rows, area_cols])[0], inter])
    (iou,) = g.op("Div", [inter, g.op("Max", [union, g.const(1e-9, np.float32)])[0]])
    (overlaps,) = g.op("Greater", [g.op("Reshape", [iou, g.const([-1, k, k])])[0],
                                   g.const(iou_threshold, np.float32)])  # [N, k, k]
    ranked_before = g.const(np.triu(np.ones((k, k), bool), 1), np.bool_)  # [j, i]: j < i
    (suppresses,) = g.op("And", [overlaps, ranked_before])
    return g.op("Cast", [suppresses], to=TensorProto.FLOAT)[0]


def _greedy_loop(g: _Builder, suppression: str, valid: str, k: int) -> str:
    """keep [N, 1, k] float 0/1: the fixed point of keep_i = valid_i * (1 - min(1, sum_j keep_j S[j, i])),
    iterated from keep = valid until a pass changes nothing (at most k passes: see the module docstring)."""
    body = _Builder("nms/loop/", parent=g)
    keep_in, trips_in = "nms/loop/keep_in", "nms/loop/trips_in"
    (count,) = body.op("MatMul", [keep_in, suppression])  # [N, 1, k]: kept boxes that suppress i
    one = body.const(1.0, np.float32)
    (hit,) = body.op("Min", [count, one])
    (free,) = body.op("Sub", [one, hit])
    (keep_out,) = body.op("Mul", [free, valid])
    (change,) = body.op("Abs", [body.op("Sub", [keep_out, keep_in])[0]])
    (changed,) = body.op("ReduceMax", [change], keepdims=0)  # a scalar: the loop's condition is one
    (cond_out,) = body.op("Greater", [changed, body.const(0.0, np.float32)])
    (trips_out,) = body.op("Add", [trips_in, body.const([1.0], np.float32)])
    graph = helper.make_graph(body.nodes, "nms_greedy_fixed_point", [
        helper.make_tensor_value_info("nms/loop/iteration", TensorProto.INT64, []),
        helper.make_tensor_value_info("nms/loop/cond_in", TensorProto.BOOL, []),
        helper.make_tensor_value_info(keep_in, TensorProto.FLOAT, ["rows", 1, k]),
        helper.make_tensor_value_info(trips_in, TensorProto.FLOAT, [1])], [
        helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []),
        helper.make_tensor_value_info(keep_out, TensorProto.FLOAT, ["rows", 1, k]),
        helper.make_tensor_value_info(trips_out, TensorProto.FLOAT, [1])], initializer=body.constants)
    keep, _ = g.op("Loop", [g.const(k), g.const(True, np.bool_), valid, g.const([0.0], np.float32)], outputs=2,
                   body=graph)
    g.nodes[-1].name, g.nodes[-1].output[1] = LOOP_NAME, TRIPS_OUTPUT
    return keep


def append_nms(model: onnx.ModelProto, num_priors: int, num_classes: int,
               options: PostprocessConfig) -> onnx.ModelProto:
    """Replace the graph outputs `boxes` and `scores` with the four fixed detection outputs.

    Args:
        num_priors: P; num_classes: C, the classes without background.
    """
    k = min(options.pre_nms_topk, num_priors)
    max_det = min(options.max_det, num_classes * k)
    g = _Builder("nms/")
    (scores_by_class,) = g.op("Transpose", ["scores"], perm=[0, 2, 1])  # [B, C, P]
    top_scores, top_index = g.op("TopK", [scores_by_class, g.const([k])], outputs=2, axis=-1)  # [B, C, k]
    # Boxes of each class's candidates: GatherND over the batch gives [B, C*k, 4] without copying the
    # boxes once per class.
    (flat_index,) = g.op("Reshape", [top_index, g.const([0, -1, 1])])  # [B, C*k, 1]
    (table_boxes,) = g.op("GatherND", ["boxes", flat_index], batch_dims=1)  # [B, C*k, 4]
    (row_boxes,) = g.op("Reshape", [table_boxes, g.const([-1, k, 4])])  # [B*C, k, 4]: one row per (image, class)
    (row_scores,) = g.op("Reshape", [top_scores, g.const([-1, 1, k])])  # [B*C, 1, k]
    (valid_candidate,) = g.op("Greater", [row_scores, g.const(options.score_threshold, np.float32)])
    (valid_row,) = g.op("Cast", [valid_candidate], to=TensorProto.FLOAT)
    keep = _greedy_loop(g, _suppression_matrix(g, row_boxes, k, options.iou_threshold), valid_row, k)
    (kept,) = g.op("Mul", [row_scores, keep])  # [B*C, 1, k], zero where suppressed or below threshold
    (kept_table,) = g.op("Reshape", [kept, g.const([-1, num_classes * k])])  # [B, C*k]
    det_scores, det_index = g.op("TopK", [kept_table, g.const([max_det])], outputs=2, axis=-1)  # [B, K]
    (valid,) = g.op("Greater", [det_scores, g.const(0.0, np.float32)])
    (valid_f,) = g.op("Cast", [valid], to=TensorProto.FLOAT)
    (valid_i,) = g.op("Cast", [valid], to=TensorProto.INT32)
    g.op("ReduceSum", [valid_i, g.const([1])], keepdims=1, name="num_dets")
    g.op("Mul", [det_scores, valid_f], name="det_scores")
    (class_index,) = g.op("Div", [det_index, g.const(k)])  # class-major table: row = class
    (class_i32,) = g.op("Cast", [class_index], to=TensorProto.INT32)
    (zero_i32,) = g.op("Cast", [g.const(0)], to=TensorProto.INT32)
    g.op("Where", [valid, class_i32, zero_i32], name="det_classes")
    (det_index_k1,) = g.op("Unsqueeze", [det_index, g.const([2])])
    (shape_bk4,) = g.op("Concat", [g.op("Shape", [det_index])[0], g.const([4])], axis=0)
    (det_index_k4,) = g.op("Expand", [det_index_k1, shape_bk4])
    (det_boxes_raw,) = g.op("GatherElements", [table_boxes, det_index_k4], axis=1)  # [B, K, 4]
    (valid_k1,) = g.op("Unsqueeze", [valid_f, g.const([2])])
    g.op("Mul", [det_boxes_raw, valid_k1], name="det_boxes")

    graph = model.graph
    graph.node.extend(g.nodes)
    graph.initializer.extend(g.constants)
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(name, dtype, ["batch", *shape(max_det)])
                        for name, (dtype, shape) in OUTPUTS.items())
    return model


def to_tfssd_layout(model: onnx.ModelProto, input_size: int) -> onnx.ModelProto:
    """Replace the four outputs of append_nms with the same rows in the layout of DeepStream's stock
    NvDsInferParseCustomTfSSD: all float32, boxes y1, x1, y2, x2 divided by the input size.

    Nothing is clipped or dropped here, so the rows stay those of our layout; the parser clips to the
    network size itself (nvdsinfer_custombboxparser.cpp; docs/jetson.md#bundle-and-deepstream).
    """
    g = _Builder("nms/tfssd/")
    names = {old: new for old, new in zip(OUTPUTS, TFSSD_OUTPUTS)}
    # rename the scores in place (a float32 tensor already); the others need a node each
    for node in model.graph.node:
        node.output[:] = [names["det_scores"] if o == "det_scores" else o for o in node.output]
    g.op("Cast", ["num_dets"], to=TensorProto.FLOAT, name=names["num_dets"])  # [B, 1]
    g.op("Cast", ["det_classes"], to=TensorProto.FLOAT, name=names["det_classes"])  # [B, K], 0-based
    (yxyx,) = g.op("Gather", ["det_boxes", g.const([1, 0, 3, 2])], axis=2)  # [B, K, 4] y1, x1, y2, x2 pixels
    g.op("Div", [yxyx, g.const(np.array(input_size, np.float32), np.float32)], name=names["det_boxes"])
    graph = model.graph
    graph.node.extend(g.nodes)
    graph.initializer.extend(g.constants)
    shapes = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(names[old], dtype, shapes[old])
                        for old, (dtype, _) in zip(OUTPUTS, TFSSD_OUTPUTS.values()))
    return model


def nms_tail_model(num_priors: int, num_classes: int, options: PostprocessConfig,
                   opset: int = 17) -> onnx.ModelProto:
    """The NMS tail as a model of its own (inputs `boxes` [B, P, 4], `scores` [B, P, C]), for timing it alone."""
    graph = helper.make_graph([], "nms_tail", [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", num_priors, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", num_priors, num_classes])], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    return append_nms(model, num_priors, num_classes, options)
