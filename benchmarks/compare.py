"""`scratchdet compare`: is candidate B more or less accurate than baseline A, or is it seed noise?

Both configs are trained with the same seeds (seed k of A and seed k of B share the data order and
augmentation), so the per-seed differences are paired. The verdict comes from a Student-t confidence
interval of their mean:

  worse                    the whole interval lies below zero,
  better                   the whole interval lies above zero,
  no detectable difference otherwise; the report gives the smallest difference this many seeds could
                           detect (80% power), so "no difference" is never mistaken for "equal".

Every (config, seed) run has its own folder named by a digest of everything that defines it, so an
interrupted compare resumes and a config compared again (or against itself) is not trained twice.
Speed is timed A/B-interleaved exactly as `scratchdet check --baseline-config` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchdet.models.files import check_destination, write_text
from scratchdet.train.config import load_config

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

VERDICTS = ("worse", "no detectable difference", "better")


# -- statistics ------------------------------------------------------------------------------------
def t_two_sided_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer `df` degrees of freedom (closed form, A&S 26.7.3-4)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    t = abs(t)
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):  # 1 + 2/3 c^2 + (2*4)/(3*5) c^4 + ...
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        series = math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0
        return 2 / math.pi * (theta + series)
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):  # 1 + 1/2 c^2 + (1*3)/(2*4) c^4 + ...
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


def t_quantile(probability: float, df: int) -> float:
    """The `probability` quantile (0.5 < p < 1) of Student's t with `df` degrees of freedom."""
    if not 0.5 <= probability < 1:
        raise ValueError(f"quantile probability must be in [0.5, 1), got {probability}")
    target = 2 * probability - 1  # P(|T| <= q)
    low, high = 0.0, 1.0
    while t_two_sided_probability(high, df) < target:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_two_sided_probability(middle, df) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus baseline over paired seeds, with a t confidence interval."""

    n: int
    mean: float
    sd: float  # standard deviation of the per-seed differences
    ci_low: float
    ci_high: float
    confidence: float
    minimal_detectable: float  # the true difference found with `power` at this n and sd
    power: float

    @property
    def verdict(self) -> str:
        if self.ci_high < 0:
            return "worse"
        if self.ci_low > 0:
            return "better"
        return "no detectable difference"


def paired_difference(baseline: Sequence[float], candidate: Sequence[float], confidence: float = 0.95,
                      power: float = 0.8) -> PairedDifference:
    """Mean of candidate - baseline per seed, its confidence interval and minimal detectable difference."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired comparison needs as many baseline as candidate values "
                         f"({len(baseline)} vs {len(candidate)})")
    n = len(baseline)
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 seeds, got {n}")
    differences = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    mean, sd = float(differences.mean()), float(differences.std(ddof=1))
    error = sd / math.sqrt(n)
    t_alpha = t_quantile(0.5 + confidence / 2, n - 1)
    half = t_alpha * error
    detectable = (t_alpha + t_quantile(power, n - 1)) * error
    return PairedDifference(n, mean, sd, mean - half, mean + half, confidence, detectable, power)


# -- one training run per (config, seed) -----------------------------------------------------------
@dataclass
class SeedRun:
    """The outcome of one training run: final and best val accuracy and the per-epoch curve."""

    seed: int
    folder: str
    map50: float  # at the last epoch (the best epoch would select on the validation set)
    coco_ap: float
    best_map50: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (1-based epoch, mAP@0.5)
    diverged: str = ""  # the error when training stopped on non-finite losses (accuracy counts as 0)
    cpu_s: float = 0.0  # user + sys seconds of the training epochs (metrics.jsonl; 0 where not recorded)


def explicit_values(config: DataclassInstance) -> dict:
    """The fields of a config dataclass that differ from their defaults (nested dataclasses recursively).

    Run folders are named after these, so a field added to the code later (with a default that keeps the old
    behaviour) does not orphan the finished runs.
    """
    values = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            nested = explicit_values(value)
            if nested:
                values[item.name] = nested
            continue
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = dataclasses.MISSING
        if value != default:
            values[item.name] = value  # tuples serialise as JSON lists
    return values


def run_digest(config: str | Path, data: str | Path, epochs: int | None) -> str:
    """Ten hex digits naming everything a run depends on but the seed: model, recipe, epochs, data."""
    model_config, train_config = load_config(config)
    if epochs is not None:
        train_config = replace(train_config, epochs=epochs)
    key = {"model": explicit_values(model_config), "train": explicit_values(replace(train_config, seed=0)),
           "data": str(Path(data).resolve())}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def run_folder(root: str | Path, config: str | Path, data: str | Path, epochs: int | None, seed: int) -> Path:
    model_config, _ = load_config(config)
    return Path(root) / f"{model_config.name}-{run_digest(config, data, epochs)}" / f"seed{seed}"


def _write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2))


def read_seed_run(folder: Path, seed: int) -> SeedRun:
    """The accuracy a finished run folder recorded (metrics.jsonl, or diverged.json)."""
    from scratchdet.train.plots import read_metrics

    diverged = folder / "diverged.json"
    if diverged.is_file():
        record = json.loads(diverged.read_text())
        return SeedRun(seed, str(folder), 0.0, 0.0, 0.0, [tuple(p) for p in record["curve"]], record["error"])
    epochs = [r for r in read_metrics(folder / "metrics.jsonl") if r.get("type") == "epoch"]
    evaluations = [r for r in epochs if "map50" in r]
    if not evaluations:
        raise ValueError(f"{folder / 'metrics.jsonl'}: no evaluated epoch")
    last = evaluations[-1]
    cpu = sum(r.get("cpu_user_s", 0.0) + r.get("cpu_sys_s", 0.0) for r in epochs)
    return SeedRun(seed, str(folder), last["map50"], last["coco_ap"], max(e["map50"] for e in evaluations),
                   [(e["epoch"], e["map50"]) for e in evaluations], cpu_s=cpu)  # metrics count epochs from 1


def _finished(folder: Path, epochs: int) -> bool:
    if (folder / "diverged.json").is_file():
        return True
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        return False
    from scratchdet.train.plots import read_metrics

    return any(r.get("type") == "epoch" and r.get("epoch") == epochs and "map50" in r
               for r in read_metrics(metrics))


def train_seed(config: str | Path, data: str | Path, epochs: int | None, seed: int, root: str | Path) -> SeedRun:
    """Train `config` with `seed` into its run folder under `root`, resuming or reusing what is there."""
    from scratchdet.train.trainer import NonFiniteLossError, Trainer

    model_config, train_config = load_config(config)
    train_config = replace(train_config, seed=seed)
    if epochs is not None:
        train_config = replace(train_config, epochs=epochs)
    folder = run_folder(root, config, data, epochs, seed)
    if _finished(folder, train_config.epochs):
        log.info("%s: finished run reused", folder)
        return read_seed_run(folder, seed)
    trainer = Trainer(model_config, train_config, data, folder)
    if (folder / "last.pt").is_file():
        trainer.resume()
    try:
        trainer.fit()
    except NonFiniteLossError as error:
        log.warning("%s: training diverged (%s); its accuracy counts as 0", folder, error)
        curve = read_seed_run(folder, seed).curve if _evaluated(folder) else []
        _write_json(folder / "diverged.json", {"error": str(error), "curve": curve})
    return read_seed_run(folder, seed)


def _evaluated(folder: Path) -> bool:
    from scratchdet.train.plots import read_metrics

    metrics = folder / "metrics.jsonl"
    return metrics.is_file() and any("map50" in r for r in read_metrics(metrics))


# -- the comparison --------------------------------------------------------------------------------
REPORT_FILES = ("report.json", "report.md", "curves.png")


def validate_inputs(configs: Sequence[str | Path], data: str | Path, runs: str | Path,
                    out: str | Path | None = None) -> None:
    """Everything a comparison needs, checked before the first training step, so a misspelt candidate
    is found before the baseline trains.

    Raises:
        ConfigError / ValueError: a config is not found or invalid, or the data does not load.
        OSError: the runs folder or the report folder `out` cannot be written (naming it).
    """
    from scratchdet.train.data.load import load_dataset

    for config in configs:
        load_config(config)
    for split in ("train", "val"):
        load_dataset(data, split)
    check_destination(Path(runs) / "write-test")
    if out is not None:
        for name in REPORT_FILES:
            check_destination(Path(out) / name)


EXIT_CODES = {"better": 0, "no detectable difference": 0, "worse": 2}  # 1 is any error (scratchdet.cli)


def compare(baseline: str, candidate: str, data: str | Path, seeds: Sequence[int], epochs: int | None,
            runs: str | Path, speed: bool = True, threads: int = 2, confidence: float = 0.95,
            candidate_seed_offset: int = 0) -> dict:
    """Train both configs with every seed (baseline then candidate per seed), then score and time them.

    `candidate_seed_offset` pairs baseline seed k with candidate seed k + offset: a config against itself
    with an offset measures what seed noise alone produces (with offset 0 both arms are the same runs).
    """
    validate_inputs((baseline, candidate), data, runs)
    arms: dict[str, list[SeedRun]] = {"baseline": [], "candidate": []}
    for seed in seeds:
        for arm, config, arm_seed in (("baseline", baseline, seed), ("candidate", candidate,
                                                                      seed + candidate_seed_offset)):
            log.info("%s %s seed %d", arm, config, arm_seed)
            arms[arm].append(train_seed(config, data, epochs, arm_seed, runs))
    metrics = {}
    for metric in ("map50", "coco_ap"):
        a = [getattr(r, metric) for r in arms["baseline"]]
        b = [getattr(r, metric) for r in arms["candidate"]]
        metrics[metric] = asdict(paired_difference(a, b, confidence)) | {
            "verdict": paired_difference(a, b, confidence).verdict}
    report = {
        "data": str(data), "epochs": epochs, "seeds": list(seeds), "confidence": confidence,
        "candidate_seed_offset": candidate_seed_offset,
        "baseline": {"config": str(baseline), "runs": [asdict(r) for r in arms["baseline"]]},
        "candidate": {"config": str(candidate), "runs": [asdict(r) for r in arms["candidate"]]},
        "difference": metrics, "verdict": metrics["map50"]["verdict"], "speed": None,
    }
    for arm in ("baseline", "candidate"):
        values = [r.map50 for r in arms[arm]]
        report[arm]["map50"] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                                "min": min(values), "max": max(values), "spread": max(values) - min(values)}
    if speed:
        from scratchdet.benchmarks.gate import compare_configs

        check = compare_configs(baseline, candidate, threads=threads)
        report["speed"] = {"candidate_over_baseline": check.measured, "detail": check.detail}
    return report


def markdown(report: dict) -> str:
    """The comparison as a Markdown page: per-seed table, the difference with its interval, the verdict."""
    base, cand = report["baseline"], report["candidate"]
    lines = [f"# {cand['config']} vs {base['config']}", "",
             f"data `{report['data']}`, epochs {report['epochs'] or 'as configured'}, seeds {report['seeds']}", "",
             "| seed | baseline mAP@0.5 | candidate mAP@0.5 | difference | baseline COCO AP | candidate COCO AP |",
             "|---|---|---|---|---|---|"]
    if report.get("candidate_seed_offset"):
        lines[-2] = lines[-2].replace("| seed |", "| seeds (baseline, candidate) |")
    for a, b in zip(base["runs"], cand["runs"]):
        flags = " (diverged)" if b["diverged"] else ""
        seed = a["seed"] if a["seed"] == b["seed"] else f"{a['seed']}, {b['seed']}"
        lines.append(f"| {seed} | {a['map50']:.4f}{' (diverged)' if a['diverged'] else ''} | "
                     f"{b['map50']:.4f}{flags} | {b['map50'] - a['map50']:+.4f} | {a['coco_ap']:.4f} | "
                     f"{b['coco_ap']:.4f} |")
    for arm, name in ((base, "baseline"), (cand, "candidate")):
        stats = arm["map50"]
        cpu = [r.get("cpu_s", 0.0) for r in arm["runs"]]
        lines.append(f"\n{name} mAP@0.5: mean {stats['mean']:.4f}, sd {stats['sd']:.4f}, "
                     f"spread (max - min) {stats['spread']:.4f}"
                     + (f"; training CPU time (user + sys) mean {np.mean(cpu):.0f} s" if all(cpu) else ""))
    lines.append("")
    for metric, label in (("map50", "mAP@0.5"), ("coco_ap", "COCO AP")):
        d = report["difference"][metric]
        lines.append(f"- {label}: candidate - baseline = {d['mean']:+.4f}, {d['confidence']:.0%} CI "
                     f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] (paired t, n={d['n']}, sd {d['sd']:.4f}); "
                     f"detectable with {d['power']:.0%} power: {d['minimal_detectable']:.4f}; {d['verdict']}")
    if report["speed"]:
        lines.append(f"- speed candidate/baseline (A/B interleaved, random weights): "
                     f"{report['speed']['candidate_over_baseline']:.3f} ({report['speed']['detail']})")
    if all(a["folder"] == b["folder"] for a, b in zip(base["runs"], cand["runs"])):
        lines.append("- both arms are the same runs (same recipe and seeds): this checks the plumbing only; "
                     "to see seed noise, pair other seeds (--candidate-first-seed)")
    lines.append(f"\n**verdict: {report['verdict']}** (candidate vs baseline, mAP@0.5)")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    """Per-seed validation curves of both arms, and each run's gradient norm per step (paper Fig. 3)."""
    return plot_runs({f"{arm} ({Path(report[arm]['config']).stem})": report[arm]["runs"]
                      for arm in ("baseline", "candidate")}, path)


def plot_runs(arms: dict[str, list[dict]], path: Path) -> Path:
    """One colour per arm: val mAP@0.5 per epoch of every seed, and the gradient norm per step (log scale)."""
    from scratchdet.train.figures import save, subplots
    from scratchdet.train.plots import read_metrics

    figure, (curves, norms) = subplots(1, 2, figsize=(12, 4.5))
    styles = ["-", "--", ":", "-."]
    for number, (label, runs) in enumerate(arms.items()):
        color, style = f"C{number}", styles[number % len(styles)]
        for index, run in enumerate(runs):
            name = label if index == 0 else None
            if run["curve"]:
                epochs, values = zip(*run["curve"])
                curves.plot(epochs, values, style, color=color, marker="o", markersize=3, label=name)
            metrics = Path(run["folder"]) / "metrics.jsonl"
            steps = [r for r in read_metrics(metrics) if r.get("type") == "step"] if metrics.is_file() else []
            if steps:
                window = max(1, len(steps) // 50)
                smooth = np.convolve([s["grad_norm"] for s in steps], np.ones(window) / window, mode="valid")
                norms.plot(np.arange(len(smooth)) + window, smooth, style, color=color, linewidth=0.8, label=name)
    curves.set(xlabel="epoch", ylabel="val mAP@0.5", title="per-seed validation curves", ylim=(0, 1))
    norms.set(xlabel="iteration", ylabel="gradient L2 norm (moving average)", yscale="log",
              title="gradient norm per step, every seed")
    for axis in (curves, norms):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    return save(figure, path)


def write_report(report: dict, out: str | Path) -> Path:
    """report.json, report.md and curves.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / REPORT_FILES[0], report)
    write_text(out / REPORT_FILES[1], markdown(report))
    plot(report, out / REPORT_FILES[2])
    return out
