"""Every file the package writes goes through models/files.py (docs/design.md#writes).

The test reads the source with `ast`: a rename or replace outside models/files.py fails it, and so does a
writer (open for writing, write_text/write_bytes, imwrite, savefig, torch/onnx/numpy save, shutil copies,
the quantiser's output) whose destination is not a path that `atomic_write` or `atomic_folder` yielded, or a
scratch path inside a `tempfile.TemporaryDirectory`/`mkdtemp` (deleted after use, never an artefact).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("models", "train", "export", "runtime", "benchmarks", "scratchdet")
HELPER = "models/files.py"

# (file, function or "*") -> why the write there does not go through the helper
ALLOWED = {
    ("runtime/board_runner.py", "main"): "copied alone onto the board by the bundle, it imports nothing from the "
                                         "package; it writes one command's output file",
    ("export/onnx_export.py", "_torch_export"): "torch.onnx.export writes to the path its two callers got from "
                                                "atomic_write (export_onnx, export_network_only)",
    ("runtime/predict.py", "_video"): "a video or stream is written as it is read: a live stream has no end, and "
                                      "one stopped with Ctrl-C keeps the frames written so far",
}

# destinations that are not artefacts: yielded by the helper, or scratch space deleted after use
BINDERS = {"atomic_write", "atomic_folder", "TemporaryDirectory", "mkdtemp"}
KEYWORD_DESTINATIONS = {"calibration_cache_path"}  # quantize_static writes its range cache there
FILE_MODULES = {"tarfile", "gzip", "io", "bz2", "lzma", "zipfile", "codecs"}
RENAMES = {("os", "replace"), ("os", "rename"), ("os", "renames"), ("shutil", "move")}
# call -> index of its destination argument (-1: the object the method is called on)
WRITERS = {
    "write_text": -1, "write_bytes": -1, "savefig": 0, "imwrite": 0, "tofile": 0, "VideoWriter": 0,
    "torch.save": 1, "onnx.save": 1, "onnx.save_model": 1, "np.save": 0, "np.savez": 0,
    "np.savez_compressed": 0, "shutil.copy": 1, "shutil.copy2": 1, "shutil.copyfile": 1, "shutil.copytree": 1,
    "quantize_static": 1, "quantize_dynamic": 1, "torch.onnx.export": 2,
}


def _name(node: ast.expr) -> str:
    """`a.b.c` for a call's function, or its last attribute when the receiver is not a plain name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _binds(value: ast.expr) -> bool:
    if isinstance(value, ast.IfExp):  # `atomic_write(p) if wanted else nullcontext()`
        return _binds(value.body) or _binds(value.orelse)
    return isinstance(value, ast.Call) and _name(value.func).split(".")[-1] in BINDERS


def _rooted(node: ast.expr, bound: set[str]) -> bool:
    """A path built from a bound name: NAME, str(NAME), Path(NAME), NAME / "x" / ..."""
    if isinstance(node, ast.Name):
        return node.id in bound
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _rooted(node.left, bound)
    if isinstance(node, ast.Call) and _name(node.func) in ("str", "Path", "os.fspath") and len(node.args) == 1:
        return _rooted(node.args[0], bound)
    return False


def _bound_names(scope: ast.AST) -> set[str]:
    """Names bound to helper-yielded or scratch paths in `scope`, followed through plain assignments."""
    bound: set[str] = set()
    for _ in range(3):  # assignments may chain: folder -> path -> str(path)
        for node in ast.walk(scope):
            if isinstance(node, ast.withitem) and _binds(node.context_expr) and isinstance(node.optional_vars,
                                                                                           ast.Name):
                bound.add(node.optional_vars.id)
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
                pairs = (zip(target.elts, value.elts) if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                         else [(target, value)])
                for name, expr in pairs:
                    if isinstance(name, ast.Name) and (_binds(expr) or _rooted(expr, bound)):
                        bound.add(name.id)
    return bound


def _open_mode(call: ast.Call, receiver: bool) -> str:
    """The mode string of an open()-like call ("" when it is not a literal)."""
    mode = next((k.value for k in call.keywords if k.arg == "mode"), None)
    position = 0 if receiver else 1
    if mode is None and len(call.args) > position:
        mode = call.args[position]
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"


def _problem(call: ast.Call, bound: set[str]) -> str | None:
    name = _name(call.func)
    parts = name.split(".")
    if tuple(parts[-2:]) in RENAMES or (isinstance(call.func, ast.Attribute) and call.func.attr == "rename"):
        return f"{name}(): renames belong in {HELPER}"
    if (isinstance(call.func, ast.Attribute) and call.func.attr == "replace" and len(call.args) == 1
            and not call.keywords):  # Path.replace(target); str.replace takes two arguments
        return f"{name}(): renames belong in {HELPER}"
    if parts[-1] == "open" and parts[0] != "os":
        # open(PATH, MODE) and tarfile/gzip/io.open(PATH, MODE); otherwise PATH.open(MODE)
        receiver = isinstance(call.func, ast.Attribute) and parts[0] not in FILE_MODULES
        if any(c in _open_mode(call, receiver) for c in "wax+"):
            destination = call.func.value if receiver else (call.args[0] if call.args else None)
            if destination is None or not _rooted(destination, bound):
                return f"{name}() opens for writing a path that no atomic_write yielded"
        return None
    for keyword in call.keywords:
        if keyword.arg in KEYWORD_DESTINATIONS and not _rooted(keyword.value, bound):
            return f"{name}({keyword.arg}=...) writes to a path that no atomic_write yielded"
    # module-qualified writers by full name (torch.save); methods by their name alone (figure.savefig)
    key = name if name in WRITERS else parts[-1] if parts[-1] in WRITERS else None
    if key is None:
        return None
    index = WRITERS[key]
    if index == -1:
        if not isinstance(call.func, ast.Attribute):
            return None  # the helper's own write_text(path, text) / write_bytes(path, data)
        destination = call.func.value
    else:
        destination = call.args[index] if len(call.args) > index else None
    if destination is not None and _rooted(destination, bound):
        return None
    return f"{name}() writes to a path that no atomic_write yielded"


def violations(path: Path, relative: str) -> list[str]:
    """"file:line function: problem" for every write outside the helper that the allow-list does not name."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    scopes: list[tuple[ast.AST, str]] = [(tree, "<module>")]
    scopes += [(n, n.name) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(c) for scope, _ in scopes[1:] for c in ast.walk(scope) if isinstance(c, ast.Call)}
    for scope, function in scopes:
        if (relative, "*") in ALLOWED or (relative, function) in ALLOWED:
            continue
        bound = _bound_names(scope) | (_bound_names(tree) if scope is not tree else set())
        nested = {id(c) for n in ast.walk(scope) if n is not scope and isinstance(n, (ast.FunctionDef,
                                                                                        ast.AsyncFunctionDef))
                  for c in ast.walk(n) if isinstance(c, ast.Call)}
        for call in (c for c in ast.walk(scope) if isinstance(c, ast.Call) and id(c) not in nested):
            if scope is tree and id(call) in inner:
                continue
            problem = _problem(call, bound)
            if problem:
                found.append(f"{relative}:{call.lineno} {function}: {problem}")
    return found


def sources() -> list[tuple[Path, str]]:
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    return [(p, p.relative_to(ROOT).as_posix()) for p in files if p.relative_to(ROOT).as_posix() != HELPER]


def test_every_write_goes_through_the_helper():
    found = [problem for path, relative in sources() for problem in violations(path, relative)]
    assert not found, "writes outside models/files.py (use atomic_write, write_text, write_bytes, atomic_folder, " \
                      "append_line; or add a documented entry to ALLOWED):\n" + "\n".join(found)


def test_every_allowed_entry_still_names_a_write():
    """A stale allow-list entry would hide the next write put in that place."""
    for (relative, function), reason in ALLOWED.items():
        path = ROOT / relative
        assert path.is_file(), f"{relative}: allow-listed ({reason}) but missing"
        kept = {key: why for key, why in ALLOWED.items() if key != (relative, function)}
        original = dict(ALLOWED)
        ALLOWED.clear()
        ALLOWED.update(kept)
        try:
            assert violations(path, relative), f"{relative} {function}: allow-listed but writes nothing"
        finally:
            ALLOWED.clear()
            ALLOWED.update(original)


@pytest.mark.parametrize("code, expected", [
    ("import os\ndef f(a, b):\n    os.replace(a, b)\n", "renames belong"),
    ("def f(p):\n    p.rename(p)\n", "renames belong"),
    ("def f(p):\n    p.with_suffix('.x').replace(p)\n", "renames belong"),
    ("def f(p):\n    with open(p, 'w') as h:\n        h.write('x')\n", "opens for writing"),
    ("def f(p):\n    p.write_text('x')\n", "writes to a path"),
    ("import cv2\ndef f(p, i):\n    cv2.imwrite(str(p), i)\n", "writes to a path"),
    ("def f(fig, p):\n    fig.savefig(p)\n", "writes to a path"),
    ("import torch\ndef f(m, p):\n    torch.save(m, p)\n", "writes to a path"),
])
def test_the_walker_finds_each_kind_of_write(tmp_path, code, expected):
    source = tmp_path / "module.py"
    source.write_text(code)
    (found,) = violations(source, "module.py")
    assert expected in found


@pytest.mark.parametrize("code", [
    "def f(p, fig):\n    with atomic_write(p) as t:\n        fig.savefig(t)\n",
    "import onnx\ndef f(p, m):\n    with atomic_write(p) as t:\n        onnx.save(m, str(t))\n",
    "import tempfile, onnx\nfrom pathlib import Path\ndef f(m):\n    with tempfile.TemporaryDirectory() as d:\n"
    "        a, b = Path(d) / 'a.onnx', Path(d) / 'b.onnx'\n        onnx.save(m, str(b))\n",
    "def f(s):\n    return s.replace('a', 'b')\n",
    "def f(p):\n    with open(p) as h:\n        return h.read()\n",
])
def test_writes_through_the_helper_pass(tmp_path, code):
    source = tmp_path / "module.py"
    source.write_text(code)
    assert violations(source, "module.py") == []
