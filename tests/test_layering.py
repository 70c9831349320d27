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


def test_the_checker_sees_a_backward_import(tmp_path):
    (tmp_path / "m.py").write_text("from scratchdet.export.quantize import quantize_int8\n")
    assert stage_of(imported_modules(tmp_path / "m.py")[0][0]) not in ALLOWED["models"]
