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

# Fewest samples for a percentile to be more than the extreme sample: with n samples the p-th
# percentile rests on n * (1 - p / 100) samples above it; below one or two it is the maximum renamed.
MIN_SAMPLES = {90: 10, 95: 20, 99: 100}


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over all n samples (a percentile is None when n is too small for it, see
    MIN_SAMPLES), plus the spread of per-round medians."""

    n: int
    mean: float
    min: float
    p50: float
    p90: float | None
    p95: float | None
    p99: float | None
    max: float
    round_median_min: float
    round_median_max: float

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(samples: np.ndarray, q: int) -> float | None:
    """The q-th percentile, or None when there are fewer samples than MIN_SAMPLES[q]."""
    return float(np.percentile(samples, q)) if samples.size >= MIN_SAMPLES.get(q, 1) else None


def latency_stats(rounds: list[list[float]]) -> LatencyStats:
    samples = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    if samples.size == 0:
        raise ValueError("latency_stats: no samples")
    medians = [float(np.median(r)) for r in rounds if len(r)]
    return LatencyStats(int(samples.size), float(samples.mean()), float(samples.min()), float(np.median(samples)),
                        percentile(samples, 90), percentile(samples, 95), percentile(samples, 99),
                        float(samples.max()), min(medians), max(medians))


def interleave(calls: dict[str, Callable[[], object]], repeats: int = 5, per_round: int = 10,
               warmup: int = 3, progress: bool = True, round_warmup: int = 2,
               on_sample: Callable[[str], None] | None = None) -> dict[str, list[list[float]]]:
    """Per name, `repeats` rounds of `per_round` latencies (ms); the order rotates every round.

    `on_sample(name)` runs after each timed call (and only those), outside the timed interval: a
    caller that also records per-stage times inside the call keeps exactly the same samples.

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
                if on_sample is not None:
                    on_sample(name)
                bar.update(1)
            rounds[name].append(samples)
    bar.close()
    return rounds


def speed_ratios(baseline: list[list[float]], candidate: list[list[float]]) -> list[float]:
    """Per round, candidate speed relative to baseline (baseline ms / candidate ms; > 1 is faster)."""
    return [float(np.median(b) / np.median(c)) for b, c in zip(baseline, candidate)]
