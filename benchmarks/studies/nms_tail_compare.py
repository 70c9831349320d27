"""Another NMS tail (e.g. the NonMaxSuppression one of an older export/nms_graph.py) against the current one on
one checkpoint: val detections that differ, mAP@0.5 and COCO AP, the greedy loop's passes per image, and ONNX
Runtime p50 of each tail alone and of each whole graph against the network alone, interleaved in one run.
Results: docs/results/nms.md.

    git show a88d73d:export/nms_graph.py > /tmp/old_nms_graph.py
    python -m scratchdet.benchmarks.studies.nms_tail_compare CKPT DATA OUT /tmp/old_nms_graph.py [int8]
"""

import importlib.util
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import scratchdet.export.onnx_export as onnx_export
from scratchdet.benchmarks.studies.nms_overhead import tail_inputs
from scratchdet.benchmarks.timing import interleave, latency_stats
from scratchdet.export.nms_graph import TRIPS_OUTPUT, nms_tail_model
from scratchdet.export.quantize import CalibrationOptions, quantize_int8
from scratchdet.models.boxes import match, tolerance
from scratchdet.models.checkpoint import load_model
from scratchdet.models.files import atomic_write
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend, create_session
from scratchdet.models.inference.predictor import Predictor
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch, detect_dataset, evaluate

ckpt, data, out_arg, old_py = sys.argv[1:5]
int8 = len(sys.argv) > 5
out = Path(out_arg)
out.mkdir(parents=True, exist_ok=True)
spec = importlib.util.spec_from_file_location("old_nms_graph", old_py)
if spec is None or spec.loader is None:
    raise SystemExit(f"{old_py}: not a Python file")
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
model, checkpoint = load_model(ckpt)
names = checkpoint["class_names"]
new_append = onnx_export.append_nms
paths = {}
for tail, append in (("old", old.append_nms), ("new", new_append)):
    onnx_export.append_nms = append
    paths[tail] = onnx_export.export_onnx(model, names, out / f"{tail}.onnx", onnx_export.ExportOptions()).path
    if int8:
        paths[tail + "-int8"] = quantize_int8(paths[tail], data, "tensorrt", out / f"{tail}-int8.onnx",
                                              CalibrationOptions(images=16))
onnx_export.append_nms = new_append
val = load_dataset(data, "val")
dets = {k: detect_dataset(Predictor(OnnxBackend(p)), val, 8) for k, p in paths.items()}
for k in dets:
    r = evaluate(val.records, dets[k], val.class_names)
    print(f"{k:9s} detections {sum(len(d.scores) for d in dets[k])}  mAP@0.5 {r.map50:.4f}  COCO AP {r.coco_ap:.4f}")
tol = tolerance("export-fp32")
for a in [k for k in dets if k.startswith("old")]:
    b = a.replace("old", "new")
    unmatched_old = sum(int((match(x, y, tol) < 0).sum()) for x, y in zip(dets[a], dets[b]))
    unmatched_new = sum(int((match(y, x, tol) < 0).sum()) for x, y in zip(dets[a], dets[b]))
    exact = sum(np.array_equal(x.scores, y.scores) and np.array_equal(x.boxes, y.boxes)
                and np.array_equal(x.class_ids, y.class_ids) for x, y in zip(dets[a], dets[b]))
    print(f"{a} vs {b}: old detections without a new partner {unmatched_old}, new without old {unmatched_new}; "
          f"images with identical detections {exact}/{len(val.records)}")
# loop passes per val image (batch 1), read from the Loop's trip counter
m = onnx.load(str(paths["new"]))
m.graph.output.extend([onnx.helper.make_tensor_value_info(TRIPS_OUTPUT, onnx.TensorProto.FLOAT, None)])
s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
size = model.config.input_size
batch = dataset_batch(val.records, size)
trips = np.array([s.run([TRIPS_OUTPUT], {"images": batch[i:i + 1]})[0][0] for i in range(len(batch))])
print(f"loop passes over {len(trips)} val images: median {np.median(trips):.0f}, mean {trips.mean():.1f}, "
      f"max {trips.max():.0f}, min {trips.min():.0f}")
# the tail alone and the whole graph, old vs new, interleaved in one run
priors, classes = int(model.priors.shape[0]), len(names)
sessions = {}
for tail, module in (("old", old), ("new", None)):
    p = out / f"tail-{tail}.onnx"
    with atomic_write(p) as temporary:
        onnx.save((module.nms_tail_model if module else nms_tail_model)(priors, classes, model.config.postprocess),
                  str(temporary))
    sessions[f"tail-{tail}"] = create_session(p, 2)
feeds = {kind: tail_inputs(priors, classes, kind == "uniform") for kind in ("realistic", "uniform")}
calls: dict[str, Callable[[], object]] = {
    f"{t} {k}": partial(sessions[t].run, None, f) for t in sessions for k, f in feeds.items()}
full = {t: create_session(paths[t], 2, spinning=False) for t in ("old", "new")}
network = create_session(onnx_export.export_network_only(model, out / "network.onnx"), 2, spinning=False)
calls.update({f"full-{t}": partial(full[t].run, None, {"images": batch[:1]}) for t in full})
calls["network"] = partial(network.run, None, {"images": batch[:1]})
rounds = interleave(calls, 7, 10)
p50 = {k: latency_stats(v).p50 for k, v in rounds.items()}
for k, v in p50.items():
    print(f"p50 {k:24s} {v:8.2f} ms")
for t in ("old", "new"):
    print(f"tail share of the whole graph ({t}): {(p50[f'full-{t}'] - p50['network']) / p50[f'full-{t}']:.1%}")
