"""The record of one measured case: what the summary, the reports and the baseline update read.

Records travel as JSON in ``item.user_properties``, so they reach the controller under
pytest-xdist and land in JUnit XML without any extra plumbing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_PROPERTY = "attnperf_result"


@dataclass
class CaseResult:
    """One test's measurement, its baseline and each check's verdict."""

    test_id: str
    backend: str | None
    device: str
    device_slug: str
    mode: str
    shape: dict[str, Any] | None
    seqlen: int | None
    fits: bool = True
    device_id: str | None = None  # e.g. cuda:1: which GPU of the host (pytest-xdist worker gwN -> cuda:N)
    reason: str | None = None
    median_ms: float | None = None
    iqr_ms: float | None = None
    latency: dict[str, float] | None = None
    quantiles_ms: list[float] | None = None
    first_median_ms: float | None = None  # set when a suspected regression was measured again
    tflops: float | None = None
    bytes_moved: int | None = None  # Q read, the visible KV cache read once, O written (forward)
    gbps: float | None = None  # bytes_moved over the median
    bandwidth_share: float | None = None  # gbps over the device's measured copy bandwidth (CUDA)
    peak_bytes: int | None = None
    baseline_file: str | None = None
    baseline_median_ms: float | None = None
    baseline_peak_bytes: int | None = None
    max_error: float | None = None
    error_budget: float | None = None
    equivalence_passed: bool | None = None
    mismatch: str | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    outcome: str = "passed"
    environment: dict[str, Any] = field(default_factory=dict)
    clock: str | None = None

    @property
    def latency_ratio(self) -> float | None:
        if self.median_ms is None or not self.baseline_median_ms:
            return None
        return self.median_ms / self.baseline_median_ms

    @property
    def memory_ratio(self) -> float | None:
        if self.peak_bytes is None or not self.baseline_peak_bytes:
            return None
        return self.peak_bytes / self.baseline_peak_bytes

    def verdict(self) -> str:
        """One word for the summary: the worst of the checks."""
        if not self.fits:
            return "does not fit"
        for word in ("REGRESSION", "MISMATCH", "NO BASELINE"):
            if word in self.verdicts.values():
                return word.lower() if word == "NO BASELINE" else word
        return "ok" if self.outcome == "passed" else self.outcome

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CaseResult:
        return cls(**json.loads(text))

    def junit_properties(self) -> list[tuple[str, object]]:
        """Flat properties that CI systems show next to the test case."""
        pairs: list[tuple[str, object]] = [
            ("attnperf_backend", self.backend),
            ("attnperf_device", self.device),
            ("attnperf_median_ms", self.median_ms),
            ("attnperf_baseline_ms", self.baseline_median_ms),
            ("attnperf_ratio", None if self.latency_ratio is None else round(self.latency_ratio, 4)),
            ("attnperf_peak_bytes", self.peak_bytes),
            ("attnperf_baseline_peak_bytes", self.baseline_peak_bytes),
            ("attnperf_tflops", self.tflops),
            ("attnperf_gbps", self.gbps),
            ("attnperf_verdict", self.verdict()),
        ]
        return [(name, value) for name, value in pairs if value is not None]
