"""Bench outputs: report.json (validated schema), report.md (the table), fps_vs_map.png."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scratchdet.benchmarks.harness import Row
from scratchdet.models.files import atomic_write, write_text

TOP_KEYS = {"environment": dict, "peak": dict, "paper_fps": float, "data": (str, type(None)), "batches": list,
            "rows": list}


class ReportError(ValueError):
    """A report file that does not follow the schema."""


# Row field -> accepted JSON types (a float field may hold an integer; bool is never a number here).
ROW_TYPES = {"name": str, "path": str, "format": str, "precision": str, "runtime": str, "status": str,
             "size_mb": (int, float), "gflops": (int, float), "fps": (int, float), "network_fps": (int, float),
             "latency_ms": dict, "stages_p50_ms": dict, "throughput": dict, "map50": (int, float, type(None)),
             "coco_ap": (int, float, type(None)), "roofline_fps": (int, float, type(None)),
             "roofline_fraction": (int, float, type(None)), "relative_speed": (int, float, type(None))}


def _row_type_problems(row: dict) -> list[str]:
    return [f"'{key}' is {type(row[key]).__name__} {row[key]!r}" for key, kind in ROW_TYPES.items()
            if key in row and (not isinstance(row[key], kind) or isinstance(row[key], bool))]


def validate_report(report: dict, source: str = "report") -> dict:
    """Check the top-level keys and every row's fields; returns the report."""
    for key, kind in TOP_KEYS.items():
        if key not in report or not isinstance(report[key], kind):
            raise ReportError(f"{source}: key '{key}' missing or not {kind}")
    names = {f.name for f in fields(Row)}
    for index, row in enumerate(report["rows"]):
        if not isinstance(row, dict):
            raise ReportError(f"{source}: row {index} is not an object: {row!r}")
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


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"Machine: {env['cpu']}, {env['threads']} threads; GPU: {env['gpu'] or 'none'}; "
        f"limits measured in this run: FP32 {report['peak']['fp32_gflops']:.0f} GFLOP/s, "
        + (f"BF16 {report['peak']['bf16_gflops']:.0f} GFLOP/s, " if report["peak"].get("bf16_gflops") else "")
        + f"INT8 {report['peak']['int8_gops']:.0f} GOP/s ({report['peak'].get('source', 'reference conv')}). "
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v),
        f"Batch 1 latency is end to end (image in, detections out); reference: the paper's {report['paper_fps']:.0f} "
        "FPS (ScratchDet300, GPU).",
        "",
        "| model | format | precision | runtime | MB | GFLOPs | p50 ms (pre/net/post) | p90 | p99 | FPS "
        "(round min-max) | net FPS | % of limit | " + " | ".join(f"b{b} img/s" for b in report["batches"] if b > 1)
        + " | mAP@0.5 | COCO AP | status |",
        "|" + "---|" * (15 + sum(b > 1 for b in report["batches"])),
    ]
    for row in report["rows"]:
        lat, stages = row["latency_ms"], row["stages_p50_ms"]
        split = "/".join(_cell(stages.get(k)) for k in ("preprocess", "network", "postprocess")) if stages else "-"
        fps_range = (f"{row['fps']:.1f} ({1000 / lat['round_median_max']:.1f}-{1000 / lat['round_median_min']:.1f})"
                     if lat else "-")
        roof = _cell(row["roofline_fraction"] * 100 if row["roofline_fraction"] else None, ".0f")
        lines.append(" | ".join([
            f"| {row['name']}", row["format"], row["precision"], row["runtime"], _cell(row["size_mb"], ".2f"),
            _cell(row["gflops"], ".2f"), f"{_cell(lat.get('p50'))} ({split})", _cell(lat.get("p90")),
            _cell(lat.get("p99")), fps_range, _cell(row["network_fps"]), roof,
            *[_cell(row["throughput"].get(str(b))) for b in report["batches"] if b > 1],
            _cell(row["map50"], ".4f"), _cell(row["coco_ap"], ".4f"), ("ok" if row["status"] == "ok" else "❌ "
                                                                       + row["status"][:80]) + " |"]))
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(10, 4.5))
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    # One legend entry per point, beside the axes: formats of one model often sit on top of each other.
    for row in rows:
        axis.scatter(row["fps"], row["map50"] if row["map50"] is not None else 0.0, s=50,
                     label=f"{row['name']} ({row['precision']})")
    axis.axvline(report["paper_fps"], color="grey", linestyle="--", label=f"paper: {report['paper_fps']:.0f} FPS (GPU)")
    axis.set(xlabel="end-to-end FPS at batch 1 (this machine)", ylabel="VOC mAP@0.5 (val)",
             title="speed vs accuracy per format")
    axis.set_xlim(left=0, right=max([report["paper_fps"], *[r["fps"] for r in rows]]) * 1.1)
    axis.grid(alpha=0.3)
    axis.margins(y=0.2)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    figure.tight_layout()
    with atomic_write(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)


def write_report(report: dict, out: str | Path) -> Path:
    """report.json, report.md and fps_vs_map.png in `out`; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    validate_report(report)
    write_text(out / "report.json", json.dumps(report, indent=2))
    write_text(out / "report.md", markdown(report))
    plot(report, out / "fps_vs_map.png")
    return out
