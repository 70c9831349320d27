"""The `scratchdet` command: one subcommand per pipeline stage, each defined by its stage's cli module.

Only the chosen command's module is imported, so `scratchdet predict` on an ONNX model does not load torch
and `scratchdet --help` starts at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

# command -> (module that configures it, one-line help); the order is the pipeline's.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("scratchdet.models.cli", "parameters, GFLOPs, feature maps and priors of a config"),
    "data": ("scratchdet.train.cli", "dataset tools: the synthetic demo set, check, convert (COCO/YOLO)"),
    "train": ("scratchdet.train.cli", "train an SSD from scratch"),
    "val": ("scratchdet.train.val", "VOC mAP@0.5 and COCO AP of a model (.pt, .onnx or .engine)"),
    "export": ("scratchdet.export.cli", "export ONNX with box decoding and NMS in the graph"),
    "quantize": ("scratchdet.export.deploy_cli", "INT8 Q/DQ (calibrated) or FP16 ONNX"),
    "engine": ("scratchdet.export.deploy_cli", "build a TensorRT engine (10.x or 11.x) from an ONNX"),
    "predict": ("scratchdet.runtime.cli", "detect on images, folders, globs, videos, cameras or streams"),
    "bundle": ("scratchdet.export.deploy_cli", "folder + tarball for a Jetson or ARM board"),
    "bench": ("scratchdet.benchmarks.cli", "latency, FPS, throughput and accuracy per model format"),
    "check": ("scratchdet.benchmarks.cli", "the accuracy and speed regression gate"),
    "compare": ("scratchdet.benchmarks.cli", "accuracy of two configs over several seeds: worse, better or noise"),
}

VERSIONED_PACKAGES = ("scratchdet-edge", "torch", "onnxruntime", "onnx", "tensorrt", "tensorrt-lean-cu12")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # "(default: None)" and "(default: False)" say nothing; a help that states its default keeps its words
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def versions() -> str:
    """The versions of this package and of the libraries it runs on (absent ones are left out)."""
    found = []
    for name in VERSIONED_PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def chosen_command(argv: list[str]) -> str | None:
    """The first argument that names a command (the top-level options take no values)."""
    return next((arg for arg in argv if arg in COMMANDS), None)


def _add_force(parser: argparse.ArgumentParser, default: object) -> None:
    """--force on a command and on each of its subcommands (`data synth ... --force`)."""
    parser.add_argument("--force", action="store_true", default=default,
                        help="replace output files that are read-only (refused otherwise)")
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_force(child, argparse.SUPPRESS)  # keeps the parent's value unless given here


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scratchdet", description="ScratchDet Edge: train, export, deploy SSD")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser.add_argument("--version", action="version", version=versions())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = chosen_command(argv)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == command:
            importlib.import_module(module).configure(name, sub)
            _add_force(sub, default=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    code = _run(args)
    if getattr(args, "exit_without_finalizing", False):  # a DDP rank (`train` under torchrun): see leave_rank
        from scratchdet.train.device import leave_rank
        leave_rank(code)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        if args.force:  # imported only here: `scratchdet --help` loads no stage
            from scratchdet.models.files import replacing_read_only
            with replacing_read_only():
                return args.run(args) or 0
        return args.run(args) or 0
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        if args.verbose:
            raise
        logging.getLogger("scratchdet").error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
