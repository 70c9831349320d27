"""The install claims only the `scratchdet` import name, and the CLI loads only what a command needs."""

import subprocess
import sys

import pytest


@pytest.fixture
def user_project(tmp_path):
    """A folder like a YOLOv5 checkout: its own export.py and models/ package, which must not shadow ours."""
    (tmp_path / "export.py").write_text("raise SystemExit('the user export.py was imported')\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise SystemExit('the user models package was imported')\n")
    return tmp_path


def run(code_or_args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_imports_and_module_entry_point_work_beside_a_users_export_and_models(user_project):
    done = run(["-c", "import scratchdet.export.onnx_export, scratchdet.models.ssd, scratchdet.runtime.detector; "
                "print(scratchdet.models.ssd.__name__)"], user_project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "scratchdet.models.ssd"
    version = run(["-m", "scratchdet", "--version"], user_project)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("scratchdet-edge ") and "torch " in version.stdout


def test_install_provides_no_generic_top_level_names(tmp_path):
    code = ("import importlib.util; print([n for n in ('models', 'train', 'export', 'runtime', 'benchmarks') "
            "if importlib.util.find_spec(n)])")
    done = run(["-c", code], tmp_path)  # an empty folder: only what the install provides is importable
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_predict_and_help_do_not_import_torch(user_project):
    code = ("import sys; from scratchdet.cli import build_parser; "
            "args = build_parser(['predict', 'x.jpg', '--model', 'm.onnx']).parse_args(['predict', 'x.jpg', "
            "'--model', 'm.onnx']); import scratchdet.runtime.detector; "
            "import scratchdet.models.inference.onnxruntime_backend; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    done = run(["-c", code], user_project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
