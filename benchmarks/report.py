"""Bench outputs: report.json (validated schema), report.md (the table), fps_vs_map.png."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

from scratchdet.benchmarks.harness import STAGES, Row
from scratchdet.benchmarks.timing import MIN_SAMPLES
from scratchdet.models.files import atomic_write, write_text

# key -> accepted JSON type(s), as isinstance takes them
Kinds = type | tuple[type, ...]
TOP_KEYS: dict[str, Kinds] = {"environment": dict, "peak": dict, "paper_fps": float, "data": (str, type(None)),
                              "batches": list, "rows": list}


# Row fields added after reports were first written: an older report (a committed baseline) lacks
# them and reads as if they were empty.
LATER_ROW_FIELDS = {"stages_mean_ms": dict, "noisy": bool}
PAPER_LABEL = "paper, GPU (Tesla P40)"
REPORT_FILES = ("report.json", "report.md", "fps_vs_map.png")  # what write_report writes into its folder


class ReportError(ValueError):
    """A report file that does not follow the schema."""


# Row field -> accepted JSON types (a float field may hold an integer; bool is never a number here).
ROW_TYPES: dict[str, Kinds] = {
    "name": str, "path": str, "format": str, "precision": str, "runtime": str, "status": str,
    "size_mb": (int, float), "gflops": (int, float), "fps": (int, float), "network_fps": (int, float),
    "latency_ms": dict, "stages_p50_ms": dict, "throughput": dict, "map50": (int, float, type(None)),
    "coco_ap": (int, float, type(None)), "roofline_fps": (int, float, type(None)),
    "roofline_fraction": (int, float, type(None)), "relative_speed": (int, float, type(None)), "noisy": bool}


def _row_type_problems(row: dict) -> list[str]:
    wrong = [f"'{key}' is {type(row[key]).__name__} {row[key]!r}" for key, kind in ROW_TYPES.items()
             if key in row and (not isinstance(row[key], kind) or (isinstance(row[key], bool) and kind is not bool))]
    numbers = [(key, row[key]) for key in ("size_mb", "gflops", "fps", "network_fps") if key in row]
    if isinstance(row.get("latency_ms"), dict):
        numbers += [(f"latency_ms.{key}", value) for key, value in row["latency_ms"].items() if value is not None]
    # json.loads reads Infinity, NaN and any sign: a time or a rate is a finite number >= 0
    wrong += [f"'{key}' is {value!r}, expected a finite number >= 0" for key, value in numbers
              if not isinstance(value, bool) and (not isinstance(value, (int, float)) or not 0 <= value < math.inf)]
    return wrong


def validate_report(report: dict, source: str = "report") -> dict:
    """Check the top-level keys and every row's fields; returns the report."""
    for key, kind in TOP_KEYS.items():
        if key not in report or not isinstance(report[key], kind):
            raise ReportError(f"{source}: key '{key}' missing or not {kind}")
    names = {f.name for f in fields(Row)}
    for index, row in enumerate(report["rows"]):
        if not isinstance(row, dict):
            raise ReportError(f"{source}: row {index} is not an object: {row!r}")
        for key, kind in LATER_ROW_FIELDS.items():
            row.setdefault(key, kind())
        missing, extra = names - set(row), set(row) - names
        if missing or extra:
            raise ReportError(f"{source}: row {index} missing {sorted(missing)}, unknown {sorted(extra)}")
        wrong = _row_type_problems(row)
        if wrong:
            raise ReportError(f"{source}: row {index} has fields of the wrong type: {'; '.join(wrong)}")
        if row["status"] == "ok" and not (row["fps"] > 0 and _number(row["latency_ms"].get("p50")) > 0):
            raise ReportError(f"{source}: row {index} ({row['name']}) is ok but has no timing")
    return report


def _number(value) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def read_report(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: report not found (make one with `scratchdet bench`)")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: not JSON: {error}") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(report).__name__}")
    return validate_report(report, str(path))


def _cell(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _stage_split(stages: dict) -> str:
    return "/".join(_cell(stages.get(k)) for k in STAGES) if stages else "-"


def _percentile(latency: dict, key: str) -> float | None:
    """latency[key], hidden when n is below what that percentile needs (older reports computed it anyway)."""
    needed = MIN_SAMPLES.get(int(key[1:]), 1) if key[1:].isdigit() else 1
    return latency.get(key) if latency.get("n", 0) >= needed else None


def _receipts_line(report: dict) -> str:
    """The conditions of the run (benchmarks/receipts.py); older reports have none."""
    receipts = report.get("receipts")
    if not receipts:
        return "Receipts: none recorded (a report from before receipts)."

    def load(snapshot: dict) -> str:
        value = snapshot["load_average"]
        return "/".join(f"{v:.2f}" for v in value) if isinstance(value, list) else str(value)

    def per_cpu(values: dict) -> str:
        distinct = sorted({str(v) for v in values.values()})
        return distinct[0] if len(distinct) == 1 else ", ".join(f"cpu{k} {v}" for k, v in values.items())

    return (f"Receipts: load average (1/5/15 min) {load(receipts['before'])} before, {load(receipts['after'])} after; "
            f"{receipts['threads']} threads on CPUs {receipts['affinity']}; governor {per_cpu(receipts['governor'])}; "
            f"MHz {per_cpu(receipts['before']['frequency_mhz'])} before, {per_cpu(receipts['after']['frequency_mhz'])} "
            f"after; nvpmodel {receipts['nvpmodel']}; jetson_clocks {receipts['jetson_clocks']}. A row is noisy when "
            f"its fastest round FPS / slowest > {receipts['noisy_bound']}.")


def markdown(report: dict) -> str:
    env = report["environment"]
    throughput = [b for b in report["batches"] if b > 1]
    lines = [
        f"Machine: {env['cpu']}, {env['threads']} threads; GPU: {env['gpu'] or 'none'}; "
        f"limits measured in this run: FP32 {report['peak']['fp32_gflops']:.0f} GFLOP/s, "
        + (f"BF16 {report['peak']['bf16_gflops']:.0f} GFLOP/s, " if report["peak"].get("bf16_gflops") else "")
        + f"INT8 {report['peak']['int8_gops']:.0f} GOP/s ({report['peak'].get('source', 'reference conv')}). "
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v),
        _receipts_line(report),
        f"Batch 1 latency in ms, end to end (image in, detections out), over n timed calls; the stage split "
        f"(preprocess/network/postprocess) is of the mean, from the same calls, so the stages add up to the mean "
        f"less the call overhead. p95 needs n >= {MIN_SAMPLES[95]}, p99 n >= {MIN_SAMPLES[99]} (else -). "
        f"FPS = 1000 / p50. Reference: {report['paper_fps']:.0f} FPS ({PAPER_LABEL}, ScratchDet300).",
        "",
        "| model | format | precision | runtime | MB | GFLOPs | n | mean (pre/net/post) | min | p50 | p95 | p99 | max "
        "| FPS (round min-max) | net FPS | % of limit | " + " | ".join(f"b{b} img/s" for b in throughput)
        + " | mAP@0.5 | COCO AP | status |",
        "|" + "---|" * (19 + len(throughput)),
    ]
    for row in report["rows"]:
        lat = row["latency_ms"]
        fps_range = (f"{row['fps']:.1f} ({1000 / lat['round_median_max']:.1f}-{1000 / lat['round_median_min']:.1f})"
                     if lat else "-")
        roof = _cell(row["roofline_fraction"] * 100 if row["roofline_fraction"] else None, ".0f")
        status = ("ok" + (", noisy" if row["noisy"] else "")) if row["status"] == "ok" else "❌ " + row["status"][:80]
        lines.append(" | ".join([
            f"| {row['name']}", row["format"], row["precision"], row["runtime"], _cell(row["size_mb"], ".2f"),
            _cell(row["gflops"], ".2f"), _cell(lat.get("n"), "d"),
            f"{_cell(lat.get('mean'))} ({_stage_split(row['stages_mean_ms'])})",
            *[_cell(_percentile(lat, k)) for k in ("min", "p50", "p95", "p99", "max")],
            fps_range, _cell(row["network_fps"]), roof, *[_cell(row["throughput"].get(str(b))) for b in throughput],
            _cell(row["map50"], ".4f"), _cell(row["coco_ap"], ".4f"), status + " |"]))
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """FPS against mAP@0.5 per row; the mAP axis spans 0-1, so small differences look small."""
    import matplotlib

    matplotlib.use("Agg")  # selected here, not at import: importing this module must not change a user's backend
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    # One legend entry per point, beside the axes: formats of one model often sit on top of each other.
    for row in rows:
        axis.scatter(row["fps"], row["map50"] if row["map50"] is not None else 0.0, s=50,
                     label=f"{row['name']} ({row['precision']})" + ("" if row["map50"] is not None else ", no mAP"))
    axis.axvline(report["paper_fps"], color="grey", linestyle="--",
                 label=f"{PAPER_LABEL}: {report['paper_fps']:.0f} FPS")
    axis.set(xlabel="end-to-end FPS at batch 1 (this machine)", ylabel="VOC mAP@0.5 (val)",
             title="speed vs accuracy per format", ylim=(0.0, 1.0))
    axis.set_xlim(left=0, right=max([report["paper_fps"], *[r["fps"] for r in rows]]) * 1.1)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    figure.tight_layout()
    with atomic_write(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)


def write_report(report: dict, out: str | Path) -> Path:
    """report.json, report.md and fps_vs_map.png in `out`; returns the folder."""
    out = Path(out)
    validate_report(report)
    json_file, markdown_file, plot_file = (out / name for name in REPORT_FILES)
    write_text(json_file, json.dumps(report, indent=2))
    write_text(markdown_file, markdown(report))
    plot(report, plot_file)
    return out
