"""Timing on a noisy shared machine: warm-up, interleaved rounds (A B C, B C A, ...), robust statistics.

Interleaving makes a disturbance (another process, frequency changes) hit every model alike, so
ratios measured in one run stay meaningful even when absolute milliseconds do not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from scratchdet.progress import progress as progress_bar


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over all samples, plus the spread of per-round medians."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    round_median_min: float
    round_median_max: float

    def as_dict(self) -> dict:
        return asdict(self)


def latency_stats(rounds: list[list[float]]) -> LatencyStats:
    samples = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    medians = [float(np.median(r)) for r in rounds]
    p50, p90, p99 = (float(np.percentile(samples, q)) for q in (50, 90, 99))
    return LatencyStats(int(samples.size), float(samples.mean()), p50, p90, p99, min(medians), max(medians))


def interleave(calls: dict[str, Callable[[], object]], repeats: int = 5, per_round: int = 10,
               warmup: int = 3, progress: bool = True, round_warmup: int = 2) -> dict[str, list[list[float]]]:
    """Per name, `repeats` rounds of `per_round` latencies (ms); the order rotates every round.

    The first `round_warmup` calls of each round are not recorded: the previous model's thread pool
    may still be spinning and caches hold its weights, which would bias whoever comes second.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    rounds: dict[str, list[list[float]]] = {name: [] for name in names}
    bar = progress_bar(total=repeats * len(names) * per_round, desc="timing", disable=not progress, leave=False)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            samples = []
            for _ in range(round_warmup):
                calls[name]()
            for _ in range(per_round):
                started = time.perf_counter()
                calls[name]()
                samples.append((time.perf_counter() - started) * 1e3)
                bar.update(1)
            rounds[name].append(samples)
    bar.close()
    return rounds


def speed_ratios(baseline: list[list[float]], candidate: list[list[float]]) -> list[float]:
    """Per round, candidate speed relative to baseline (baseline ms / candidate ms; > 1 is faster)."""
    return [float(np.median(b) / np.median(c)) for b, c in zip(baseline, candidate)]
