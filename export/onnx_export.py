"""`scratchdet export`: fold BN, export network + box decoding to ONNX, append NMS, add metadata,
simplify with onnxsim, check with onnx.checker and against the contract."""

from __future__ import annotations

import io
import logging
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx
import torch
from torch import nn

from scratchdet.export.fold_bn import fold_batchnorm
from scratchdet.export.nms_graph import append_nms, to_tfssd_layout
from scratchdet.models.config import PostprocessConfig, to_dict
from scratchdet.models.contract import DEFAULT_LAYOUT, INPUT, LAYOUTS, check_contract, exporter_version, write_metadata
from scratchdet.models.files import atomic_write, check_destination
from scratchdet.models.ssd import SSD

log = logging.getLogger(__name__)

# Opsets the exporter, ONNX Runtime and TensorRT 10/11's parser all handle for this graph.
OPSETS = range(13, 21)
# Folded vs unfolded raw outputs may differ by float rounding only: measured 3e-5..5e-5 on outputs of
# magnitude 40..66 (relative ~1e-6, tiny/bccd_cpu/root_resnet18, random and trained); 1e-4 of the largest
# output is 100x that margin and far below a real folding error (a wrong BN shows 1e-1 and more).
FOLD_RELATIVE_TOLERANCE = 1e-4


class FoldError(RuntimeError):
    """BN folding changed the model's outputs beyond float rounding, or they are not finite."""


@dataclass(frozen=True)
class ExportOptions:
    opset: int = 17
    postprocess: PostprocessConfig | None = None  # None: the model's own (its config's) settings
    simplify: bool = True
    layout: str = DEFAULT_LAYOUT  # the outputs (models.contract.LAYOUTS); "tfssd" for stock DeepStream's parser


@dataclass
class ExportReport:
    path: Path
    nodes_before_simplify: int
    nodes_after_simplify: int
    fold_max_abs_diff: float  # folded vs unfolded raw head outputs, on random 0-255 images
    op_counts: dict[str, int]
    graph: onnx.ModelProto  # what `path` holds: checks after the export take it rather than reading the file
    folded: SSD  # the BN-folded model the graph was exported from: the parity reference


class DecodedSSD(nn.Module):
    """The network plus decoding: boxes [B, P, 4] x1, y1, x2, y2 in input pixels, scores [B, P, C-1]."""

    scale: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model
        size = float(model.config.input_size)
        self.register_buffer("scale", torch.tensor([size, size, size, size]))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offsets, logits = self.model(images)
        boxes = self.model.box_coder.decode(offsets, self.model.priors) * self.scale
        scores = torch.softmax(logits, dim=-1)[..., 1:]  # background dropped
        return boxes, scores


def _torch_export(model: nn.Module, input_size: int, opset: int,
                  outputs: tuple[str, str] = ("boxes", "scores")) -> onnx.ModelProto:
    """The traced graph, exported in memory (no file written and read back)."""
    dummy = torch.zeros(1, 3, input_size, input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # only the TorchScript exporter's deprecation notice; every other warning still shows
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        # the TorchScript exporter writes into a BytesIO (its own signature takes one); the public hint names paths
        torch.onnx.export(model, (dummy,), buffer, input_names=[INPUT], output_names=list(outputs),  # type: ignore[arg-type]
                          dynamic_axes={name: {0: "batch"} for name in (INPUT, *outputs)},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return onnx.load_model_from_string(buffer.getvalue())


def export_network_only(model: SSD, out: str | Path, opset: int = 17) -> Path:
    """The folded network alone (raw offsets and logits, no decoding or NMS), simplified: the A/B
    reference for what the in-graph decoding and NMS cost."""
    out = Path(out)
    check_destination(out)
    graph = _torch_export(fold_batchnorm(model), model.config.input_size, opset, ("offsets", "logits"))
    with atomic_write(out) as temporary:
        onnx.save(simplify(graph, out), str(temporary))
    return out


def check_fold(model: SSD, folded: nn.Module, images: torch.Tensor, source: str | Path) -> float:
    """Max abs difference of the raw outputs of `model` and its folded copy, checked against the tolerance.

    Raises:
        FoldError: the outputs are not finite (NaN weights, overflow) or differ beyond
            FOLD_RELATIVE_TOLERANCE x the largest output, with both numbers.
    """
    with torch.no_grad():
        reference, candidate = model.eval()(images), folded.eval()(images)
    difference = max(float((a - b).abs().max()) for a, b in zip(reference, candidate))
    scale = max(float(a.abs().max()) for a in reference)
    if not (math.isfinite(difference) and math.isfinite(scale)):
        raise FoldError(f"{source}: the model's outputs are not finite (max |output| {scale}, fold difference "
                        f"{difference}); its weights or BN statistics hold NaN/inf or overflow")
    allowed = FOLD_RELATIVE_TOLERANCE * max(scale, 1.0)
    if difference > allowed:
        raise FoldError(f"{source}: BN folding changed the raw outputs by {difference:.3g}, more than the "
                        f"{allowed:.3g} allowed ({FOLD_RELATIVE_TOLERANCE:g} x max |output| {scale:.3g})")
    return difference


def simplify(model: onnx.ModelProto, source: Path) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError(f"{source}: onnxsim could not validate the simplified model")
    return simplified


def export_onnx(model: SSD, class_names: list[str], out: str | Path, options: ExportOptions,
                checkpoint_sha256: str | None = None) -> ExportReport:
    """Export `model` to `out` following the ONNX contract (BN folded once); returns node counts, the fold check,
    the graph written and the folded model.

    Raises:
        ValueError: an opset outside OPSETS, or class names that do not fit the model.
        FoldError: BN folding changed the outputs beyond tolerance, or they are not finite.
        OSError: `out` cannot be written.
    """
    out = Path(out)
    if options.opset not in OPSETS:
        raise ValueError(f"opset {options.opset} is not supported; choose {OPSETS.start}..{OPSETS.stop - 1}")
    if options.layout not in LAYOUTS:
        raise ValueError(f"unknown output layout '{options.layout}': choose {', '.join(LAYOUTS)}")
    config = replace(model.config, postprocess=options.postprocess or model.config.postprocess)
    if len(class_names) != config.num_classes - 1:
        raise ValueError(f"{len(class_names)} class names for a model of {config.num_classes - 1} classes")
    check_destination(out)
    folded = fold_batchnorm(model)
    images = torch.rand(2, 3, config.input_size, config.input_size) * 255
    fold_diff = check_fold(model, folded, images, out)
    graph = append_nms(_torch_export(DecodedSSD(folded), config.input_size, options.opset),
                       int(model.priors.shape[0]), len(class_names), config.postprocess)
    if options.layout == "tfssd":
        graph = to_tfssd_layout(graph, config.input_size)
    write_metadata(graph, {
        "class_names": class_names, "input_size": config.input_size, "mean": list(config.mean),
        "std": list(config.std), "color_order": "RGB", **asdict(config.postprocess),
        "config_name": config.name, "model_config": to_dict(config), "checkpoint_sha256": checkpoint_sha256,
        "precision": "fp32", "exporter": exporter_version(), "output_layout": options.layout,
    })
    before = len(graph.graph.node)
    if options.simplify:
        graph = simplify(graph, out)
    onnx.checker.check_model(graph, full_check=True)
    check_contract(graph, out)
    counts: dict[str, int] = {}
    for node in graph.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if counts.get("BatchNormalization"):
        raise RuntimeError(f"{out}: {counts['BatchNormalization']} BatchNormalization node(s) left after folding")
    with atomic_write(out) as temporary:
        onnx.save(graph, str(temporary))
    log.info("exported %s: %d nodes, %d after onnxsim", out, before, len(graph.graph.node))
    return ExportReport(out, before, len(graph.graph.node), fold_diff, counts, graph, folded)
