"""Our CUDA-event samples in pytest-benchmark's statistics, so its JSON, histograms and compare see GPU times.

pytest-benchmark has no public way to add samples timed elsewhere: its fixture times the call
itself with a host clock, which on a GPU measures launches, not kernels. We use three of its
internals — ``BenchmarkFixture._make_stats``, ``_mode`` and ``Stats.update`` — under a pinned
upper bound (pyproject.toml), and ``tests/unit/test_pytest_benchmark_contract.py`` fails when
they move.
"""

from __future__ import annotations

from typing import Any

from ..gate.results import CaseRecord

# The internals this module relies on, checked by the contract test.
FIXTURE_INTERNALS = ("_make_stats", "_mode", "stats", "extra_info")


def feed_samples(benchmark: Any, samples_ms: tuple[float, ...], result: CaseRecord) -> None:
    """Put ``samples_ms`` into ``benchmark``'s statistics (its own timer never runs), with our numbers as extra info."""
    if benchmark.stats is None:
        benchmark._make_stats(1)  # pytest-benchmark's per-test statistics holder: one per test
        benchmark._mode = "attnperf.measure(...)"  # marks the fixture used: no "not used at all" warning
    else:  # measured again after a suspected regression: the last measurement's samples are the result
        benchmark.stats.stats = type(benchmark.stats.stats)()
    for sample in samples_ms:
        benchmark.stats.update(sample / 1e3)
    benchmark.extra_info.update(
        {
            "attnperf_clock": result.provenance.clock,
            "attnperf_backend": result.identity.backend,
            "attnperf_peak_bytes": result.measurement.peak_bytes,
            "attnperf_tflops": result.measurement.tflops,
        }
    )
