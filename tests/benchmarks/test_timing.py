import numpy as np
import pytest

from scratchdet.benchmarks.timing import interleave, latency_stats


def test_percentiles_need_enough_samples():
    few = latency_stats([[1.0, 2.0, 3.0], [4.0, 5.0]])
    assert (few.n, few.min, few.p50, few.max, few.mean) == (5, 1.0, 3.0, 5.0, 3.0)
    assert few.p90 is None and few.p95 is None and few.p99 is None
    samples = np.arange(1, 101, dtype=float)
    full = latency_stats([samples[:50].tolist(), samples[50:].tolist()])
    assert full.n == 100 and full.p95 == pytest.approx(95.05) and full.p99 == pytest.approx(99.01)
    assert (full.round_median_min, full.round_median_max) == (25.5, 75.5)
    with pytest.raises(ValueError, match="no samples"):
        latency_stats([[]])


def test_on_sample_sees_exactly_the_timed_calls():
    calls = {"a": 0, "b": 0}
    seen = {"a": [], "b": []}

    def make(name):
        def call():
            calls[name] += 1
            return calls[name]
        return call

    def on_sample(name):
        seen[name].append(calls[name])  # the index of the call just timed

    rounds = interleave({n: make(n) for n in calls}, repeats=3, per_round=4, warmup=2, progress=False,
                        round_warmup=1, on_sample=on_sample)
    assert [len(r) for r in rounds["a"]] == [4, 4, 4]
    # warm-up calls 1-2, then per round one untimed call and four timed ones
    assert seen["a"] == [4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17]
    assert calls == {"a": 17, "b": 17}
