"""Flag names shared by every command: `--model` names the model file everywhere.

Older names (`--weights` for val/export, `--onnx` for quantize/engine/bundle) still work as deprecated
aliases that log a warning once per process. Top-level package: the stages import it, it imports none
of them.
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
