import numpy as np
import onnx
import pytest
import torch

from scratchdet.export.fold_bn import fold_batchnorm
from scratchdet.export.onnx_export import ExportOptions, export_onnx
from scratchdet.export.tensorrt_check import check_tensorrt_compatibility, tensorrt_verdicts
from scratchdet.export.tensorrt_rtx import rtx_available
from scratchdet.export.verify import compare, verify_onnx
from scratchdet.models.checkpoint import load_model
from scratchdet.models.config import PostprocessConfig, load_model_config
from scratchdet.models.contract import ContractError, check_contract, load_checked
from scratchdet.models.detections import Detections
from scratchdet.models.inference.onnxruntime_backend import create_session, run_session
from scratchdet.models.ssd import SSD
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    model, checkpoint = load_model(tiny_checkpoint)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    report = export_onnx(model, checkpoint["class_names"], path, ExportOptions(), "abc123")
    return model, path, report


def test_graph_follows_the_contract(exported):
    _, path, report = exported
    model, metadata = load_checked(path)
    assert metadata["class_names"] == ["circle", "square", "triangle"]
    assert metadata["input_size"] == 128 and metadata["checkpoint_sha256"] == "abc123"
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Loop") == 1 and "NonMaxSuppression" not in ops
    assert report.nodes_after_simplify < report.nodes_before_simplify
    assert report.fold_max_abs_diff < 1e-4
    assert tensorrt_verdicts(model) == {"10.3": [], "11.1": []}


def test_onnx_runtime_optimised_graph_has_no_batchnorm(exported, tmp_path):
    import onnxruntime as ort

    _, path, _ = exported
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(tmp_path / "optimised.onnx")).graph.node}
    assert "BatchNormalization" not in ops and ops & {"Conv", "FusedConv"}


def test_onnx_runtime_matches_pytorch_on_dataset_images(trained_checkpoint, trained_data, tmp_path):
    model, checkpoint = load_model(trained_checkpoint)
    path = tmp_path / "trained.onnx"
    export_onnx(model, checkpoint["class_names"], path, ExportOptions())
    images = dataset_batch(load_dataset(trained_data, "val").records[:6], model.config.input_size)
    report = verify_onnx(fold_batchnorm(model), checkpoint["class_names"], path, images)
    assert report.detections > 0
    assert report.ok, report.summary()


def test_dynamic_batch_gives_the_same_per_image_results(exported, synth_data):
    _, path, _ = exported
    session = create_session(path)
    images = dataset_batch(load_dataset(synth_data, "val").records[:5], 128)
    alone = [run_session(session, images[i : i + 1])[0] for i in range(5)]
    for batch in (2, 5):
        batched = [d for start in range(0, 5, batch) for d in run_session(session, images[start : start + batch])]
        report = compare(alone, batched)
        assert report.ok, f"batch {batch}: {report.summary()}"


@pytest.mark.parametrize("seed", range(3))
def test_untrained_model_output_stays_bounded_and_parity_holds_despite_tied_scores(tmp_path, seed):
    import torch

    torch.manual_seed(seed)
    model = SSD(load_model_config("tiny")).eval()
    options = ExportOptions(postprocess=PostprocessConfig(score_threshold=0.0, pre_nms_topk=50, max_det=30))
    path = tmp_path / "random.onnx"
    export_onnx(model, ["a", "b", "c"], path, options)
    images = np.random.default_rng(seed).uniform(0, 255, (4, 3, 128, 128)).astype(np.float32)
    assert all(len(d) == 30 for d in run_session(create_session(path), images))
    report = verify_onnx(fold_batchnorm(model), ["a", "b", "c"], path, images)
    assert report.ok, report.summary()


def test_parity_allows_a_different_box_only_where_scores_are_tied():
    reference = [Detections.from_arrays([[0, 0, 10, 10]], [0.5], [0])]
    swapped = [Detections.from_arrays([[2, 0, 12, 10]], [0.5], [0])]  # the other box of a tie was kept
    tied_scores = np.array([[[0.5, 0.1], [0.5, 0.1], [0.1, 0.1]]])  # [N, P, C]: two class-0 candidates at 0.5
    untied_scores = np.array([[[0.5, 0.1], [0.3, 0.1], [0.1, 0.1]]])
    assert compare(reference, swapped, tied_scores).ok
    assert compare(reference, swapped, tied_scores).tied == 2  # the kept box on each side
    assert not compare(reference, swapped, untied_scores).ok
    assert not compare(reference, [Detections.from_arrays([[0, 0, 10, 10]], [0.5], [1])], untied_scores).ok


def test_parity_of_models_that_detect_nothing_is_not_ok():
    empty = [Detections.from_arrays(np.zeros((0, 4)), [], [])]
    report = compare(empty, empty)
    assert not report.ok and "detects nothing" in report.summary()


def test_unknown_opset_and_unwritable_path_are_clear_errors(tmp_path):
    model = SSD(load_model_config("tiny")).eval()
    with pytest.raises(ValueError, match="opset 99 is not supported"):
        export_onnx(model, ["a", "b", "c"], tmp_path / "m.onnx", ExportOptions(opset=99))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write the file there"):
        export_onnx(model, ["a", "b", "c"], blocker / "m.onnx", ExportOptions())


def test_model_without_contract_outputs_is_refused(tmp_path):
    node = onnx.helper.make_node("Identity", ["images"], ["out"])
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 3, 8, 8])])
    with pytest.raises(ContractError, match=r"missing output\(s\) \['num_dets'"):
        check_contract(onnx.helper.make_model(graph), "other.onnx")
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ContractError, match="garbage.onnx: not a readable ONNX model"):
        load_checked(path)


def test_tensorrt_check_names_the_node_that_breaks_a_rule(exported):
    _, path, _ = exported
    model = onnx.load(str(path))
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    topk.attribute.append(onnx.helper.make_attribute("sorted", 0))
    model.graph.node.append(onnx.helper.make_node("NonZero", ["images"], ["nz"], name="odd"))
    findings = [str(f) for f in check_tensorrt_compatibility(model, "10.3")]
    assert any(f.startswith(f"TopK '{topk.name}': `sorted` is 0, must be 1") for f in findings)
    assert any(f.startswith("NonZero 'odd': operator NonZero is not in the TensorRT 10.3 table") for f in findings)


def test_check_tensorrt_cli_fails_on_a_graph_that_breaks_a_rule(exported, tmp_path):
    from scratchdet.cli import main

    _, path, _ = exported
    model = onnx.load(str(path))
    model.graph.node.append(onnx.helper.make_node("NonZero", ["images"], ["nz"], name="odd"))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    assert main(["export", "--check-tensorrt", "--onnx", str(broken)]) == 1
    assert main(["export", "--check-tensorrt", "--onnx", str(path)]) == 0


def test_export_cli_refuses_a_checkpoint_of_another_config(tiny_checkpoint, tmp_path):
    from scratchdet.cli import main

    assert main(["export", "--weights", str(tiny_checkpoint), "--config", "ssd300_root_resnet34",
                 "--out", str(tmp_path / "m.onnx")]) == 1
    assert not (tmp_path / "m.onnx").exists()
    assert main(["export", "--weights", str(tmp_path / "missing.pt")]) == 1
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["export", "--weights", str(tmp_path / "junk.pt")]) == 1


def test_export_cli_writes_a_verified_model(tiny_checkpoint, tmp_path, synth_data, capsys):
    from scratchdet.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "--weights", str(tiny_checkpoint), "--out", str(out), "--data", str(synth_data)]) == 0
    printed = capsys.readouterr().out
    assert "parity OK" in printed and "BatchNormalization 0" in printed
    assert "TensorRT 10.3: parser rules OK\nTensorRT 11.1: parser rules OK" in printed
    assert not rtx_available() or "TensorRT-RTX 1.7.1.116: parse OK, build (default targets) " in printed
    assert main(["export", "--weights", str(tiny_checkpoint), "--onnx", str(out), "--verify"]) == 0
    assert main(["export", "--check-tensorrt", "--onnx", str(out)]) == 0


def test_one_export_folds_once_and_reads_no_onnx_file_back(tiny_checkpoint, tmp_path, synth_data, monkeypatch,
                                                           onnx_reads):
    """The export holds the graph it wrote and the model it folded: parity, the TensorRT rules and TensorRT-RTX's
    parse take them, so `scratchdet export` folds BN once and opens no .onnx file for reading."""
    import sys

    from scratchdet.cli import main
    from scratchdet.export import cli, fold_bn  # noqa: F401 (every module that imports fold_batchnorm)

    folds = []

    def counted(model):
        folds.append(model)
        return fold_batchnorm(model)
    for name, module in list(sys.modules.items()):
        if name.startswith("scratchdet") and getattr(module, "fold_batchnorm", None) is fold_batchnorm:
            monkeypatch.setattr(module, "fold_batchnorm", counted)
    with onnx_reads.during() as counted_reads:
        assert main(["export", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx"),
                     "--data", str(synth_data)]) == 0
    assert len(folds) == 1
    assert counted_reads == {}


def test_fold_difference_beyond_tolerance_fails_with_the_numbers(tmp_path, monkeypatch):
    # Before: a fold difference of 1.4e-1 (or nan) was printed and the export went on, exit 0.
    from scratchdet.export import onnx_export
    from scratchdet.export.fold_bn import fold_batchnorm

    def bad_fold(model):
        folded = fold_batchnorm(model)
        with torch.no_grad():
            next(m for m in folded.modules() if isinstance(m, torch.nn.Conv2d)).bias.add_(0.5)
        return folded

    monkeypatch.setattr(onnx_export, "fold_batchnorm", bad_fold)
    model = SSD(load_model_config("tiny")).eval()
    with pytest.raises(onnx_export.FoldError, match=r"m.onnx: BN folding changed the raw outputs by [\d.e+-]+, "
                                                    r"more than the [\d.e+-]+ allowed \(0.0001 x max \|output\|"):
        export_onnx(model, ["a", "b", "c"], tmp_path / "m.onnx", ExportOptions())
    assert not (tmp_path / "m.onnx").exists()


def test_non_finite_outputs_fail_the_export(tmp_path):
    model = SSD(load_model_config("tiny")).eval()
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.fill_(float("nan"))
    with pytest.raises(RuntimeError, match=r"m.onnx: the model's outputs are not finite"):
        export_onnx(model, ["a", "b", "c"], tmp_path / "m.onnx", ExportOptions())
    assert list(tmp_path.iterdir()) == []


def test_network_only_export_gives_the_raw_outputs_at_any_batch(exported, synth_data, tmp_path):
    """The A/B reference of benchmarks/studies/nms_overhead.py: the folded network without decoding or NMS."""
    from scratchdet.export.onnx_export import export_network_only

    model, _, _ = exported
    path = export_network_only(model, tmp_path / "network.onnx")
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert [o.name for o in graph.output] == ["offsets", "logits"]
    assert not ops & {"BatchNormalization", "NonMaxSuppression", "Softmax", "TopK"}, ops
    assert [f.name for f in tmp_path.iterdir()] == ["network.onnx"]  # no temporary left beside it
    session = create_session(path)
    images = dataset_batch(load_dataset(synth_data, "val").records[:3], model.config.input_size)
    with torch.no_grad():
        reference = [t.numpy() for t in model.eval()(torch.from_numpy(images))]
    for batch in (images[:1], images):
        offsets, logits = session.run(None, {"images": batch})
        np.testing.assert_allclose(offsets, reference[0][: len(batch)], atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(logits, reference[1][: len(batch)], atol=1e-3, rtol=1e-3)
    assert offsets.shape == (3, model.priors.shape[0], 4) and logits.shape == (3, model.priors.shape[0], 4)
