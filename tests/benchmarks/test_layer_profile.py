import onnx
from scratchdet.benchmarks.layer_profile import compare, conv_module, format_table, kernel_times


def test_fused_kernel_names_map_back_to_their_module():
    assert conv_module("/model/backbone/stem/stem.1/stem.1.2/Relu_output_0_nchwc") == "/model/backbone/stem/stem.1"
    assert conv_module("/model/backbone/stem/stem.1/stem.1.0/Conv_token_24") == "/model/backbone/stem/stem.1"
    assert conv_module("/model/head/regression/convs.0/Conv") == "/model/head/regression/convs.0"
    assert conv_module("/model/backbone/stages.1/stages.1.0/shortcut/shortcut.0/Conv_token_7") == (
        "/model/backbone/stages.1/stages.1.0/shortcut")


def test_fp32_and_int8_profiles_cover_the_same_conv_layers(bccd_models):
    fp32, int8 = kernel_times(bccd_models["fp32"], runs=3), kernel_times(bccd_models["int8"], runs=3)
    exported = {conv_module(n.name) for n in onnx.load(str(bccd_models["fp32"])).graph.node if n.op_type == "Conv"}
    layers = lambda times: {k for k in times if not k.startswith("other:")}  # noqa: E731
    assert layers(fp32) == layers(int8) == exported
    assert all(ms > 0 for ms in fp32.values()) and "other:NonMaxSuppression" in int8
    rows = compare(fp32, int8)
    assert rows[0][1] == max(fp32.values())
    table = format_table(rows, ("fp32", "int8"), top=5)
    assert len(table.splitlines()) == 1 + 5 + 2 and f"({len(exported)} layers)" in table
