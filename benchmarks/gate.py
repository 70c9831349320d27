"""`scratchdet check`: the regression gate a user runs after changing the architecture.

  accuracy  each format's mAP >= the baseline's - tolerance (default 0.2 points, as mmdeploy's
            regression test), and each exported format within a tolerance of its own checkpoint;
  speed     candidate vs baseline timed A/B-interleaved in one run: fail when the median speed
            ratio drops below 1 - tolerance (default 5%);
  baseline  against a committed report, speed is compared through the same-run reference workload
            (`relative_speed`), so a machine of another speed does not fail the gate by itself.

The gate fails closed: a format of the baseline that failed or is missing in the candidate fails, a
candidate row that failed fails, and a report measured on another dataset than its baseline fails
unless that is asked for (`allow_other_data`).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from scratchdet.benchmarks.receipts import NOISY_BOUND, noisy_rows
from scratchdet.benchmarks.timing import interleave, speed_ratios
from scratchdet.models import boxes


@dataclass
class Check:
    name: str
    passed: bool
    measured: float
    target: float
    detail: str = ""
    advisory: bool = False  # reported, but does not fail the gate


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed or c.advisory for c in self.checks)

    def verdicts(self) -> list[str]:
        return ["PASS" if c.passed else "WARN" if c.advisory else "FAIL" for c in self.checks]

    def summary(self) -> str:
        lines = [f"{verdict}  {c.name}: {c.measured:.4f} vs target {c.target:.4f}"
                 + (f"  ({c.detail})" if c.detail else "") for verdict, c in zip(self.verdicts(), self.checks)]
        verdicts = self.verdicts()
        lines.append(f"gate {'PASSED' if self.passed else 'FAILED'}: {verdicts.count('PASS')} passed, "
                     f"{verdicts.count('FAIL')} failed, {verdicts.count('WARN')} warned")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def _key(row: dict) -> tuple[str, str]:
    return row["format"], row["precision"]


def _dataset(report: dict) -> str | None:
    """The dataset a report was measured on, by folder name ('runs/data/synth' and '/x/synth' agree; a YOLO
    'x/bccd/data.yaml' is 'bccd', as every YOLO dataset's yaml is data.yaml)."""
    if not report.get("data"):
        return None
    path = Path(report["data"])
    return (path.parent if path.suffix in (".yaml", ".yml") else path).name


def dataset_check(report: dict, baseline: dict, allow_other_data: bool = False) -> Check:
    """Report and baseline must come from the same dataset (folder name, and class names where recorded)."""
    names = (_dataset(report), _dataset(baseline))
    classes = (report.get("classes"), baseline.get("classes"))
    same = names[0] == names[1] and (None in classes or classes[0] == classes[1])
    detail = f"candidate data {report.get('data')!r} {classes[0] or ''}, baseline {baseline.get('data')!r} " \
             f"{classes[1] or ''}".replace("  ", " ")
    if not same and allow_other_data:
        return Check("same dataset as the baseline", False, 0.0, 1.0, detail + "; allowed", advisory=True)
    return Check("same dataset as the baseline", same, float(same), 1.0,
                 detail + ("" if same else "; pass --allow-other-data to compare anyway"))


def presence_checks(report: dict, baseline: dict | None) -> list[Check]:
    """Fail closed: each failed candidate row fails, and each format measured in the baseline must have been
    measured (status ok, with accuracy if the baseline has it) in the candidate."""
    checks = [Check(f"{r['name']} ran", False, 0.0, 1.0, r["status"][:200]) for r in report["rows"]
              if r["status"] != "ok"]
    if baseline is None:
        return checks
    candidate = {}
    for row in report["rows"]:
        if row["status"] == "ok" or _key(row) not in candidate:
            candidate[_key(row)] = row
    for row in (r for r in baseline["rows"] if r["status"] == "ok"):
        found = candidate.get(_key(row))
        label = f"{row['format']} {row['precision']} (baseline row {row['name']})"
        if found is None:
            checks.append(Check(f"{label} in the candidate", False, 0.0, 1.0, "missing from the candidate report"))
        elif found["status"] == "ok" and row["map50"] is not None and found["map50"] is None:
            checks.append(Check(f"{label} accuracy in the candidate", False, 0.0, 1.0,
                                "candidate has no mAP (benched without --data?)"))
    return checks


def map_tolerance(kind: str) -> float:
    """The mAP@0.5 gap TOLERANCES[kind] allows (models/boxes.py)."""
    allowed = boxes.tolerance(kind).map50
    if allowed is None:
        raise ValueError(f"tolerance '{kind}' sets no mAP gap")
    return allowed


BASELINE_MAP_TOLERANCE = map_tolerance("baseline")


def accuracy_checks(report: dict, baseline: dict | None, tolerance: float = BASELINE_MAP_TOLERANCE,
                    export_tolerance: dict[str, float] | None = None) -> list[Check]:
    """mAP per format against the baseline report, and exported formats against the report's checkpoint
    (default tolerances: models/boxes.py TOLERANCES "baseline" and "export-<precision>")."""
    export_tolerance = export_tolerance or {p: map_tolerance(f"export-{p}") for p in ("fp32", "fp16", "int8")}
    rows = [r for r in report["rows"] if r["status"] == "ok" and r["map50"] is not None]
    checks = presence_checks(report, baseline)
    if baseline is not None:
        reference = {_key(r): r for r in baseline["rows"] if r["status"] == "ok" and r["map50"] is not None}
        for row in rows:
            if _key(row) in reference:
                target = reference[_key(row)]["map50"] - tolerance
                checks.append(Check(f"mAP {row['name']} vs baseline", row["map50"] >= target, row["map50"], target,
                                    f"baseline {reference[_key(row)]['map50']:.4f} - {tolerance}"))
    checkpoint = next((r for r in rows if r["format"] == "pytorch"), None)
    if checkpoint is not None:
        for row in (r for r in rows if r["format"] != "pytorch"):
            allowed = export_tolerance[row["precision"].split("-")[0]]
            gap = abs(row["map50"] - checkpoint["map50"])
            checks.append(Check(f"mAP {row['name']} vs its checkpoint", gap <= allowed, gap, allowed,
                                f"{row['map50']:.4f} vs {checkpoint['map50']:.4f}"))
    return checks


def speed_check(name: str, ratios: list[float], tolerance: float) -> Check:
    median = float(np.median(ratios))
    return Check(name, median >= 1 - tolerance, median, 1 - tolerance,
                 f"candidate/baseline speed, rounds min {min(ratios):.3f} max {max(ratios):.3f}")


def noise_check(report: dict, baseline: dict, allow_noisy: bool, advisory: bool) -> Check | None:
    """None when neither report has noisy rows; else a refusal naming them (a WARN with `allow_noisy`)."""
    noisy = [f"candidate {name}" for name in noisy_rows(report)] + [f"baseline {name}" for name in noisy_rows(baseline)]
    if not noisy:
        return None
    detail = (f"rows whose round FPS spread exceeds {NOISY_BOUND}: {', '.join(noisy)}; "
              + ("compared anyway (--allow-noisy)" if allow_noisy else
                 "speed not compared: re-run bench on a quieter machine, or pass --allow-noisy"))
    return Check("speed from reports without noisy rows", False, float(len(noisy)), 0.0, detail,
                 advisory or allow_noisy)


def baseline_speed_checks(report: dict, baseline: dict, tolerance: float = 0.30, advisory: bool = True,
                          allow_noisy: bool = False) -> list[Check]:
    """Each format's speed relative to the same-run reference convolution, against the baseline's.

    Advisory by default: on this shared machine, runs at other times differed by up to 45% (PyTorch
    eager under load) even after normalising, while A/B in one run holds 5%. A report with noisy rows
    (receipts.NOISY_BOUND) is not compared unless `allow_noisy`: a refusal check takes the speed checks' place."""
    refusal = noise_check(report, baseline, allow_noisy, advisory)
    if refusal is not None and not allow_noisy:
        return [refusal]
    reference = {_key(r): r for r in baseline["rows"] if r["status"] == "ok" and r["relative_speed"]}
    checks = []
    for row in (r for r in report["rows"] if r["status"] == "ok" and r["relative_speed"]):
        if _key(row) in reference:
            ratio = row["relative_speed"] / reference[_key(row)]["relative_speed"]
            checks.append(Check(f"speed {row['name']} vs baseline (reference-normalised)", ratio >= 1 - tolerance,
                                ratio, 1 - tolerance, "network time relative to a same-run reference conv",
                                advisory))
    return checks if refusal is None else [refusal, *checks]


def ab_speed(baseline_onnx: Path, candidate_onnx: Path, threads: int = 2, repeats: int = 9,
             per_round: int = 20) -> list[float]:
    """Per-round speed ratios of two ONNX models (network + NMS) timed A/B-interleaved on one input."""
    from scratchdet.models.contract import load_checked
    from scratchdet.models.inference.onnxruntime_backend import create_session

    sessions, inputs = {}, {}
    for name, path in (("baseline", baseline_onnx), ("candidate", candidate_onnx)):
        size = load_checked(path)[1]["input_size"]
        sessions[name] = create_session(path, threads, spinning=False)
        inputs[name] = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
    rounds = interleave({n: partial(sessions[n].run, None, {"images": inputs[n]}) for n in sessions},
                        repeats, per_round)
    return speed_ratios(rounds["baseline"], rounds["candidate"])


def export_random(config: str, folder: Path) -> Path:
    """A random-weight FP32 ONNX of a config: architecture speed does not depend on the weights."""
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.config import load_model_config
    from scratchdet.models.ssd import SSD

    model_config = load_model_config(config)
    names = [f"class{i}" for i in range(1, model_config.num_classes)]
    path = folder / f"{model_config.name}.onnx"
    export_onnx(SSD(model_config).eval(), names, path, ExportOptions())
    return path


def compare_configs(baseline: str, candidate: str, tolerance: float = 0.05, threads: int = 2) -> Check:
    with tempfile.TemporaryDirectory() as folder:
        a, b = export_random(baseline, Path(folder)), export_random(candidate, Path(folder))
        return speed_check(f"speed {candidate} vs {baseline}", ab_speed(a, b, threads), tolerance)
