"""The tfssd output layout: what stock DeepStream's NvDsInferParseCustomTfSSD makes of it equals our
own detections, and the contract tells the two layouts apart.

`stock_tfssd_parse` renders that parser's logic in Python, line by line, from DeepStream's
sources/libs/nvdsinfer_customparser/nvdsinfer_custombboxparser.cpp: DeepStream 6.2 as in the public mirror
github.com/hiennguyen9874/deepstream-sources (commit f9948312, lines 205-270, cited as L<n> below); the function
reads the same in DeepStream 5.1 (github.com/mdegans/deepstream-5.1).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.tensorrt_check import tensorrt_verdicts
from scratchdet.models.checkpoint import load_model
from scratchdet.models.config import load_model_config
from scratchdet.models.contract import TFSSD_OUTPUTS, ContractError, check_contract, load_checked, unpack_outputs
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend, create_session
from scratchdet.models.ssd import SSD
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch

FLOAT = np.float32


def stock_tfssd_parse(layers: dict[str, np.ndarray], dtypes: dict[str, str], width: int, height: int,
                      thresholds: list[float]) -> list[tuple[int, float, float, float, float, float]]:
    """NvDsInferParseCustomTfSSD on one frame's output slices -> (classId, left, top, width, height, confidence).

    `layers`: name -> that frame's buffer (nvinfer passes each output without the batch axis); `dtypes`: name ->
    "FLOAT" or another NvDsInferDataType; `thresholds`: perClassPreclusterThreshold (one per configured class).
    """
    def find(name: str) -> np.ndarray | None:  # L210-217: a layer counts only if its data type is FLOAT
        return layers[name] if name in layers and dtypes[name] == "FLOAT" else None

    number = find("num_detections")  # L219-222
    scores, classes, boxes = find("detection_scores"), find("detection_classes"), find("detection_boxes")
    if scores is None or classes is None or boxes is None:  # L223-227
        raise ValueError("ERROR: some layers missing or unsupported data types in output tensors")
    capacity = classes.shape[0]  # L229: classLayer->inferDims.d[0]
    count = capacity
    if number is not None:  # L230-232: (int) of the first float; unsigned int on the left
        count = int(np.trunc(number.reshape(-1)[0])) % 2**32
    count = min(count, capacity)  # L233-235
    count = max(0, count)  # L236 (after L233 an unsigned count is already <= capacity)
    flat = boxes.reshape(-1).astype(FLOAT)
    objects = []
    for i in range(count):  # L237
        confidence = FLOAT(scores[i])  # L239
        class_id = int(np.trunc(classes[i]))  # L240: float -> unsigned int classId, the value as is
        if class_id >= len(thresholds) or confidence < FLOAT(thresholds[class_id]):  # L241-244
            continue
        y1, x1, y2, x2 = range(4)  # L245
        rect_x1 = flat[i * 4 + x1] * FLOAT(width)  # L247-251
        rect_y1 = flat[i * 4 + y1] * FLOAT(height)
        rect_x2 = flat[i * 4 + x2] * FLOAT(width)
        rect_y2 = flat[i * 4 + y2] * FLOAT(height)
        # L252-255: CLIP(a, min, max) = MAX(MIN(a, max), min) (L30-32), to [0, width-1] and [0, height-1]
        rect_x1 = max(min(rect_x1, FLOAT(width - 1)), FLOAT(0))
        rect_x2 = max(min(rect_x2, FLOAT(width - 1)), FLOAT(0))
        rect_y1 = max(min(rect_y1, FLOAT(height - 1)), FLOAT(0))
        rect_y2 = max(min(rect_y2, FLOAT(height - 1)), FLOAT(0))
        if rect_x2 <= rect_x1 or rect_y2 <= rect_y1:  # L256-258
            continue
        left, top = rect_x1, rect_y1  # L259-262
        box_width, box_height = FLOAT(rect_x2 - rect_x1), FLOAT(rect_y2 - rect_y1)
        if box_width and box_height:  # L263-265
            objects.append((class_id, float(left), float(top), float(box_width), float(box_height),
                            float(confidence)))
    return objects


def _export_both(model, class_names, folder) -> dict:
    return {layout: export_onnx(model, class_names, folder / f"{layout}.onnx", ExportOptions(layout=layout)).path
            for layout in ("scratchdet", "tfssd")}


@pytest.fixture(scope="module")
def both_layouts(tiny_checkpoint, tmp_path_factory):
    model, checkpoint = load_model(tiny_checkpoint)
    return _export_both(model, checkpoint["class_names"], tmp_path_factory.mktemp("layouts"))


@pytest.fixture(scope="module", params=["synth", "trained", "random300"])
def models(request, tmp_path_factory):
    """Both layouts of a model and its data: the tiny model trained on synthetic data, the one trained on
    `trained_data` (BCCD, else a larger synthetic set), and random weights at 300 x 300, where box / 300 * 300
    is not exact in float32."""
    folder = tmp_path_factory.mktemp(f"layouts_{request.param}")
    if request.param == "random300":
        torch.manual_seed(0)
        model = SSD(replace(load_model_config("tiny"), input_size=300)).eval()
        return _export_both(model, ["circle", "square", "triangle"], folder), request.getfixturevalue("synth_data")
    data = request.getfixturevalue("synth_data" if request.param == "synth" else "trained_data")
    checkpoint = request.getfixturevalue("tiny_checkpoint" if request.param == "synth" else "trained_checkpoint")
    model, values = load_model(checkpoint)
    return _export_both(model, values["class_names"], folder), data


def _run(path, images):
    session = create_session(path)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": images})))


def test_tfssd_graph_has_the_stock_parsers_outputs(both_layouts):
    model, metadata = load_checked(both_layouts["tfssd"])
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(outputs) == ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]
    assert {t.elem_type for t in outputs.values()} == {TensorProto.FLOAT}
    assert [d.dim_value or d.dim_param for d in outputs["detection_boxes"].shape.dim] == ["batch", 200, 4]
    assert metadata["output_layout"] == "tfssd"
    assert load_checked(both_layouts["scratchdet"])[1]["output_layout"] == "scratchdet"
    assert tensorrt_verdicts(model) == {"10.3": [], "11.1": []}


def test_stock_parser_on_tfssd_outputs_gives_our_detections(models):
    """At the deployment threshold, NvDsInferParseCustomTfSSD on the tfssd ONNX's outputs = our detections
    (default layout, unpack_outputs, score >= threshold), boxes clipped as both DeepStream parsers clip them."""
    both_layouts, data = models
    _, metadata = load_checked(both_layouts["tfssd"])
    size, names = metadata["input_size"], metadata["class_names"]
    images = dataset_batch(load_dataset(data, "val").records[:16], size)
    ours = unpack_outputs(_run(both_layouts["scratchdet"], images))
    raw = _run(both_layouts["tfssd"], images)
    thresholds = [metadata["deploy_score_threshold"]] * len(names)
    kept = box_error = 0.0
    for i, detections in enumerate(ours):
        frame = {name: value[i] for name, value in raw.items()}  # nvinfer's per-frame slices
        got = stock_tfssd_parse(frame, dict.fromkeys(frame, "FLOAT"), size, size, thresholds)
        wanted = detections.select(detections.scores >= metadata["deploy_score_threshold"])
        clipped = np.clip(wanted.boxes, 0, size - 1)
        wanted = wanted.select((clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))
        clipped = np.clip(wanted.boxes, 0, size - 1)
        assert [g[0] for g in got] == wanted.class_ids.tolist()
        np.testing.assert_array_equal(np.array([g[5] for g in got], FLOAT), wanted.scores)
        xywh = np.array([g[1:5] for g in got], FLOAT).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        np.testing.assert_allclose(xyxy, clipped, rtol=0, atol=1e-3)
        box_error = max(box_error, float(np.abs(xyxy - clipped).max(initial=0)))
        kept += len(got)
    assert kept >= len(images)  # the deployment threshold keeps detections: the comparison is not empty
    assert box_error < 1e-3


def test_stock_parser_rendering_on_a_hand_made_frame():
    """Each rule of the rendering on rows whose fate is known: threshold per class, class past the configured
    ones, clip to [0, 99] x [0, 49], empty after clipping, rows past num_detections, count past K."""
    boxes = np.array([[0.1, 0.2, 0.5, 0.6],      # kept: y1, x1, y2, x2 -> x 20..60, y 5..25
                      [0.1, 0.2, 0.5, 0.6],      # class 1 below its threshold 0.5
                      [-0.2, 0.9, 1.5, 1.2],     # clipped to x 90..99, y 0..49
                      [0.3, 1.1, 0.4, 1.3],      # x 110..130 clips to 99..99: empty, dropped
                      [0.1, 0.1, 0.2, 0.2],      # class 7 is not configured
                      [0.1, 0.1, 0.2, 0.2]], FLOAT)  # past num_detections
    frame = {"num_detections": np.array([5.7], FLOAT), "detection_boxes": boxes,
             "detection_scores": np.array([0.9, 0.4, 0.3, 0.8, 0.9, 0.9], FLOAT),
             "detection_classes": np.array([0, 1, 2, 0, 7, 0], FLOAT)}
    got = stock_tfssd_parse(frame, dict.fromkeys(frame, "FLOAT"), 100, 50, [0.25, 0.5, 0.3])
    assert [g[0] for g in got] == [0, 2]
    np.testing.assert_allclose([g[1:] for g in got], [[20, 5, 40, 20, 0.9], [90, 0, 9, 49, 0.3]], atol=1e-5)
    frame["num_detections"] = np.array([1e6], FLOAT)  # L233-235: a count past K reads K rows
    assert len(stock_tfssd_parse(frame, dict.fromkeys(frame, "FLOAT"), 100, 50, [0.0] * 3)) == 4
    without = {k: v for k, v in frame.items() if k != "num_detections"}  # L229: no count layer reads K rows too
    assert len(stock_tfssd_parse(without, dict.fromkeys(without, "FLOAT"), 100, 50, [0.0] * 3)) == 4
    with pytest.raises(ValueError, match="unsupported data types"):  # L212: an INT32 class tensor is not found
        stock_tfssd_parse(frame, {**dict.fromkeys(frame, "FLOAT"), "detection_classes": "INT32"}, 100, 50, [0.0])


def test_every_backend_reader_gives_the_same_detections_for_both_layouts(both_layouts, synth_data):
    size = load_checked(both_layouts["tfssd"])[1]["input_size"]
    images = dataset_batch(load_dataset(synth_data, "val").records[:6], size)
    a, b = (OnnxBackend(both_layouts[layout]).infer(images) for layout in ("scratchdet", "tfssd"))
    for x, y in zip(a, b):
        assert x.class_ids.tolist() == y.class_ids.tolist() and len(x) > 0
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_allclose(x.boxes, y.boxes, rtol=0, atol=1e-3)
    with pytest.raises(ContractError, match="need the input size"):
        unpack_outputs(_run(both_layouts["tfssd"], images))


def _with_outputs(path, rename: dict[str, str], extra: list[str] = ()) -> onnx.ModelProto:
    model = onnx.load(str(path))
    for output in model.graph.output:
        if output.name in rename:
            for node in model.graph.node:
                node.output[:] = [rename[o] if o == output.name else o for o in node.output]
            output.name = rename[output.name]
    for name in extra:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model


def test_contract_accepts_both_layouts_and_refuses_a_mixed_one(both_layouts):
    for path in both_layouts.values():
        check_contract(onnx.load(str(path)), path)
    mixed = _with_outputs(both_layouts["scratchdet"], {"det_scores": "detection_scores"})
    with pytest.raises(ContractError, match=r"mixed.onnx: outputs of two layouts mixed"):
        check_contract(mixed, "mixed.onnx")
    both = _with_outputs(both_layouts["tfssd"], {}, ["num_dets"])
    with pytest.raises(ContractError, match="outputs of two layouts mixed"):
        check_contract(both, "both.onnx")
    with pytest.raises(ContractError, match=r"missing output\(s\) \['num_dets'.*\['num_detections'"):
        check_contract(_with_outputs(both_layouts["tfssd"], {"detection_boxes": "boxes"}), "m.onnx")


def test_contract_refuses_wrong_dtypes_and_a_layout_the_metadata_contradicts(both_layouts):
    model = onnx.load(str(both_layouts["tfssd"]))
    classes = next(o for o in model.graph.output if o.name == "detection_classes")
    classes.type.tensor_type.elem_type = TensorProto.INT32
    with pytest.raises(ContractError, match="'detection_classes' is INT32, expected FLOAT .layout 'tfssd'"):
        check_contract(model, "int.onnx")
    model = onnx.load(str(both_layouts["tfssd"]))
    for prop in model.metadata_props:
        if prop.key == "output_layout":
            prop.value = '"scratchdet"'
    with pytest.raises(ContractError, match="output_layout 'scratchdet' but the outputs are the 'tfssd' layout"):
        check_contract(model, "meta.onnx")


def test_exports_from_before_the_layout_key_read_as_our_layout(both_layouts):
    model = onnx.load(str(both_layouts["scratchdet"]))
    kept = [p for p in model.metadata_props if p.key != "output_layout"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    assert check_contract(model, "old.onnx")["output_layout"] == "scratchdet"
    tfssd = onnx.load(str(both_layouts["tfssd"]))
    kept = [p for p in tfssd.metadata_props if p.key != "output_layout"]
    del tfssd.metadata_props[:]
    tfssd.metadata_props.extend(kept)
    with pytest.raises(ContractError, match="output_layout 'scratchdet' but the outputs are the 'tfssd'"):
        check_contract(tfssd, "old.onnx")
    assert list(TFSSD_OUTPUTS) == [o.name for o in onnx.load(str(both_layouts["tfssd"])).graph.output]


# DeepStream installs its sources beside the library; DEEPSTREAM_SOURCES may point at another copy of them
# (e.g. a checkout of a public mirror). The function is compiled from there, never copied into this project.
DEEPSTREAM_SOURCES = Path(os.environ.get("DEEPSTREAM_SOURCES", "/opt/nvidia/deepstream/deepstream/sources"))
STUB = Path(__file__).with_name("deepstream_stub")


def _stock_function(source: Path) -> str:
    """The file's MIN/MAX/CLIP macros and the body of NvDsInferParseCustomTfSSD (its definition, by braces)."""
    text = source.read_text()
    macros = re.findall(r"^#define (?:MIN|MAX|CLIP)\(.*$", text, flags=re.MULTILINE)
    start = [m.start() for m in re.finditer(r'extern "C"\s+bool\s+NvDsInferParseCustomTfSSD\s*\(', text)]
    for begin in start:
        body = text.index(")", begin)
        after = text[body + 1:].lstrip()
        if not after.startswith("{"):
            continue  # a declaration
        depth, index = 0, text.index("{", body)
        for end in range(index, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                return "\n".join(["#include <algorithm>", "#include <iostream>", "#include <string>",
                                  '#include "nvdsinfer_custom_impl.h"', *macros, text[begin:end + 1], ""])
    raise ValueError(f"{source}: no definition of NvDsInferParseCustomTfSSD")


def test_rendering_equals_deepstreams_own_parser_where_its_source_is_installed(both_layouts, synth_data, tmp_path):
    source = DEEPSTREAM_SOURCES / "libs" / "nvdsinfer_customparser" / "nvdsinfer_custombboxparser.cpp"
    if not source.is_file():
        pytest.skip(f"DeepStream's parser source is not at {source} (set DEEPSTREAM_SOURCES to a DeepStream "
                    "sources folder)")
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to compile DeepStream's parser")
    (tmp_path / "tfssd.cpp").write_text(_stock_function(source))
    library = tmp_path / "libtfssd.so"
    subprocess.run(["g++", "-std=c++14", "-O2", "-fPIC", "-shared", f"-I{STUB}", str(tmp_path / "tfssd.cpp"),
                    str(STUB / "tfssd_shim.cpp"), "-o", str(library)], check=True)
    parse = ctypes.CDLL(str(library)).tfssd_parse
    pointer = np.ctypeslib.ndpointer(np.float32)
    parse.argtypes = [pointer] * 4 + [ctypes.c_uint] * 4 + [pointer, pointer]
    _, metadata = load_checked(both_layouts["tfssd"])
    size, classes = metadata["input_size"], len(metadata["class_names"])
    raw = _run(both_layouts["tfssd"], dataset_batch(load_dataset(synth_data, "val").records[:8], size))
    rng, compared = np.random.default_rng(0), 0
    for i in range(len(raw["num_detections"])):
        frame = {name: np.ascontiguousarray(value[i], FLOAT) for name, value in raw.items()}
        for thresholds in ([metadata["deploy_score_threshold"]] * classes, list(rng.uniform(0, 1, classes))):
            out = np.zeros((len(frame["detection_scores"]), 6), FLOAT)
            n = parse(frame["num_detections"], frame["detection_boxes"], frame["detection_scores"],
                      frame["detection_classes"], len(frame["detection_scores"]), size, size, classes,
                      np.array(thresholds, FLOAT), out)
            ours = stock_tfssd_parse(frame, dict.fromkeys(frame, "FLOAT"), size, size, thresholds)
            np.testing.assert_array_equal(out[:n], np.array(ours, FLOAT).reshape(-1, 6))
            compared += n
    assert compared > 0


def test_board_runner_writes_the_same_detections_for_both_layouts(both_layouts, synth_data, tmp_path):
    import json

    from scratchdet.runtime import board_runner

    image = sorted((synth_data / "images").iterdir())[0]
    documents = []
    for layout, path in both_layouts.items():
        assert board_runner.main([str(path), str(image), str(tmp_path / f"{layout}.json")]) == 0
        documents.append(json.loads((tmp_path / f"{layout}.json").read_text()))
    ours, tfssd = documents
    assert len(ours["detections"]) == len(tfssd["detections"]) > 0
    for a, b in zip(ours["detections"], tfssd["detections"]):
        assert (a["class_id"], a["score"]) == (b["class_id"], b["score"])
        np.testing.assert_allclose(a["box"], b["box"], atol=0.011)  # both rounded to 0.01 px
