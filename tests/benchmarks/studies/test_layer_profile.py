import onnx
import pytest

from scratchdet.benchmarks.studies.layer_profile import (
    compare,
    conv_gops,
    conv_module,
    format_table,
    kernel_times,
    openvino_kernel_times,
)


def test_fused_kernel_names_map_back_to_their_module():
    assert conv_module("/model/backbone/stem/stem.1/stem.1.2/Relu_output_0_nchwc") == "/model/backbone/stem/stem.1"
    assert conv_module("/model/backbone/stem/stem.1/stem.1.0/Conv_token_24") == "/model/backbone/stem/stem.1"
    assert conv_module("/model/head/regression/convs.0/Conv") == "/model/head/regression/convs.0"
    assert conv_module("/model/backbone/stages.1/stages.1.0/shortcut/shortcut.0/Conv_token_7") == (
        "/model/backbone/stages.1/stages.1.0/shortcut")


def test_fp32_and_int8_profiles_cover_the_same_conv_layers(trained_models):
    fp32, int8 = kernel_times(trained_models["fp32"], runs=3), kernel_times(trained_models["int8"], runs=3)
    exported = {conv_module(n.name) for n in onnx.load(str(trained_models["fp32"])).graph.node if n.op_type == "Conv"}
    layers = lambda times: {k for k in times if not k.startswith("other:")}  # noqa: E731
    assert layers(fp32) == layers(int8) == exported
    assert all(ms > 0 for ms in fp32.values()) and "other:NonMaxSuppression" in int8
    rows = compare(fp32, int8)
    assert rows[0][1] == max(fp32.values())
    table = format_table(rows, ("fp32", "int8"), top=5)
    assert len(table.splitlines()) == 1 + 5 + 2 and f"({len(exported)} layers)" in table


def test_conv_gops_add_up_to_the_models_flops(trained_models):
    from scratchdet.models.checkpoint import load_model
    from scratchdet.models.info import count_gflops

    model, _ = load_model(trained_models["pt"])
    gops = conv_gops(trained_models["fp32"])
    exported = {conv_module(n.name) for n in onnx.load(str(trained_models["fp32"])).graph.node if n.op_type == "Conv"}
    assert set(gops) == exported and all(g > 0 for g in gops.values())
    assert sum(gops.values()) == pytest.approx(count_gflops(model, model.config.input_size), rel=0.01)


@pytest.mark.openvino
def test_openvino_profile_maps_every_conv_layer_of_the_int8_file(trained_models):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
    ort_times = kernel_times(trained_models["int8"], runs=3)
    openvino_times = openvino_kernel_times(trained_models["int8"], runs=3)
    layers = lambda times: {k for k in times if not k.startswith("other:")}  # noqa: E731
    assert layers(openvino_times) == layers(ort_times) == set(conv_gops(trained_models["int8"]))
    assert all(ms > 0 for ms in openvino_times.values())


def test_the_share_of_the_limit_is_each_rows_gops_over_its_time():
    rows = [("conv_a", 2.0, 4.0), ("other:Add", 1.0, 0.0), ("conv_b", 0.5, 0.25)]
    table = format_table(rows, ("ort", "openvino"), top=3, gops={"conv_a": 1.0, "conv_b": 0.1}, limit=1000.0)
    lines = [line.split() for line in table.splitlines()]
    # conv_a: 1 GOP in 2 ms = 500 G op/s = 50 % of 1000; in 4 ms 25 %. conv_b: 0.1 GOP in 0.5 / 0.25 ms.
    assert lines[1][4:7] == ["50%", "25%", "conv_a"] and lines[3][4:7] == ["20%", "40%", "conv_b"]
    assert lines[2][4:6] == ["-", "-"]  # no GOPs for a non-conv kernel
    # All convolutions: 1.1 GOPs in 2.5 ms (44 %) and in 4.25 ms (26 %).
    assert lines[4][3:6] == ["1.10", "44%", "26%"]
