"""The deploy requirement sets resolve, wheels only, for the boards and hosts they name
(docs/jetson.md#deploy-install-on-a-device).

pip resolves for another interpreter and platform with --python-version/--platform, but evaluates
environment markers against the interpreter it runs on; so each file is first reduced to the lines
whose markers hold on the target (packaging's Marker.evaluate, the code pip itself uses), then resolved
with dependencies by `pip install --dry-run --report` (pip download's resolver, without writing ~400 MB
of wheels). Needs the package index: skips with the reason where pip cannot reach it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
INDEX = "https://pypi.org/simple/"


def glibc_platforms(arch: str, glibc_minor: int) -> list[str]:
    """Every manylinux tag a glibc 2.<minor> system accepts (pip does not widen --platform on its own)."""
    return [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 16, -1)] + [f"manylinux2014_{arch}"]


# (requirement file, Python, arch, glibc minor): JetPack 6 is Ubuntu 22.04 (glibc 2.35, Python 3.10),
# JetPack 7 Ubuntu 24.04 (glibc 2.39, Python 3.12); x86_64 hosts as Ubuntu 22.04 with Python 3.12.
TARGETS = [("deploy-cu12.txt", "3.10", "aarch64", 35), ("deploy-cu13.txt", "3.12", "aarch64", 39),
           ("deploy-cu12.txt", "3.12", "x86_64", 35), ("deploy-cu13.txt", "3.12", "x86_64", 35)]


def requirements_for(path: Path, python: str, arch: str) -> list[str]:
    """The file's requirements whose markers hold on CPython `python` on Linux `arch`, markers removed."""
    environment = {"python_version": python, "python_full_version": f"{python}.0", "platform_machine": arch,
                   "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    kept = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            kept.append(f"{requirement.name}{requirement.specifier}")
    return kept


def test_markers_pick_the_cp310_releases_for_jetpack_6():
    picked = requirements_for(REPO / "requirements" / "deploy-cu12.txt", "3.10", "aarch64")
    assert "numpy==2.2.6" in picked and "onnxruntime==1.23.2" in picked and "cuda-python==12.9.10" in picked
    assert not any(name.startswith("torch") for name in picked)
    later = requirements_for(REPO / "requirements" / "deploy-cu13.txt", "3.12", "aarch64")
    assert "numpy==2.4.6" in later and "onnxruntime==1.31.1" in later and "cuda-python==13.4.4" in later


@pytest.fixture(scope="module")
def index() -> None:
    try:
        urllib.request.urlopen(INDEX + "pip/", timeout=10).close()
    except OSError as error:
        pytest.skip(f"the package index {INDEX} is unreachable from here ({error}): cannot resolve the deploy sets")


def resolve(requirements: list[str], python: str, arch: str, glibc_minor: int, folder: Path
            ) -> subprocess.CompletedProcess:
    listed = folder / "requirements.txt"
    listed.write_text("\n".join(requirements) + "\n")
    platforms = [flag for tag in glibc_platforms(arch, glibc_minor) for flag in ("--platform", tag)]
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                           "--only-binary=:all:", "--python-version", python, *platforms, "--target",
                           str(folder / "target"), "--report", str(folder / "report.json"), "-r", str(listed)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "python", "arch", "glibc_minor"), TARGETS,
                         ids=[f"{n[:-4]}-py{p}-{a}" for n, p, a, _ in TARGETS])
def test_deploy_set_resolves_with_wheels_only(index, name, python, arch, glibc_minor, tmp_path):
    result = resolve(requirements_for(REPO / "requirements" / name, python, arch), python, arch, glibc_minor,
                     tmp_path)
    assert result.returncode == 0, f"{name} does not resolve for Python {python} {arch}:\n{result.stderr[-2000:]}"
    wheels = {item["metadata"]["name"].lower(): item["download_info"]["url"].rsplit("/", 1)[1]
              for item in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"numpy", "onnx", "onnxruntime", "opencv-python-headless", "cuda-python", "cuda-bindings", "pillow",
            "pycocotools"} <= set(wheels)
    assert "torch" not in wheels
    tag = f"cp{python.replace('.', '')}"
    for package in ("numpy", "onnxruntime", "cuda-bindings"):  # the compiled ones: built for this Python and arch
        assert f"-{tag}-" in wheels[package] and arch in wheels[package], wheels[package]


def test_deploy_sets_pin_what_the_package_pins():
    """The deploy files add cuda-python (and what gpu-check's val needs) to the base install; every package
    both name is pinned alike, so a bump in pyproject.toml cannot leave a board on another version."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [Requirement(line) for line in [*project["dependencies"], *project["optional-dependencies"]["train"]]]
    for name in ("deploy-cu12.txt", "deploy-cu13.txt"):
        for python in ("3.10", "3.12"):
            environment = {"python_version": python, "python_full_version": f"{python}.0"}
            ours = {r.name: str(r.specifier) for r in pins if r.marker is None or r.marker.evaluate(environment)}
            theirs = dict(line.split("==") for line in requirements_for(REPO / "requirements" / name, python, "x86_64"))
            shared = set(ours) & set(theirs)
            assert {"numpy", "onnxruntime", "onnx"} <= shared
            assert {n: ours[n] for n in shared} == {n: f"=={theirs[n]}" for n in shared}, (name, python)
