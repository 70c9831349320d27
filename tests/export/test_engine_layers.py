"""One layer-information parser for TensorRT-RTX's build log and TensorRT's IEngineInspector JSON."""

import json

import pytest

from scratchdet.export.engine_layers import (
    LayerInformationError,
    convolution_precisions,
    layers_from_build_log,
    layers_from_inspector_json,
)


def _tensor(name: str, datatype: str) -> str:
    return (f"{{ Name: {name}, Dimensions: [-1,16,64,64], Strides: [65536,1,1024,16], StrideOrder: [3,0,2,1], "
            f"Datatype: {datatype}, Format: (NHWC) Channel major format }}")


def _line(name: str, kind: str, inputs: list[str], constants: list[str]) -> str:
    body = ", ".join(_tensor(f"in{i}", t) for i, t in enumerate(inputs))
    consts = ", ".join(_tensor(f"c{i}", t) for i, t in enumerate(constants))
    return (f"Name: {name}, LayerType: {kind}, Inputs: [ {body}], Constants: [ {consts}], Outputs: [ "
            f"{_tensor('out', 'Float')}], TacticName: t, StreamId: 0, Metadata: [ONNX Layer: {name}]")


# The shape of TensorRT-RTX 1.7's message (profiling_verbosity DETAILED, VERBOSE logger), shortened
LOG = "\n".join(["Layers:",
                 _line("/stem/Conv_myl0_2", "correlation", ["Int8"], ["Int8", "Float", "Float"]),
                 _line("__myl_MulAddRelu_myl0_3", "kgen", ["Float"], ["Float"]),
                 _line("/head/Conv_myl0_4", "correlation", ["Float"], ["Int8", "Float"]),
                 _line("/head/loc/Conv_myl0_5", "correlation", ["Int8"], ["Half"]),
                 "Name: __mye1_myl0_6, LayerType: signal, Inputs: [], Constants: [], Outputs: [], TacticName: , "
                 "StreamId: 0, EventId: 1, Metadata: "]) + "\n\nI/O Tensors:\n Name: images, IOMode: Input"


def test_build_log_layers_and_their_types():
    layers = layers_from_build_log(["Engine generation completed in 2.3 seconds.", LOG, "Adding 1 engine(s)"])
    assert [layer.kind for layer in layers] == ["convolution", "kgen", "convolution", "convolution", "signal"]
    assert layers[0].input_types == ("Int8",) and layers[0].weight_types == ("Int8", "Float", "Float")
    assert layers[-1].input_types == () and layers[-1].name == "__mye1_myl0_6"
    # a float activation or a non-Int8 kernel each make a convolution not INT8
    assert convolution_precisions(layers) == (3, ["/head/Conv_myl0_4", "/head/loc/Conv_myl0_5"])


def test_build_log_without_layer_information_is_an_error():
    with pytest.raises(LayerInformationError, match="VERBOSE logger and config.profiling_verbosity = "):
        layers_from_build_log(["Engine generation completed in 2.3 seconds."])


def test_inspector_json_layers():
    info = {"Layers": [{"Name": "conv1 + relu", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
                        "Inputs": [{"Name": "x", "Format/Datatype": "Channel major INT8 format where channel % 32"}],
                        "Weights": {"Type": "Int8", "Count": 432}},
                       {"Name": "pool", "LayerType": "CaskPooling", "ParameterType": "Pooling"},
                       {"Name": "head", "ParameterType": "Convolution",
                        "Inputs": [{"Format/Datatype": "Row major linear FP16 format"}], "Weights": {"Type": "Half"}}]}
    layers = layers_from_inspector_json(json.dumps(info))
    assert [(layer.kind, layer.input_types, layer.weight_types) for layer in layers] == [
        ("convolution", ("Int8",), ("Int8",)), ("CaskPooling", (), ()), ("convolution", ("Half",), ("Half",))]
    assert convolution_precisions(layers) == (2, ["head"])
    with pytest.raises(LayerInformationError, match="layer names only"):
        layers_from_inspector_json(json.dumps({"Layers": ["conv1 + relu"]}))
