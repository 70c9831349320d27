"""Benchmark receipts: the conditions a report was measured under, and whether its rows can be trusted.

A report records the load average before and after, the CPU model, governor and current frequency of the
cores it may run on, the threads and the CPU affinity, and on a Jetson the power mode and jetson_clocks
state; what cannot be read is recorded as "n/a: <why>". A row is "noisy" when its rounds spread too far
(NOISY_BOUND).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scratchdet.models.inference.runtime_choice import cpu_model

CPUFREQ = Path("/sys/devices/system/cpu")
# A row is noisy when its fastest round's FPS exceeds its slowest's by more than this. The rounds are
# interleaved (timing.interleave), so a steady disturbance slows every model alike and leaves rounds close;
# a spread above 15% means the load changed within the run, by three times the A/B speed gate's 5% tolerance,
# so the row's speed says more about the machine than the model (ONNX Runtime INT8 rounds 17.2-22.5
# FPS, 1.31, measured on a loaded 2-core host).
NOISY_BOUND = 1.15


def round_fps_ratio(latency: dict) -> float | None:
    """Fastest round FPS / slowest round FPS, from a row's latency_ms (per-round medians); None if untimed."""
    low, high = latency.get("round_median_min"), latency.get("round_median_max")
    return high / low if low and high else None


def is_noisy(latency: dict, bound: float = NOISY_BOUND) -> bool:
    ratio = round_fps_ratio(latency)
    return ratio is not None and ratio > bound


def _read(path: Path) -> str:
    """A sysfs value, or "n/a: cpufreq/NAME: why" (without the CPU number, so equal reasons read as one)."""
    try:
        return path.read_text().strip()
    except OSError as error:
        return f"n/a: {path.parent.name}/{path.name}: {error.strerror or error}"


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def frequencies_mhz() -> dict[str, float | str]:
    """Current frequency of each CPU this process may run on (scaling_cur_freq), or why it is unreadable."""
    result: dict[str, float | str] = {}
    for cpu in _cpus():
        text = _read(CPUFREQ / f"cpu{cpu}/cpufreq/scaling_cur_freq")
        result[str(cpu)] = round(int(text) / 1000, 1) if text.isdigit() else text
    return result


def governors() -> dict[str, str]:
    return {str(cpu): _read(CPUFREQ / f"cpu{cpu}/cpufreq/scaling_governor") for cpu in _cpus()}


def _command(arguments: list[str], what: str) -> str:
    """A command's output, or "n/a: <why>" (not installed: not a Jetson; failed: its error)."""
    if shutil.which(arguments[0]) is None:
        return f"n/a: no {arguments[0]} command (not a Jetson)"
    try:
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"n/a: {' '.join(arguments)}: {error}"
    if done.returncode != 0:
        return f"n/a: {' '.join(arguments)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}"
    return " / ".join(line.strip() for line in done.stdout.splitlines() if line.strip()) or f"n/a: no {what} output"


def snapshot() -> dict:
    """What changes during a run: load average (1, 5, 15 min) and current frequencies."""
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else "n/a: no os.getloadavg on this system"
    return {"load_average": load, "frequency_mhz": frequencies_mhz()}


def receipts(threads: int, before: dict, after: dict) -> dict:
    """The report's receipts, from snapshots taken before and after the timed run."""
    return {
        "cpu": cpu_model(), "threads": threads, "affinity": _cpus(), "governor": governors(),
        "before": before, "after": after,
        # Jetson power mode and clocks (NVIDIA Jetson Linux developer guide, "Power Management"); jetson_clocks
        # --show needs root on most images, so its failure is recorded rather than hidden.
        "nvpmodel": _command(["nvpmodel", "-q"], "power mode"),
        "jetson_clocks": _command(["jetson_clocks", "--show"], "clock"),
        "noisy_bound": NOISY_BOUND,
    }


def noisy_rows(report: dict) -> list[str]:
    """Names of the ok rows whose rounds spread beyond the bound (recomputed, so older reports are judged too)."""
    return [row["name"] for row in report["rows"] if row["status"] == "ok" and is_noisy(row["latency_ms"])]
