"""Append the NMS tail to an exported graph: standard ONNX ops only, no plugins
(EfficientNMS_TRT is deprecated since TensorRT 10.12 and the SSD-era NMS plugins are gone in 11).

Input tensors: `boxes` [B, P, 4] x1, y1, x2, y2 in input pixels and `scores` [B, P, C] (softmax, no
background). The tail is the algorithm of models.postprocess.postprocess:

  per class TopK(pre_nms_topk)  -> bounded cost even when every score passes (an untrained model)
  GatherND of their boxes       -> [B, C * k, 4]
  NonMaxSuppression             -> each (image, class) is its own NMS batch, so only a class suppresses itself
  ScatterND of kept scores      -> a dense [B, C * k] score table, zero where suppressed or below threshold
  TopK(max_det)                 -> det_scores, and the class and box of every detection
  num_dets = count(score > 0); rows past it are zero.

Every op here is in TensorRT's ONNX parser (NonMaxSuppression maps to INMSLayer).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scratchdet.models.config import PostprocessConfig
from scratchdet.models.contract import OUTPUTS, TFSSD_OUTPUTS


class _Builder:
    """Collects nodes and constants with unique names under a prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.count = prefix, 0
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []

    def const(self, value: np.ndarray | list | float, dtype=np.int64) -> str:
        name = f"{self.prefix}const_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, name: str | None = None, **attrs) -> list[str]:
        self.count += 1
        names = [f"{self.prefix}{op_type.lower()}_{self.count}_{i}" for i in range(outputs)]
        if name is not None:
            names = [name]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{self.prefix}{op_type}_{self.count}",
                                           **attrs))
        return names


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
    # One NMS batch per (image, class).
    (nms_boxes,) = g.op("Reshape", [table_boxes, g.const([-1, k, 4])])  # [B*C, k, 4]
    (flat_scores,) = g.op("Reshape", [top_scores, g.const([-1, k])])  # [B*C, k]
    (nms_scores,) = g.op("Unsqueeze", [flat_scores, g.const([1])])  # [B*C, 1, k]
    (selected,) = g.op("NonMaxSuppression", [
        nms_boxes, nms_scores, g.const([k]), g.const([options.iou_threshold], np.float32),
        g.const([options.score_threshold], np.float32)], center_point_box=0)  # [S, 3]: (b*C + c, 0, box)
    (positions,) = g.op("Gather", [selected, g.const([0, 2])], axis=1)  # [S, 2]
    (kept_values,) = g.op("GatherND", [flat_scores, positions])  # [S]
    (zeros,) = g.op("Mul", [flat_scores, g.const(0.0, np.float32)])
    (kept,) = g.op("ScatterND", [zeros, positions, kept_values])  # [B*C, k]
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
