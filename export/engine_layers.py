"""An engine's layer information (ProfilingVerbosity.DETAILED), read the same way from both places it appears.

- TensorRT 10/11's IEngineInspector JSON (needs the engine deserialised, so a GPU): each layer an object with
  "ParameterType" ("Convolution" for convolutions, fused ones too) and "Weights": {"Type": "Int8"}
  (NVIDIA/TensorRT#3737, #4020); the activation type is in "Inputs"[i]["Format/Datatype"].
- TensorRT-RTX's builder log (no GPU needed): with a VERBOSE logger, the build ends with one message
  "Layers:\\n" + one line per layer, e.g.
  `Name: /model/.../Conv_myl0_2, LayerType: correlation, Inputs: [ { Name: x, ..., Datatype: Int8, ... }],
  Constants: [ { ..., Datatype: Int8, ... }, ...], Outputs: [...], TacticName: ..., StreamId: 0, Metadata: ...`,
  then "I/O Tensors:". A convolution is LayerType "correlation"; its first constant is the kernel.
Both become `Layer` records, and `convolution_precisions` is the one INT8 verdict over them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

LOG_HEADER = "Layers:"
_DATATYPE = re.compile(r"Datatype: (\w+)")
_SECTION = re.compile(r"(Inputs|Constants|Outputs): \[(.*?)\](?=, (?:Constants|Outputs|TacticName): |$)")


class LayerInformationError(ValueError):
    """Layer information without the per-layer details (an engine built without ProfilingVerbosity.DETAILED)."""


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "convolution" for every convolution (fused or not), else the engine's own layer type
    input_types: tuple[str, ...]  # activations, in input order: "Int8", "Float", "Half", ...
    weight_types: tuple[str, ...]  # the kernel first (convolutions), then other constants such as the bias

    @property
    def int8(self) -> bool:
        """An Int8 kernel and every known activation input Int8: the layer computes in INT8."""
        return bool(self.weight_types) and self.weight_types[0] == "Int8" \
            and all(t == "Int8" for t in self.input_types)


def _log_layer(line: str) -> Layer:
    name = line.removeprefix("Name: ").split(", LayerType: ")[0]
    kind_match = re.search(r"LayerType: (\w+)", line)
    kind = kind_match.group(1) if kind_match else "?"
    sections = {section: tuple(_DATATYPE.findall(body)) for section, body in _SECTION.findall(line)}
    return Layer(name, "convolution" if kind == "correlation" else kind, sections.get("Inputs", ()),
                 sections.get("Constants", ()))


def layers_from_build_log(messages: list[str]) -> list[Layer]:
    """The layers of TensorRT-RTX's DETAILED build log (the builder's VERBOSE messages, in order).

    Raises:
        LayerInformationError: no "Layers:" message (logger not VERBOSE, or profiling verbosity not DETAILED).
    """
    block = next((m for m in reversed(messages) if m.startswith(LOG_HEADER)), None)
    if block is None:
        raise LayerInformationError("the build log has no 'Layers:' block: build with a VERBOSE logger and "
                                    "config.profiling_verbosity = ProfilingVerbosity.DETAILED")
    lines = block.split("\n\n")[0].splitlines()[1:]
    return [_log_layer(line) for line in lines if line.startswith("Name: ")]


def _inspector_type(text: str) -> str:
    """'Channel major INT8 format where channel % 32 == 0' -> 'Int8' (the inspector folds type into format)."""
    for token, name in (("INT8", "Int8"), ("FP16", "Half"), ("FP32", "Float"), ("BF16", "BFloat16")):
        if token in text.upper():
            return name
    return text


def layers_from_inspector_json(information: str) -> list[Layer]:
    """The layers of IEngineInspector.get_engine_information(LayerInformationFormat.JSON).

    Raises:
        LayerInformationError: layer names only (the engine was not built DETAILED).
    """
    layers = json.loads(information).get("Layers", [])
    if layers and all(isinstance(layer, str) for layer in layers):
        raise LayerInformationError("the engine holds layer names only: build it with ProfilingVerbosity.DETAILED "
                                    "(trtexec --profilingVerbosity=detailed) to see its layers' precisions")
    found = []
    for layer in layers:
        kind = "convolution" if layer.get("ParameterType") == "Convolution" else str(layer.get("LayerType", "?"))
        inputs = tuple(_inspector_type(str(i.get("Format/Datatype", ""))) for i in layer.get("Inputs", [])
                       if isinstance(i, dict) and i.get("Format/Datatype"))
        weights = (str(layer["Weights"].get("Type")),) if isinstance(layer.get("Weights"), dict) else ()
        found.append(Layer(str(layer.get("Name", "?")), kind, inputs, weights))
    return found


def convolution_precisions(layers: list[Layer]) -> tuple[int, list[str]]:
    """(convolution layers, names of those not computing in INT8: see `Layer.int8`)."""
    convolutions = [layer for layer in layers if layer.kind == "convolution"]
    return len(convolutions), [c.name for c in convolutions if not c.int8]
