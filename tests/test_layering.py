"""The house (docs/design.md#the-house): each folder imports only from the folders before it, and the inference
layer imports no build code and, outside the PyTorch backend, no torch at module level."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> the scratchdet subpackages its modules may import (its own included)
ALLOWED = {
    "models": {"models", "scratchdet"},
    "train": {"models", "train", "scratchdet"},
    "export": {"models", "train", "export", "scratchdet"},
    "runtime": {"models", "train", "runtime", "scratchdet"},
    "benchmarks": {"models", "train", "export", "runtime", "benchmarks", "scratchdet"},
}
BUILD_CODE = ("scratchdet.train", "scratchdet.export", "scratchdet.runtime", "scratchdet.benchmarks")
# rooms inside a folder: (the room, the package it may not import while outside it)
INNER = (("models", "scratchdet.models.inference"), ("benchmarks", "scratchdet.benchmarks.studies"))


def imported_modules(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level?) for every import of the file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
    return found


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "scratchdet":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "scratchdet"


def test_every_import_points_forward():
    backwards = []
    for folder, allowed in ALLOWED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module, _ in imported_modules(path):
                stage = stage_of(module)
                if stage is not None and stage not in allowed:
                    backwards.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not backwards, "imports against the pipeline's direction:\n  " + "\n  ".join(backwards)


def test_the_inference_layer_needs_no_build_code_and_no_torch():
    problems = []
    for path in sorted((ROOT / "models" / "inference").glob("*.py")):
        for module, top_level in imported_modules(path):
            if module.startswith(BUILD_CODE):
                problems.append(f"{path.name} imports {module}")
            if top_level and module.split(".")[0] == "torch" and path.name != "torch_backend.py":
                problems.append(f"{path.name} imports torch at module level")
    assert not problems, "\n".join(problems)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts if parts[0] == "scratchdet" else ["scratchdet", *parts])


def test_the_inner_rooms_point_forward():
    """models/ below models/inference/ (which runs model files), benchmarks/ below benchmarks/studies/."""
    backwards = []
    for folder, later in INNER:
        inner = ROOT / folder / later.rsplit(".", 1)[1]
        for path in sorted((ROOT / folder).rglob("*.py")):
            if inner in path.parents:
                continue
            backwards += [f"{path.relative_to(ROOT)} imports {module}" for module, _ in imported_modules(path)
                          if module == later or module.startswith(later + ".")]
    assert not backwards, "imports against the rooms' order:\n  " + "\n  ".join(backwards)


def import_cycles(root: Path, folders: list[str]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop, lazy imports included."""
    paths = {module_name(path, root): path for folder in folders for path in sorted((root / folder).rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` names the module in the alias
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = (imported & paths.keys()) - {name}
    reach = {name: _reachable(graph, name) for name in graph}
    cycles = {tuple(sorted(other for other in reach[name] if name in reach[other]))
              for name in graph if name in reach[name]}
    return [list(cycle) for cycle in sorted(cycles)]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph[name]
    return seen


def test_no_module_imports_one_that_imports_it_back():
    cycles = import_cycles(ROOT, [*ALLOWED, "scratchdet"])
    assert not cycles, "modules importing each other:\n  " + "\n  ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_lazy_circle(tmp_path):
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "a.py").write_text("from scratchdet.runtime.b import f\n")
    (tmp_path / "runtime" / "b.py").write_text("def f():\n    from scratchdet.runtime import a\n")
    assert import_cycles(tmp_path, ["runtime"]) == [["scratchdet.runtime.a", "scratchdet.runtime.b"]]


def test_the_checker_sees_a_backward_import(tmp_path):
    (tmp_path / "m.py").write_text("from scratchdet.export.quantize import quantize_int8\n")
    assert stage_of(imported_modules(tmp_path / "m.py")[0][0]) not in ALLOWED["models"]
