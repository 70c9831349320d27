"""The `scratchdet` command: one subcommand per pipeline stage, each defined by its stage's cli module."""

from __future__ import annotations

import argparse
import logging
import sys

import benchmarks.cli
import export.cli
import export.deploy_cli
import models.cli
import runtime.cli
import train.cli

STAGES = (models.cli, train.cli, export.cli, export.deploy_cli, runtime.cli, benchmarks.cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scratchdet", description="ScratchDet Edge: train, export, deploy SSD")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        stage.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args) or 0
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        logging.getLogger("scratchdet").error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
