"""`--runtime auto` for .onnx files: OpenVINO where it is installed and measured faster on this host for the
model's precision, else ONNX Runtime.

The rule rests on measurements, not on a guess: `scratchdet bench MODEL --runtime ort,openvino` records the
p50 of both runtimes per model precision in a per-host file (RECOMMENDATION_FILE), and auto reads it. An
entry applies to a host when its key matches exactly: CPU model and core count (the kernels each runtime
picks, VNNI/AMX for INT8, and how they scale with cores), the onnxruntime and openvino versions (an upgrade
changes kernels and can turn the verdict), and the model precision (OpenVINO measured 1.16x faster on
INT8 in one quiet run, docs/results/openvino.md, and the FP32 verdict differs). Without an entry auto uses
ONNX Runtime and says how to make one; it does not probe by itself, because a probe would cost seconds at
every first start and measure once, under whatever load there is then, where bench times both runtimes
interleaved over rounds.

Auto only ever picks OpenVINO with INFERENCE_PRECISION_HINT=f32: bf16 computes in another precision and
changes the results (docs/results/openvino.md), so it stays something a user asks for by name.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from scratchdet.models.files import write_text

log = logging.getLogger(__name__)

# Where the recommendations live; SCRATCHDET_RUNTIME_FILE overrides it (one file per user, all hosts' keys).
RECOMMENDATION_FILE = Path("~/.cache/scratchdet/runtime.json")
ENV_VARIABLE = "SCRATCHDET_RUNTIME_FILE"
SCHEMA = 1
# OpenVINO must be this much faster to be chosen: ONNX Runtime is the reference runtime (export parity is
# measured on it), and 5% is the A/B speed gate's tolerance, the noise level of one interleaved run.
MARGIN = 1.05
MAKE_ONE = "make one with `scratchdet bench MODEL.onnx --runtime ort,openvino`"


@dataclass(frozen=True)
class Choice:
    runtime: str  # "onnxruntime" or "openvino"
    reason: str


def recommendation_file() -> Path:
    return Path(os.environ.get(ENV_VARIABLE) or RECOMMENDATION_FILE).expanduser()


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model")):  # x86 / Raspberry Pi and other arm boards
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def host_key(precision: str) -> str:
    """The key of this host's entry for a model precision (see the module docstring for why these parts)."""
    return (f"{cpu_model()} | {os.cpu_count()} cores | onnxruntime {_version('onnxruntime')} | "
            f"openvino {_version('openvino')} | {precision}")


def decide(entry: dict | None, precision: str, openvino_installed: bool, source: str = "") -> Choice:
    """The rule, a pure function: a recommendation entry (or None) -> the runtime and why.

    entry: {"p50_ms": {"onnxruntime": ms, "openvino": ms}, "threads": n, "measured": iso date, "model": path}.
    """
    if not openvino_installed:
        return Choice("onnxruntime", "OpenVINO is not installed (pip install 'scratchdet-edge[openvino]')")
    if entry is None:
        return Choice("onnxruntime", f"no measurement of {precision} models for this host{source}; {MAKE_ONE}")
    ort, openvino = entry["p50_ms"]["onnxruntime"], entry["p50_ms"]["openvino"]
    ratio = ort / openvino
    measured = (f"measured p50 ONNX Runtime {ort:.1f} ms, OpenVINO {openvino:.1f} ms ({ratio:.2f}x) on "
                f"{precision}, {entry.get('threads', '?')} threads, {entry.get('measured', '?')}"
                + (", rounds noisy" if entry.get("noisy") else "") + source)
    if ratio >= MARGIN:
        return Choice("openvino", f"OpenVINO is faster here: {measured}")
    return Choice("onnxruntime", f"OpenVINO is not at least {MARGIN:.2f}x faster here: {measured}")


def read_recommendations(path: Path) -> dict[str, dict]:
    """The entries of a recommendation file by key.

    Raises:
        ValueError: not JSON, or not this schema, naming the file and the problem.
    """
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: the runtime recommendation file (${ENV_VARIABLE}) is a folder or not a regular "
                         "file; point it at a file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: runtime recommendation file is not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
        raise ValueError(f"{path}: not a runtime recommendation file of schema {SCHEMA} "
                         "(expected {\"schema\": 1, \"entries\": {...}})")
    for key, entry in data["entries"].items():
        p50 = entry.get("p50_ms") if isinstance(entry, dict) else None
        # json.loads reads Infinity and NaN: a time is a finite number > 0
        if not (isinstance(p50, dict) and all(isinstance(p50.get(r), (int, float)) and 0 < p50[r] < math.inf
                                              for r in ("onnxruntime", "openvino"))):
            raise ValueError(f"{path}: entry '{key}' lacks finite positive p50_ms of onnxruntime and openvino "
                             f"(found {p50!r})")
    return data["entries"]


def choose(precision: str, path: Path | None = None) -> Choice:
    """Auto's choice for a model precision on this host, from the recommendation file."""
    path = path or recommendation_file()
    openvino_installed = _version("openvino") is not None
    key = host_key(precision)
    if not openvino_installed or not path.exists():
        return decide(None, precision, openvino_installed, f" ({path} not found)" if openvino_installed else "")
    try:
        entries = read_recommendations(path)
    except ValueError as error:
        return Choice("onnxruntime", f"{error}; delete it and {MAKE_ONE}")
    if key not in entries:
        others = "; ".join(sorted(entries)) or "none"
        return decide(None, precision, True, f" in {path} (this host: '{key}'; the file has: {others})")
    return decide(entries[key], precision, True, f", from {path}")


def record(measurements: dict[str, dict], path: Path | None = None) -> Path:
    """Writes bench's measurements into the recommendation file, keeping other hosts' and precisions' entries.

    measurements: precision -> {"p50_ms": {"onnxruntime": ms, "openvino": ms}, "threads": n, "model": path}.
    A corrupt file is replaced (and said so): it could not be read by auto either.
    """
    path = path or recommendation_file()
    entries: dict[str, dict] = {}
    if path.is_file():
        try:
            entries = read_recommendations(path)
        except ValueError as error:
            log.warning("%s; replacing it", error)
    measured = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for precision, entry in measurements.items():
        entries[host_key(precision)] = {**entry, "measured": measured}
    write_text(path, json.dumps({"schema": SCHEMA, "entries": entries}, indent=2))
    return path
