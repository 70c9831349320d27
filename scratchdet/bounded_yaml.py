"""Reading YAML with what the input can make us do bounded: the file's size, and the document's size with every
alias expanded.

`yaml.safe_load` runs no code, but an alias bomb (each level a list of nine aliases of the level below) is a
few hundred bytes that stand for 10^9 nodes: PyYAML shares the aliased objects, so loading is quick, and the
first thing that walks the result (a `str()`, a comparison, a JSON dump) runs for minutes and gigabytes. Here
the composed document is measured, aliases counted at every use, before anything is built from it. Every YAML
file the project reads (configs, data.yaml, a run's config.yaml) goes through `load_yaml`.

Top-level package: the stages import it, it imports none of them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from scratchdet.special_files import special_problem

# The largest YAML we ship or read is a few KB (a data.yaml of 1,000 class names is ~20 KB).
MAX_YAML_BYTES = 1 << 20
# Nodes with aliases expanded: a 1 MiB file of plain scalars has at most ~250,000.
MAX_YAML_NODES = 300_000


class YamlError(ValueError):
    """A YAML file that cannot be read, is malformed, or exceeds a bound; the message names the file."""


def _expanded_size(node: yaml.Node, path: Path) -> int:
    """Nodes in the document under `node` with each alias expanded (capped just above the bound)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(current: yaml.Node) -> int:
        key = id(current)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlError(f"{path}: an alias refers to a node that contains it (a recursive document)")
        open_nodes.add(key)
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        else:
            children = []
        total = 1
        for child in children:
            total = min(total + size(child), MAX_YAML_NODES + 1)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(node)


def _read_text(path: Path) -> str:
    special = special_problem(path)
    if special is not None:
        raise YamlError(f"{path}: {special}")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise YamlError(f"{path}: cannot read the YAML file ({error.strerror or error})") from None
    if len(data) > MAX_YAML_BYTES:
        raise YamlError(f"{path}: larger than {MAX_YAML_BYTES} bytes; not a config or data.yaml this project reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlError(f"{path}: not UTF-8 text ({error})") from None


def load_yaml(path: str | Path) -> Any:
    """The document of the YAML file at `path` (safe tags only), or None for an empty file.

    Raises:
        YamlError: the file is missing, special, unreadable, larger than MAX_YAML_BYTES, not UTF-8, malformed,
            recursive, nested deeper than Python's recursion limit, or more than MAX_YAML_NODES nodes with
            its aliases expanded.
    """
    path = Path(path)
    loader = yaml.SafeLoader(_read_text(path))
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes = _expanded_size(node, path)
        if nodes > MAX_YAML_NODES:
            raise YamlError(f"{path}: the document expands to more than {MAX_YAML_NODES} nodes (aliases counted "
                            "at each use); refusing it as an alias bomb")
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise YamlError(f"{path}: not valid YAML: {error}") from None
    except RecursionError:
        raise YamlError(f"{path}: nested deeper than {sys.getrecursionlimit()} levels") from None
    finally:
        loader.dispose()
