"""aarch64 ONNX Runtime under user-mode qemu: run the board runner as an ARM board would (docs/arm.md;
measured in docs/results/arm.md).

Set-up, once, cached in `.cache/arm-sysroot` (git-ignored):
  1. `qemu-aarch64-static` from Debian's qemu-user-static (installed with apt-get when missing);
  2. a sysroot of Debian arm64 python3.11 and its libraries, fetched with a private apt configuration
     (own state/cache folders, the host's Debian sources restricted to arm64: the host's apt is untouched)
     and unpacked with `dpkg -x`;
  3. aarch64 wheels of the host's onnxruntime and numpy versions, installed by the host's pip.
Two traps: qemu passes the host's x86 /proc/cpuinfo through, which crashes ORT's CPU detection, so a
fake ARM one is written to SYSROOT/proc/cpuinfo (`-L` redirects it); and its CPU part must match the
emulated core, or ORT picks instructions the core lacks (dot-product) and dies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from scratchdet.models.contract import contract_document
from scratchdet.models.files import write_text

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SYSROOT = REPO / ".cache" / "arm-sysroot"
RUNNER = REPO / "runtime" / "board_runner.py"
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
WHEELS = ("onnxruntime", "numpy")

_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82 = _V80 + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
# qemu CPU name -> (MIDR part number, /proc/cpuinfo Features): ARM's TRMs give the part numbers.
CORES = {
    "cortex-a53": (0xD03, _V80),
    "cortex-a72": (0xD08, _V80),
    "cortex-a76": (0xD0B, _V82),
    "neoverse-n1": (0xD0C, _V82),
}


class ArmSetupError(RuntimeError):
    """The emulation could not be set up here (no qemu package, no network, ...): a reason to skip."""


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ArmSetupError(f"{what} failed ({' '.join(command[:3])} ...): {result.stderr.strip()[-500:]}")
    return result


def ensure_qemu() -> Path:
    found = shutil.which("qemu-aarch64-static")
    if found:
        return Path(found)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ArmSetupError("qemu-aarch64-static is missing and cannot be installed here (needs root and apt-get)")
    _run(["apt-get", "install", "-y", "-qq", "qemu-user-static"], "apt-get install qemu-user-static",
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("qemu-aarch64-static")
    if not found:
        raise ArmSetupError("qemu-user-static installed but qemu-aarch64-static is not on PATH")
    return Path(found)


def _arm64_sources() -> str:
    """The host's Debian deb822 sources, each restricted to arm64."""
    stanzas = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            lines = [line for line in stanza.splitlines() if line.strip() and not line.startswith("#")]
            if any(line.startswith("URIs:") and "debian" in line for line in lines):
                lines = [line for line in lines if not line.startswith("Architectures:")]
                stanzas.append("\n".join([*lines, "Architectures: arm64"]))
    if not stanzas:
        raise ArmSetupError("no Debian deb822 sources in /etc/apt/sources.list.d to fetch arm64 packages from")
    return "\n\n".join(stanzas) + "\n"


def _apt_options(apt: Path) -> list[str]:
    for folder in ("state/lists/partial", "cache/archives/partial", "parts", "prefs"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    write_text(apt / "sources.sources", _arm64_sources())
    (apt / "state" / "status").touch()
    return ["-o", f"Dir::State={apt / 'state'}", "-o", f"Dir::State::status={apt / 'state' / 'status'}",
            "-o", f"Dir::Cache={apt / 'cache'}", "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={apt}", "-o", f"Dir::Etc::Preferences={apt / 'prefs' / 'none'}",
            "-o", f"Dir::Etc::PreferencesParts={apt / 'prefs'}",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64", "-qq"]


def _fetch_debs(sysroot: Path) -> list[Path]:
    apt = sysroot.parent / "arm-apt"
    options = _apt_options(apt)
    _run(["apt-get", *options, "update"], "private apt-get update (arm64)")
    listing = _run(["apt-cache", *options, "depends", "--recurse", "--no-recommends", "--no-suggests",
                    "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends",
                    *PACKAGES], "apt-cache depends").stdout
    names = sorted({line.strip() for line in listing.splitlines()
                    if line.strip() and not line.startswith(" ") and not line.startswith("<")})
    # Essential-but-irrelevant packages would only bloat the sysroot: keep libraries and python.
    names = [n for n in names
             if n.startswith(("lib", "python3", "zlib", "media-types")) and not n.startswith("libperl")]
    debs = apt / "debs"
    debs.mkdir(exist_ok=True)
    _run(["apt-get", *options, "download", *names], "apt-get download (arm64)", cwd=debs)
    return sorted(debs.glob("*.deb"))


def _write_cpuinfo(sysroot: Path, core: str) -> None:
    part, features = CORES[core]
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             f"CPU variant\t: 0x0\nCPU part\t: {part:#x}\nCPU revision\t: 0\n")
    text = "".join(f"processor\t: {i}\n{block}\n" for i in range(2))
    (sysroot / "proc").mkdir(exist_ok=True)
    write_text(sysroot / "proc" / "cpuinfo", text)


def ensure_sysroot(sysroot: Path = DEFAULT_SYSROOT) -> tuple[Path, float]:
    """Build the sysroot unless a complete one for the host's versions exists; returns (python, seconds)."""
    started = time.perf_counter()
    wanted = " ".join(f"{name}=={version(name)}" for name in WHEELS)
    stamp = sysroot / ".complete"
    if stamp.is_file() and stamp.read_text() == wanted:
        return sysroot / "usr" / "bin" / "python3.11", time.perf_counter() - started
    if shutil.which("dpkg") is None or shutil.which("apt-get") is None:
        raise ArmSetupError("dpkg/apt-get are needed to build the arm64 sysroot")
    shutil.rmtree(sysroot, ignore_errors=True)
    sysroot.mkdir(parents=True)
    for deb in _fetch_debs(sysroot):
        _run(["dpkg", "-x", str(deb), str(sysroot)], f"dpkg -x {deb.name}")
    _run([sys.executable, "-m", "pip", "install", "-q", "--platform", "manylinux_2_28_aarch64",
          "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:",
          "--target", str(sysroot / "site"), *wanted.split()], "pip install aarch64 wheels")
    write_text(stamp, wanted)
    return sysroot / "usr" / "bin" / "python3.11", time.perf_counter() - started


def run_emulated(model: Path, batch: np.ndarray, core: str, sysroot: Path = DEFAULT_SYSROOT,
                 timeout: float = 600, all_outputs: bool = False) -> dict[str, np.ndarray]:
    """The board runner's raw outputs for `batch` on an emulated `core` (every graph output if `all_outputs`)."""
    if core not in CORES:
        raise ValueError(f"unknown core '{core}': choose {', '.join(CORES)}")
    qemu = ensure_qemu()
    python, _ = ensure_sysroot(sysroot)
    _write_cpuinfo(sysroot, core)
    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = Path(folder) / "batch.npy", Path(folder) / "out.npz"
        np.save(inputs, batch)
        # as the bundle ships it: the runner with contract.json beside it (scratchdet is not on the board)
        runner = Path(folder) / RUNNER.name
        shutil.copyfile(RUNNER, runner)
        write_text(Path(folder) / "contract.json", json.dumps(contract_document()))
        env = {"QEMU_CPU": core, "PYTHONPATH": str(sysroot / "site"), "PYTHONNOUSERSITE": "1",
               "PATH": os.environ.get("PATH", "")}
        result = subprocess.run([str(qemu), "-L", str(sysroot), str(python), str(runner), str(model), str(inputs),
                                 str(outputs), "--threads", "1", *(["--all-outputs"] if all_outputs else [])],
                                capture_output=True, text=True, env=env,
                                timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{model} on emulated {core} failed (exit {result.returncode}): "
                               f"{result.stderr.strip()[-800:]}")
        with np.load(outputs) as data:
            return {name: data[name] for name in data.files}
