"""The record of one measured case: what the summary, the reports and the baseline update read.

Built by the case gate from the case's measurement (``measure/case.py``) and the gate's frozen
``Decision`` (``gate/evaluate.py``); frozen itself, so each step makes a new one.

Records travel as JSON in ``item.user_properties``, so they reach the controller under
pytest-xdist and land in JUnit XML without any extra plumbing. A record carries everything the
controller needs to write a baseline (the device record and the GPU state it was measured
with), so the controller never touches a GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_PROPERTY = "attnperf_result"
# The record's own version (2: built once, from the measurement and the gate's decision; 1: the records before
# it carried one, with the same fields). A reader refuses a newer record rather than misread it.
RECORD_VERSION = 2
# Verdict words, worst first: the summary shows the first one a case has.
SERIOUS_VERDICTS = ("REGRESSION", "MISMATCH", "BASELINE MISMATCH", "NO BASELINE", "DISPATCH CHANGED")


@dataclass(frozen=True)
class CaseResult:
    """One test's record: who it is, what was measured, what the gate decided, and where it was measured.

    Frozen: each step makes a new record (``dataclasses.replace``) instead of writing into the last one."""

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
    median_ms: float | None = None  # raw median of the kept samples
    iqr_ms: float | None = None
    latency: dict[str, float] | None = None
    samples_ms: list[float] | None = None  # every kept sample, in time order
    clock_mhz: list[float | None] | None = None  # each sample's SM clock over exactly that sample (None: not read)
    warmup_ms: list[float] | None = None  # the warm-up samples (the same loop), in time order
    warmup_clock_mhz: list[float | None] | None = None
    clock_source: str | None = None  # how the clock was read: sm0-timestamps, sleep-spin or none
    timing_info: dict[str, Any] | None = None  # warm-up, discarded samples, pauses, lead
    gpu: dict[str, Any] | None = None  # NVML over the case: temperature, power, energy per call, clock-event reasons
    fingerprint: dict[str, Any] | None = None  # the kernels that ran (families, variant hash)
    stages: list[dict[str, Any]] = field(default_factory=list)  # each measurement's ratios and verdict
    first_median_ms: float | None = None  # set when the case was measured again
    tflops: float | None = None
    bytes_moved: int | None = None  # Q read, the visible KV cache read once, O written (forward)
    gbps: float | None = None  # bytes_moved over the median
    bandwidth_share: float | None = None  # gbps over the device's measured copy bandwidth (CUDA)
    peak_bytes: int | None = None
    memory_free_bytes: int | None = None  # free device memory before the peak call: the headroom
    baseline_file: str | None = None
    baseline_median_ms: float | None = None
    baseline_peak_bytes: int | None = None
    normalised_median_ms: float | None = None  # the median at the baseline's clock
    median_clock_mhz: float | None = None
    clock_ref_mhz: float | None = None
    beta: float | None = None
    beta_source: str | None = None
    tolerance: float | None = None  # the threshold the latency was gated at
    detection_limit: float | None = None  # from the baseline (attnperf calibrate)
    calibration: dict[str, Any] | None = None  # this run's `attnperf calibrate` ladder and detection limit
    max_error: float | None = None
    error_budget: float | None = None
    equivalence_passed: bool | None = None
    mismatch: str | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outcome: str = "passed"
    environment: dict[str, Any] = field(default_factory=dict)
    clock: str | None = None  # the timer: cuda-events, cuda-graph-events or perf_counter
    device_info: dict[str, Any] | None = None  # DeviceInfo.as_dict() of the process that measured
    session_gpu_state: dict[str, Any] | None = None  # that process's GPU state at session start
    plugin_version: str | None = None
    timing_settings: dict[str, Any] | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)  # wall time of each step of the case (cost breakdown)
    record_version: int = RECORD_VERSION

    @property
    def latency_ratio(self) -> float | None:
        """Raw median over the baseline centre."""
        if self.median_ms is None or not self.baseline_median_ms:
            return None
        return self.median_ms / self.baseline_median_ms

    @property
    def normalised_ratio(self) -> float | None:
        """Median at the baseline's clock over the baseline centre: what the gate decides on."""
        if self.normalised_median_ms is None or not self.baseline_median_ms:
            return None
        return self.normalised_median_ms / self.baseline_median_ms

    @property
    def memory_ratio(self) -> float | None:
        if self.peak_bytes is None or not self.baseline_peak_bytes:
            return None
        return self.peak_bytes / self.baseline_peak_bytes

    def verdict(self) -> str:
        """One word for the summary: the worst of the checks."""
        values = set(self.verdicts.values())
        if not self.fits and "REGRESSION" not in values:
            return "does not fit"
        for word in SERIOUS_VERDICTS:
            if word in values:
                return word.lower() if word == "NO BASELINE" else word
        for word in ("newly fits", "not gated"):
            if word in values:
                return word
        return "ok" if self.outcome == "passed" else self.outcome

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CaseResult:
        data = json.loads(text)
        version = data.setdefault("record_version", 1)
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise ValueError(
                f"an attnperf record of version {version!r} (test {data.get('test_id')!r}): this pytest-attnperf reads "
                f"versions 1 to {RECORD_VERSION}; upgrade it (every process of a run must use the same version)"
            )
        known = cls.__dataclass_fields__.keys()
        return cls(**{key: value for key, value in data.items() if key in known})

    def junit_properties(self) -> list[tuple[str, object]]:
        """Flat properties that CI systems show next to the test case."""
        pairs: list[tuple[str, object]] = [
            ("attnperf_backend", self.backend),
            ("attnperf_device", self.device),
            ("attnperf_median_ms", self.median_ms),
            ("attnperf_baseline_ms", self.baseline_median_ms),
            ("attnperf_ratio", None if self.latency_ratio is None else round(self.latency_ratio, 4)),
            ("attnperf_normalised_ratio", None if self.normalised_ratio is None else round(self.normalised_ratio, 4)),
            ("attnperf_clock_mhz", None if self.median_clock_mhz is None else round(self.median_clock_mhz, 1)),
            ("attnperf_tolerance", self.tolerance),
            ("attnperf_peak_bytes", self.peak_bytes),
            ("attnperf_baseline_peak_bytes", self.baseline_peak_bytes),
            ("attnperf_tflops", self.tflops),
            ("attnperf_gbps", self.gbps),
            ("attnperf_verdict", self.verdict()),
        ]
        return [(name, value) for name, value in pairs if value is not None]
