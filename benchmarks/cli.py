"""`scratchdet bench` and `scratchdet check`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from scratchdet.arguments import non_negative_float, positive_int, positive_int_list
from scratchdet.benchmarks.gate import (
    BASELINE_MAP_TOLERANCE,
    GateResult,
    ab_speed,
    accuracy_checks,
    baseline_speed_checks,
    compare_configs,
    dataset_check,
    speed_check,
)
from scratchdet.benchmarks.harness import failed_rows, run_benchmark
from scratchdet.benchmarks.report import REPORT_FILES, markdown, read_report, write_report
from scratchdet.flags import add_model_argument
from scratchdet.models.files import check_destination, write_text
from scratchdet.models.inference.runtime_choice import recommendation_file, record

log = logging.getLogger(__name__)


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet bench` or `check`."""
    {"bench": _bench_arguments, "check": _check_arguments, "compare": _compare_arguments}[command](parser)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    add_model_argument(bench, ".pt, .onnx and .engine files, one row each", nargs="+")
    bench.add_argument("--data", help="dataset for accuracy (its val split) and a real timing image")
    bench.add_argument("--out", default="runs/bench", help="folder for report.json, report.md and fps_vs_map.png")
    bench.add_argument("--batch", type=positive_int_list, default="1,8",
                       help="batch sizes, e.g. 1,8 (1 = latency, others = throughput)")
    bench.add_argument("--repeats", type=positive_int, default=5, help="interleaved rounds")
    bench.add_argument("--per-round", type=positive_int, default=20,
                       help="timed calls per model per round (n = repeats x per-round; p99 needs n >= 100)")
    bench.add_argument("--threads", type=positive_int, default=2, help="CPU threads per model (ONNX Runtime, PyTorch)")
    bench.add_argument("--runtime", default="ort", help="runtimes for .onnx models, comma-separated, timed "
                       "interleaved: ort, openvino (FP32 compute), openvino-bf16 (BF16 compute where the CPU has it); "
                       "with ort and openvino, their p50 per precision goes to this host's runtime recommendation "
                       "(~/.cache/scratchdet/runtime.json, or $SCRATCHDET_RUNTIME_FILE) for `--runtime auto`")
    bench.set_defaults(run=run_bench)


def _check_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument("--report", help="a candidate report.json from `scratchdet bench`")
    check.add_argument("--baseline", help="committed baseline report (benchmarks/baselines/*.json)")
    check.add_argument("--baseline-config", help="A/B speed: the baseline architecture (config)")
    check.add_argument("--candidate-config", help="A/B speed: the candidate architecture (config)")
    check.add_argument("--baseline-onnx", help="A/B speed: baseline ONNX (instead of configs)")
    check.add_argument("--candidate-onnx", help="A/B speed: candidate ONNX")
    check.add_argument("--map-tolerance", type=non_negative_float, default=BASELINE_MAP_TOLERANCE,
                       help="mAP drop allowed (0.002 = 0.2 points)")
    check.add_argument("--speed-tolerance", type=non_negative_float, default=0.05,
                       help="A/B speed drop allowed (0.05 = 5%%)")
    check.add_argument("--baseline-speed-tolerance", type=non_negative_float, default=0.30,
                       help="speed drop tolerated against a committed baseline (reported as WARN unless "
                            "--enforce-baseline-speed): runs at other times differ by up to 45%% on a shared "
                            "machine; use --baseline-config/--candidate-config (A/B in one run, 5%%) to gate speed")
    check.add_argument("--enforce-baseline-speed", action="store_true",
                       help="fail, not warn, on a speed drop against the committed baseline")
    check.add_argument("--allow-other-data", action="store_true",
                       help="compare a report with a baseline measured on another dataset (WARN, not FAIL)")
    check.add_argument("--allow-noisy", action="store_true",
                       help="compare speed from reports with noisy rows (rounds spread beyond the bound; WARN)")
    check.add_argument("--threads", type=positive_int, default=2, help="CPU threads for the A/B speed runs")
    check.add_argument("--json", help="write the gate result here (for CI)")
    check.set_defaults(run=run_check)


def _compare_arguments(compare: argparse.ArgumentParser) -> None:
    compare.description = (compare.description or "") + (
        "\n\nTrains both configs with seeds first-seed .. first-seed+N-1 (runs cached per seed under --runs),"
        "\nthen a paired t interval of candidate - baseline mAP@0.5 gives the verdict."
        "\nExit code: 0 better or no detectable difference, 2 worse, 1 error.")
    compare.add_argument("--baseline-config", required=True, help="config file or shipped config name")
    compare.add_argument("--candidate-config", required=True, help="config file or shipped config name")
    compare.add_argument("--data", required=True, help="dataset folder (trained on train, scored on val)")
    compare.add_argument("--seeds", type=int, default=3, help="number of seeds (at least 2)")
    compare.add_argument("--first-seed", type=int, default=0, help="seed of the first run of both configs")
    compare.add_argument("--candidate-first-seed", type=int,
                         help="candidate seeds start here instead (a config against itself: seed noise alone)")
    compare.add_argument("--epochs", type=int, help="override both configs' train.epochs")
    compare.add_argument("--runs", default="runs/seeds", help="cache of run folders, one per (config, seed)")
    compare.add_argument("--out", help="report folder (default runs/compare/<baseline>_vs_<candidate>)")
    compare.add_argument("--confidence", type=float, default=0.95, help="confidence level of the paired t interval")
    compare.add_argument("--no-speed", action="store_true", help="skip the A/B-interleaved speed timing")
    compare.add_argument("--threads", type=int, default=2, help="CPU threads for training and the A/B speed run")
    compare.set_defaults(run=run_compare)


def run_bench(args: argparse.Namespace) -> int:
    """Returns 1 when any model failed to load, run or score (its row is still in the report)."""
    runtimes = tuple(r.strip() for r in args.runtime.split(",") if r.strip())
    for name in REPORT_FILES:  # every destination is checked before the first model is timed
        check_destination(Path(args.out) / name)
    if {"ort", "openvino"} <= set(runtimes):
        check_destination(recommendation_file())
    report = run_benchmark(args.model, args.data, args.batch, args.repeats, args.per_round, args.threads,
                           runtimes=runtimes)
    out = write_report(report, args.out)
    print(markdown(report))
    print(f"report: {out / 'report.json'}, {out / 'report.md'}, {out / 'fps_vs_map.png'}")
    if report["runtime_measurements"]:
        path = record(report["runtime_measurements"])
        print(f"runtime recommendation for this host ({', '.join(report['runtime_measurements'])}): {path}; "
              "`--runtime auto` reads it")
    failed = failed_rows(report)
    for row in failed:
        log.error("%s: %s", row["path"], row["status"])
    if failed and len(failed) == len(report["rows"]):
        log.error("every model failed (%s); see the status column", ", ".join(row["name"] for row in failed))
    return 1 if failed else 0


def _check_pairs(args: argparse.Namespace) -> None:
    """Options that only work in pairs name their missing partner."""
    pairs = [("--baseline", args.baseline, "--report", args.report),
             ("--baseline-config", args.baseline_config, "--candidate-config", args.candidate_config),
             ("--candidate-config", args.candidate_config, "--baseline-config", args.baseline_config),
             ("--baseline-onnx", args.baseline_onnx, "--candidate-onnx", args.candidate_onnx),
             ("--candidate-onnx", args.candidate_onnx, "--baseline-onnx", args.baseline_onnx)]
    for given, value, needed, partner in pairs:
        if value and not partner:
            raise ValueError(f"check {given} {value} needs {needed} too")


def run_check(args: argparse.Namespace) -> int:
    _check_pairs(args)
    if args.json:
        check_destination(args.json)
    result = GateResult()
    if args.report:
        report = read_report(args.report)
        baseline = read_report(args.baseline) if args.baseline else None
        if baseline:
            result.checks.append(dataset_check(report, baseline, args.allow_other_data))
        result.checks += accuracy_checks(report, baseline, args.map_tolerance)
        if baseline:
            result.checks += baseline_speed_checks(report, baseline, args.baseline_speed_tolerance,
                                                   advisory=not args.enforce_baseline_speed,
                                                   allow_noisy=args.allow_noisy)
    if args.baseline_config and args.candidate_config:
        result.checks.append(compare_configs(args.baseline_config, args.candidate_config, args.speed_tolerance,
                                             args.threads))
    if args.baseline_onnx and args.candidate_onnx:
        ratios = ab_speed(Path(args.baseline_onnx), Path(args.candidate_onnx), args.threads)
        result.checks.append(speed_check(f"speed {args.candidate_onnx} vs {args.baseline_onnx}", ratios,
                                         args.speed_tolerance))
    if not result.checks and args.report:
        raise ValueError(f"{args.report}: nothing to check: no --baseline, and no PyTorch row to compare the "
                         "exported formats with")
    if not result.checks:
        raise ValueError("check needs --report [--baseline], --baseline-config/--candidate-config, "
                         "or --baseline-onnx/--candidate-onnx")
    print(result.summary())
    if args.json:
        write_text(args.json, json.dumps(result.as_dict(), indent=2))
    return 0 if result.passed else 1


def run_compare(args: argparse.Namespace) -> int:
    from scratchdet.benchmarks.compare import EXIT_CODES, compare, markdown, validate_inputs, write_report

    if args.seeds < 2:
        raise ValueError(f"--seeds {args.seeds}: a confidence interval needs at least 2 seeds")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence {args.confidence}: must be between 0 and 1")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    out = args.out or f"runs/compare/{Path(args.baseline_config).stem}_vs_{Path(args.candidate_config).stem}"
    validate_inputs((args.baseline_config, args.candidate_config), args.data, args.runs, out)
    report = compare(args.baseline_config, args.candidate_config, args.data, seeds, args.epochs, args.runs,
                     speed=not args.no_speed, threads=args.threads, confidence=args.confidence,
                     candidate_seed_offset=(args.candidate_first_seed - args.first_seed
                                            if args.candidate_first_seed is not None else 0))
    out = write_report(report, out)
    print(markdown(report))
    print(f"report: {out / 'report.json'}, {out / 'report.md'}, {out / 'curves.png'}")
    return EXIT_CODES[report["verdict"]]
