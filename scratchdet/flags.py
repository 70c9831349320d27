"""Flag names shared by every command: `--model` names the model file everywhere.

Older names (`--weights` for val/export, `--onnx` for quantize/engine/bundle) still work as deprecated
aliases that log a warning once per process. Top-level package: the stages import it; it imports no stage
at module level (`add_runtime_arguments` reads the inference layer's formats when a command is configured).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("scratchdet")

_warned: set[str] = set()


class DeprecatedAlias(argparse.Action):
    """Stores the value under the canonical option; an old spelling logs a deprecation warning once."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        canonical = self.option_strings[0]
        if option_string and option_string != canonical and option_string not in _warned:
            _warned.add(option_string)
            log.warning("%s is deprecated, use %s (same meaning)", option_string, canonical)
        setattr(namespace, self.dest, values)


def add_model_argument(parser: argparse.ArgumentParser, help: str, deprecated: tuple[str, ...] = (),
                       required: bool = True, **kwargs: Any) -> argparse.Action:
    """`--model` (dest `model`), accepting the `deprecated` spellings too."""
    aliases = f" (deprecated aliases: {', '.join(deprecated)})" if deprecated else ""
    return parser.add_argument("--model", *deprecated, dest="model", required=required, action=DeprecatedAlias,
                               metavar="MODEL", help=help + aliases, **kwargs)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """`--runtime` and `--precision-hint`: which runtime runs a model file, for the commands that run one."""
    from scratchdet.models.inference.formats import AUTO, FORMATS

    runtimes = sorted({runtime for model_format in FORMATS.values() for runtime in model_format.runtimes})
    parser.add_argument("--runtime", default=AUTO, choices=(AUTO, *runtimes),
                        help=".onnx models: auto (default: OpenVINO where `scratchdet bench --runtime ort,openvino` "
                             "measured it faster on this host for the model's precision, else onnxruntime; the choice "
                             "and why are logged), onnxruntime or openvino (pip install 'scratchdet-edge[openvino]'); "
                             ".pt and .engine have one runtime each")
    parser.add_argument("--precision-hint", default="f32", choices=("f32", "bf16"),
                        help="OpenVINO's float precision: bf16 is faster on CPUs with BF16 and changes the results")
