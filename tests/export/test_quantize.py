import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.quantize import CalibrationOptions, QuantizationError, convert_fp16, quantize_int8
from scratchdet.models.checkpoint import load_model
from scratchdet.models.contract import ContractError, load_checked
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend, create_session
from scratchdet.models.inference.predictor import Predictor
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import validate


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory):
    model, checkpoint = load_model(tiny_checkpoint)
    path = tmp_path_factory.mktemp("q") / "model.onnx"
    export_onnx(model, checkpoint["class_names"], path, ExportOptions())
    return path


def quantized_inputs(model: onnx.ModelProto) -> dict[str, str]:
    """Conv name -> how its data input is fed ('DequantizeLinear' when quantised)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return {n.name: producers[n.input[0]].op_type if n.input[0] in producers else "input"
            for n in model.graph.node if n.op_type == "Conv"}


@pytest.mark.parametrize("target", ["ort", "tensorrt"])
def test_every_conv_is_quantised_and_decode_nms_untouched(fp32, synth_data, tmp_path, target):
    out = quantize_int8(fp32, synth_data, target, tmp_path / f"{target}.onnx", CalibrationOptions(images=8))
    model, metadata = load_checked(out)
    assert metadata["precision"] == f"int8-{target}"
    assert metadata["quantization"]["calibration_images"] == 8
    assert set(quantized_inputs(model).values()) == {"DequantizeLinear"}
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    producers = {out: node for node in model.graph.node for out in node.output}
    assert all(producers[w].op_type == "DequantizeLinear" for w in weights)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    activation_zero_points = [initializers[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    if target == "tensorrt":
        assert all(z.dtype == np.int8 and not z.any() for z in activation_zero_points)
    else:
        assert all(z.dtype == np.uint8 for z in activation_zero_points)
    # Decoding sits at the top scope of the exported module ("/Exp", "/Softmax"...), NMS under "nms/".
    tail = [n for n in model.graph.node if n.name.startswith("nms/")
            or (n.name.startswith("/") and not n.name.startswith("/model/"))]
    assert {"Exp", "Softmax", "TopK"} <= {n.op_type for n in tail}
    (loop,) = [n for n in tail if n.op_type == "Loop"]  # the greedy NMS loop, its body untouched too
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in [*tail, *loop.attribute[0].g.node])


def test_fp16_converts_the_network_and_keeps_decoding_and_nms_float32(fp32, tmp_path):
    model = onnx.load(str(convert_fp16(fp32, tmp_path / "fp16.onnx")))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    half = [n for n in model.graph.node if any(types.get(o) == onnx.TensorProto.FLOAT16 for o in n.output)]
    assert sum(n.op_type == "Conv" for n in half) == sum(n.op_type == "Conv" for n in model.graph.node) > 0
    # No tail tensor is float16, so none is rounded to it on the way between two float32 nodes
    assert not [n.name for n in half if n.name.startswith("nms/")]
    (loop,) = [n for n in model.graph.node if n.op_type == "Loop"]
    made_by = {o: n for n in model.graph.node for o in n.output}
    outer = {name for n in loop.attribute[0].g.node for name in n.input if name in made_by}
    assert outer and all(types[name] == onnx.TensorProto.FLOAT for name in outer)  # the IoU matrix, valid mask


def test_tensorrt_flavour_is_what_tensorrt_parses(fp32, synth_data, tmp_path):
    from scratchdet.benchmarks.studies.qdq_placement import non_int8_dequantize, placement

    model = onnx.load(str(quantize_int8(fp32, synth_data, "tensorrt", tmp_path / "trt.onnx",
                                        CalibrationOptions(images=8))))
    assert non_int8_dequantize(model) == []  # the parser takes only INT8 into DequantizeLinear (36 INT32 before)
    found = placement(model)
    assert found.nonzero_zero_points == 0 and found.quantize > 0
    assert found.biases == {"float": 36}
    assert found.dequantize_into_shape_ops == 0  # head outputs reach Reshape in float
    assert found.quantised_inputs["Relu.x"] == 0  # TensorRT fuses ReLU into the Conv
    assert found.quantised_inputs["Conv.x"] == found.quantised_inputs["Conv.w"] == 36
    assert found.quantised_inputs["MaxPool.x"] == 1
    assert found.quantised_inputs["TopK.x"] == 0 and found.float_inputs["TopK.x"] == 2  # NMS scores stay float
    producers = {out: node for node in model.graph.node for out in node.output}
    residual_adds = [n for n in model.graph.node if n.op_type == "Add" and n.name.startswith("/model/backbone/")]
    assert len(residual_adds) == 10
    for add in residual_adds:  # only the skip input quantised; the Conv branch fuses into Conv + Add
        kinds = sorted(producers[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], (add.name, kinds)
    used = {name for node in model.graph.node for name in node.input}
    assert all(t.name in used for t in model.graph.initializer)  # no scale left behind by the Add edit


def test_calibration_ranges_are_cached_and_reused(fp32, synth_data, tmp_path):
    options = CalibrationOptions(images=8)
    first = quantize_int8(fp32, synth_data, "ort", tmp_path / "a.onnx", options, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("calibration-*.json")
    stamp = cache.stat().st_mtime_ns
    second = quantize_int8(fp32, synth_data, "ort", tmp_path / "b.onnx", options, cache_dir=tmp_path / "cache")
    assert cache.stat().st_mtime_ns == stamp
    assert onnx.load(str(first)).graph == onnx.load(str(second)).graph
    quantize_int8(fp32, synth_data, "ort", tmp_path / "c.onnx", CalibrationOptions(images=9), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("calibration-*.json"))) == 2  # other inputs, other key


def test_int8_and_fp16_keep_accuracy_close(trained_models, trained_data, tmp_path):
    data = load_dataset(trained_data, "val")
    fp32, int8 = trained_models["fp32"], trained_models["int8"]
    fp16 = convert_fp16(fp32, tmp_path / "fp16.onnx")
    tensorrt = quantize_int8(fp32, trained_data, "tensorrt", tmp_path / "model-int8-tensorrt.onnx",
                             CalibrationOptions(images=32))
    scores = {p.name: validate(Predictor(OnnxBackend(p)), data).map50 for p in (fp32, fp16, int8, tensorrt)}
    assert scores["model.onnx"] > 0.05, "the fixture model should detect something"
    assert abs(scores["fp16.onnx"] - scores["model.onnx"]) <= 0.01
    # a 2-epoch model: loose bounds (trained BCCD models lose at most 0.003 mAP@0.5, docs/results/formats.md)
    assert abs(scores["model-int8-ort.onnx"] - scores["model.onnx"]) <= 0.05
    assert abs(scores["model-int8-tensorrt.onnx"] - scores["model.onnx"]) <= 0.05


def test_bad_inputs_are_clear_errors(fp32, synth_data, tmp_path):
    with pytest.raises(QuantizationError, match="calibration needs 500 training images, the train split has 48"):
        quantize_int8(fp32, synth_data, "ort", tmp_path / "x.onnx", CalibrationOptions(images=500))
    with pytest.raises(QuantizationError, match="unknown target 'gpu'"):
        quantize_int8(fp32, synth_data, "gpu", tmp_path / "x.onnx", CalibrationOptions())
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write the file there"):
        quantize_int8(fp32, synth_data, "ort", blocker / "x.onnx", CalibrationOptions(images=8))
    other = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])]))
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(ContractError, match="missing output"):
        quantize_int8(tmp_path / "other.onnx", synth_data, "ort", tmp_path / "x.onnx", CalibrationOptions())


def test_unreadable_calibration_image_is_named(fp32, synth_data, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(synth_data, copy)
    for image in (copy / "images").iterdir():
        image.write_bytes(b"broken")
    with pytest.raises(ValueError, match="cannot read the image header"):  # found when the dataset is loaded
        quantize_int8(fp32, copy, "ort", tmp_path / "x.onnx", CalibrationOptions(images=4))


def test_channel_padding_keeps_outputs_and_reaches_the_fast_int8_layout(fp32, synth_data, tmp_path):
    from scratchdet.export.channel_pad import pad_conv_input_channels

    model, _ = load_checked(fp32)
    padded = pad_conv_input_channels(model)
    assert padded == ["/model/backbone/stem/stem.0/stem.0.0/Conv"]
    assert pad_conv_input_channels(model) == []  # already padded: nothing left to do
    onnx.checker.check_model(model)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv_weights = [initializers[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    assert all(w.shape[1] % 4 == 0 for w in conv_weights)
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 128, 128)).astype(np.float32)
    before = create_session(fp32).run(None, {"images": images})
    onnx.save(model, tmp_path / "padded.onnx")
    after = create_session(tmp_path / "padded.onnx").run(None, {"images": images})
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-3)
    quantized, metadata = load_checked(quantize_int8(fp32, synth_data, "ort", tmp_path / "ort.onnx",
                                                     CalibrationOptions(images=8)))
    assert metadata["quantization"]["channel_padded_convs"] == padded
    assert "Pad" in {n.op_type for n in quantized.graph.node}


@pytest.fixture(scope="module")
def int8(fp32, synth_data, tmp_path_factory):
    return quantize_int8(fp32, synth_data, "ort", tmp_path_factory.mktemp("int8") / "int8.onnx",
                         CalibrationOptions(images=8))


def _tampered(source, folder, precision):
    """A copy of `source` whose metadata claims `precision`."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "precision":
            prop.value = json.dumps(precision)
    onnx.save(model, str(folder / f"tampered-{precision}.onnx"))
    return folder / f"tampered-{precision}.onnx"


@pytest.mark.parametrize("source, action, message", [
    ("int8", "int8", r"int8.onnx: is not an FP32 model \(metadata precision 'int8-ort', graph int8\)"),
    ("int8", "fp16", r"int8.onnx: is not an FP32 model \(metadata precision 'int8-ort', graph int8\)"),
    ("fp16", "int8", r"fp16.onnx: is not an FP32 model \(metadata precision 'fp16', graph fp16\)"),
    ("int8 labelled fp32", "int8", r"tampered-fp32.onnx: is not an FP32 model \(metadata precision 'fp32', "
                                   r"graph int8\)"),
], ids=["int8->int8", "int8->fp16", "fp16->int8", "tampered int8"])
def test_non_fp32_sources_are_refused(fp32, int8, synth_data, tmp_path, source, action, message):
    # Before: each wrote a file ONNX Runtime cannot load (or a doubly quantised model).
    path = {"int8": int8, "fp16": lambda: convert_fp16(fp32, tmp_path / "fp16.onnx"),
            "int8 labelled fp32": lambda: _tampered(int8, tmp_path, "fp32")}[source]
    path = path() if callable(path) else path
    with pytest.raises(QuantizationError, match=message):
        if action == "int8":
            quantize_int8(path, synth_data, "ort", tmp_path / "out.onnx", CalibrationOptions(images=8))
        else:
            convert_fp16(path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_out_equal_to_the_source_is_refused(fp32, synth_data):
    # Before: --out equal to --onnx replaced the FP32 source.
    before = fp32.read_bytes()
    for write in (lambda: quantize_int8(fp32, synth_data, "ort", fp32, CalibrationOptions(images=8)),
                  lambda: convert_fp16(fp32, fp32.parent / "." / fp32.name)):
        with pytest.raises(QuantizationError, match="model.onnx: the output is the source ONNX itself"):
            write()
    assert fp32.read_bytes() == before


def test_a_kill_during_the_write_keeps_the_previous_file(fp32, synth_data, tmp_path, monkeypatch):
    # Before: quantize_static wrote the INT8 graph with the FP32 metadata to OUT, then the metadata was added in a
    # second write; a kill between the two left "precision: fp32" on an INT8 graph and the previous file gone.
    from scratchdet.export import quantize

    out = tmp_path / "out" / "int8.onnx"
    out.parent.mkdir()
    out.write_bytes(b"the previous good model")

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "write_metadata", killed)
    with pytest.raises(KeyboardInterrupt):
        quantize_int8(fp32, synth_data, "ort", out, CalibrationOptions(images=8), cache_dir=tmp_path / "cache")
    assert out.read_bytes() == b"the previous good model"
    assert [p.name for p in out.parent.iterdir()] == ["int8.onnx"]  # no temporary file left
