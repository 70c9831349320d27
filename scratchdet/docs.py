"""docs/cli.md, written from the `scratchdet` argparse parsers, so the reference cannot drift from the CLI.

    python -m scratchdet.docs           # rewrite docs/cli.md (`make docs`)
    python -m scratchdet.docs --check   # exit 1 when docs/cli.md differs from what the parsers give

Every command's parser is configured (each stage's cli module is imported), then rendered with a fixed width.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from scratchdet.cli import COMMANDS, build_parser

CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
WIDTH = 110  # columns of the rendered help: fixed, so the page does not depend on the terminal that wrote it

HEADER = """# Command-line reference

Generated from the argparse parsers by `make docs` (`python -m scratchdet.docs`); `tests/test_docs.py` fails
when this page differs from what the parsers give. Every command also takes `-v`/`--verbose` (debug logging
and full tracebacks) before its name, and `scratchdet --version` prints the versions of this package and of
the libraries it runs on.
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """name -> (parser, one-line help) of a parser's subcommands."""
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (child, helps.get(name, "")) for name, child in action.choices.items()}
    return {}


def command_parsers() -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """(full command, its configured parser, one-line help) for every command and subcommand, in the
    pipeline's order: ("scratchdet info", ...), ("scratchdet data", ...), ("scratchdet data synth", ...), ...
    """
    for name in COMMANDS:
        parser, help_text = _subparsers(build_parser([name]))[name]
        yield f"scratchdet {name}", parser, help_text
        for child_name, (child, child_help) in _subparsers(parser).items():
            yield f"scratchdet {name} {child_name}", child, child_help


def render() -> str:
    """The text of docs/cli.md: an index, then each command's `--help` as argparse prints it."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)  # argparse's HelpFormatter reads the width from here
    try:
        pages = [(command, help_text, parser.format_help().rstrip())
                 for command, parser, help_text in command_parsers()]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    lines = [HEADER, "| command | what it does |", "|---|---|"]
    for command, help_text, _ in pages:
        lines.append(f"| [`{command}`](#{command.replace(' ', '-')}) | {help_text} |")
    for command, _, text in pages:
        lines += ["", f"## {command}", "", "```text", text, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrites docs/cli.md, or with --check reports whether it is stale (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m scratchdet.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when docs/cli.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not CLI_MD.exists() or CLI_MD.read_text() != text:
            print(f"{CLI_MD} is stale: run `make docs` and commit it", file=sys.stderr)
            return 1
        print(f"{CLI_MD} is up to date")
        return 0
    from scratchdet.models.files import write_text

    write_text(CLI_MD, text)
    print(f"wrote {CLI_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
