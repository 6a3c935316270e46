"""The record of one measured case: what the summary, the reports, the baseline update and the xdist controller read.

A record is four frozen parts, built once by the case gate: who the case is (:class:`CaseIdentity`),
what was measured (:class:`MeasurementRecord`, from ``measure/case.py``'s ``CaseMeasurement``), what
the gate decided (:class:`DecisionRecord`, from ``gate/evaluate.py``'s ``Decision``, over every stage
of the case) and where and how it was measured (:class:`Provenance`). The parts hold plain JSON
values, so this module stays torch-free and the record reads back equal from its JSON.

Records travel as JSON in ``item.user_properties``, so they reach the controller under
pytest-xdist and land in JUnit XML without any extra plumbing. A record carries everything the
controller needs to write a baseline (the device record and the GPU state it was measured
with), so the controller never touches a GPU. The JSON report (``--attnperf-json``) shows each
record flat (:meth:`CaseRecord.flat`), the layout it has always had.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

RECORD_PROPERTY = "attnperf_result"
# The record's own version. 3: four nested parts (identity, measurement, decision, provenance); 2: one flat
# record built once from the measurement and the decision; 1: the flat records before it carried a version.
# Versions 1 and 2 (and the flat cases of a JSON report) are read by converting them; a newer one is refused.
RECORD_VERSION = 3
# Verdict words, worst first: the summary shows the first one a case has.
SERIOUS_VERDICTS = ("REGRESSION", "MISMATCH", "BASELINE MISMATCH", "NO BASELINE", "DISPATCH CHANGED")


@dataclass(frozen=True)
class CaseIdentity:
    """Which case: the test, what it ran and on which GPU."""

    test_id: str
    backend: str | None
    device: str  # the GPU model's name
    device_slug: str  # the name the baseline files use
    mode: str
    shape: dict[str, Any] | None
    seqlen: int | None
    device_id: str | None = None  # e.g. cuda:1: which GPU of the host (pytest-xdist worker gwN -> cuda:N)


@dataclass(frozen=True)
class MeasurementRecord:
    """What the case cost and did, as JSON values (``CaseMeasurement.record_fields`` fills it)."""

    fits: bool = True
    reason: str | None = None  # why it does not fit, why no median was kept, or how it came to fit
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
    first_median_ms: float | None = None  # set when the case was measured again
    tflops: float | None = None
    bytes_moved: int | None = None  # Q read, the visible KV cache read once, O written (forward)
    gbps: float | None = None  # bytes_moved over the median
    bandwidth_share: float | None = None  # gbps over the device's measured copy bandwidth (CUDA)
    peak_bytes: int | None = None
    memory_free_bytes: int | None = None  # free device memory before the peak call: the headroom
    max_error: float | None = None
    error_budget: float | None = None
    equivalence_passed: bool | None = None
    mismatch: str | None = None
    calibration: dict[str, Any] | None = None  # this run's `attnperf calibrate` ladder and detection limit
    phases_ms: dict[str, float] = field(default_factory=dict)  # wall time of each step of the case (cost breakdown)


@dataclass(frozen=True)
class DecisionRecord:
    """What the gate decided, over every measurement of the case (``Decision.record`` adds each)."""

    verdicts: dict[str, str] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)  # each measurement's ratios and verdict
    notes: list[str] = field(default_factory=list)
    outcome: str = "passed"
    baseline_file: str | None = None
    baseline_median_ms: float | None = None
    baseline_peak_bytes: int | None = None
    detection_limit: float | None = None  # from the baseline (attnperf calibrate)
    tolerance: float | None = None  # the threshold the latency was gated at
    normalised_median_ms: float | None = None  # the median at the baseline's clock
    median_clock_mhz: float | None = None
    clock_ref_mhz: float | None = None
    beta: float | None = None
    beta_source: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Where and how the case was measured: what a baseline written from it records."""

    environment: dict[str, Any] = field(default_factory=dict)  # the software versions
    device_info: dict[str, Any] | None = None  # DeviceInfo.as_dict() of the process that measured
    session_gpu_state: dict[str, Any] | None = None  # that process's GPU state at session start
    plugin_version: str | None = None
    timing_settings: dict[str, Any] | None = None
    clock: str | None = None  # the timer: cuda-events, cuda-graph-events or perf_counter


PARTS = {
    "identity": CaseIdentity,
    "measurement": MeasurementRecord,
    "decision": DecisionRecord,
    "provenance": Provenance,
}
# Which part each flat field (record versions 1 and 2, the JSON report) belongs to.
PART_OF = {item.name: part for part, kind in PARTS.items() for item in fields(kind)}
KNOWN = {part: {item.name for item in fields(kind)} for part, kind in PARTS.items()}
REQUIRED = tuple(item.name for item in fields(CaseIdentity) if item.name != "device_id")
Check = Callable[[Any], bool]


def _check_of(hint: Any) -> Check:
    """Whether a JSON value has the declared type; a number must be finite (the plugin never writes NaN or inf).

    Built once per field: a record is read for every case (the xdist controller, each stored report)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return all_finite
    if origin in (typing.Union, types.UnionType):
        checks = [_check_of(arg) for arg in args]
        if len(args) == 2 and args[1] is type(None):  # X | None, the common case, in one call
            check = checks[0]
            return lambda value: value is None or check(value)
        return lambda value: any(check(value) for check in checks)
    if hint is type(None):
        return lambda value: value is None
    if hint is bool or hint is str:
        return lambda value: isinstance(value, hint)
    if hint is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return lambda value: (
            (isinstance(value, float) and math.isfinite(value))
            or (isinstance(value, int) and not isinstance(value, bool))
        )
    if origin is list:
        item = _check_of(args[0])
        return lambda value: isinstance(value, list) and all(map(item, value))
    if origin is dict:
        item = _check_of(args[1])
        return lambda value: (
            isinstance(value, dict) and all(isinstance(key, str) and item(entry) for key, entry in value.items())
        )
    raise TypeError(f"no JSON check for the type {hint!r}")  # a new field's type: teach this function


def all_finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a JSON value (its lists and objects searched)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(all_finite(item) for item in value)
    if isinstance(value, dict):
        return all(all_finite(item) for item in value.values())
    return True


# Each field's declared type and its check, run on every record read back: a hand-edited or foreign record is
# refused by field rather than failing later, deep in the gate or the baseline update, on a value it never expected.
HINTS = {part: typing.get_type_hints(kind) for part, kind in PARTS.items()}
CHECKS = {part: {name: _check_of(hint) for name, hint in hints.items()} for part, hints in HINTS.items()}


def _part(part: str, values: Mapping[str, Any], test_id: object) -> Any:
    """One part from its JSON fields (unknown ones ignored: a later record may add fields); a wrong type raises."""
    known = {key: value for key, value in values.items() if key in KNOWN[part]}
    for name, value in known.items():
        hint = HINTS[part][name]
        if not CHECKS[part][name](value):
            expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ValueError(
                f"an attnperf record whose {part} field {name!r} is {json.dumps(value)[:80]} (test {test_id!r}); "
                f"expected {expected}"
                + ("" if all_finite(value) else ", every number finite")
                + ": not a case record written by pytest-attnperf"
            )
    return PARTS[part](**known)


def _identity(values: Mapping[str, Any]) -> CaseIdentity:
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        raise ValueError(
            f"an attnperf record without {', '.join(missing)} (test {values.get('test_id')!r}): not a case record "
            "written by pytest-attnperf"
        )
    identity: CaseIdentity = _part("identity", values, values.get("test_id"))
    return identity


@dataclass(frozen=True)
class CaseRecord:
    """One test's record: who it is, what was measured, what the gate decided, and where it was measured.

    Frozen: each step makes a new record (``dataclasses.replace`` of a part) instead of writing into the last."""

    identity: CaseIdentity
    measurement: MeasurementRecord = field(default_factory=MeasurementRecord)
    decision: DecisionRecord = field(default_factory=DecisionRecord)
    provenance: Provenance = field(default_factory=Provenance)
    record_version: int = RECORD_VERSION

    # ------------------------------------------------------------ what a test reads of its own record
    # (``result = attnperf.measure(...)``: the README's examples; the plugin itself reads the parts)

    @property
    def fits(self) -> bool:
        return self.measurement.fits

    @property
    def median_ms(self) -> float | None:
        return self.measurement.median_ms

    @property
    def peak_bytes(self) -> int | None:
        return self.measurement.peak_bytes

    @property
    def tflops(self) -> float | None:
        return self.measurement.tflops

    @property
    def gbps(self) -> float | None:
        return self.measurement.gbps

    @property
    def seqlen(self) -> int | None:
        return self.identity.seqlen

    @property
    def shape(self) -> dict[str, Any] | None:
        return self.identity.shape

    # ------------------------------------------------------------ derived

    @property
    def latency_ratio(self) -> float | None:
        """Raw median over the baseline centre."""
        median, baseline = self.measurement.median_ms, self.decision.baseline_median_ms
        return None if median is None or not baseline else median / baseline

    @property
    def normalised_ratio(self) -> float | None:
        """Median at the baseline's clock over the baseline centre: what the gate decides on."""
        median, baseline = self.decision.normalised_median_ms, self.decision.baseline_median_ms
        return None if median is None or not baseline else median / baseline

    @property
    def memory_ratio(self) -> float | None:
        peak, baseline = self.measurement.peak_bytes, self.decision.baseline_peak_bytes
        return None if peak is None or not baseline else peak / baseline

    def verdict(self) -> str:
        """One word for the summary: the worst of the checks."""
        values = set(self.decision.verdicts.values())
        if not self.measurement.fits and "REGRESSION" not in values:
            return "does not fit"
        for word in SERIOUS_VERDICTS:
            if word in values:
                return word.lower() if word == "NO BASELINE" else word
        for word in ("newly fits", "not gated"):
            if word in values:
                return word
        return "ok" if self.decision.outcome == "passed" else self.decision.outcome

    # ------------------------------------------------------------ building

    def with_fields(self, **values: Any) -> CaseRecord:
        """A new record with these fields set, each in its part (``measure/case.py`` hands its fields by name)."""
        changes: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name not in PART_OF:
                raise TypeError(f"a case record has no field {name!r}")
            changes.setdefault(PART_OF[name], {})[name] = value
        return replace(self, **{part: replace(getattr(self, part), **new) for part, new in changes.items()})

    @classmethod
    def from_flat(cls, data: Mapping[str, Any]) -> CaseRecord:
        """A record from flat fields (records of versions 1 and 2, a JSON report's case); other keys are ignored."""
        parts: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        for name, value in data.items():
            if name in PART_OF:
                parts[PART_OF[name]][name] = value
        identity = _identity(parts["identity"])
        return cls(
            identity=identity,
            measurement=_part("measurement", parts["measurement"], identity.test_id),
            decision=_part("decision", parts["decision"], identity.test_id),
            provenance=_part("provenance", parts["provenance"], identity.test_id),
            record_version=int(data.get("record_version", 1)),
        )

    # ------------------------------------------------------------ JSON

    def flat(self) -> dict[str, Any]:
        """Every field at one level, as the JSON report shows a case (the layout of record versions 1 and 2)."""
        data: dict[str, Any] = {}
        for part in PARTS:
            data.update(asdict(getattr(self, part)))
        data["record_version"] = self.record_version
        return data

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CaseRecord:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRecord:
        """A record from its JSON form: nested (version 3) or flat (versions 1 and 2, a JSON report's case).

        Anything else raises ValueError naming the test and what is wrong: not an object, a version other than
        1 to 3, a part of a version-3 record missing or not an object, a field of the wrong type or not finite."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an attnperf record that is a JSON {type(data).__name__}, not an object")
        nested = "identity" in data
        version = data.get("record_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= RECORD_VERSION:
            who = data["identity"] if nested and isinstance(data["identity"], Mapping) else data
            newer = isinstance(version, int) and not isinstance(version, bool) and version > RECORD_VERSION
            raise ValueError(
                f"an attnperf record of version {version!r} (test {who.get('test_id')!r}): this pytest-attnperf "
                f"reads versions 1 to {RECORD_VERSION}"
                + ("; upgrade it (every process of a run must use the same version)" if newer else "")
            )
        if not nested:
            return cls.from_flat({**data, "record_version": version})
        identity = _identity(data["identity"] if isinstance(data["identity"], Mapping) else {})
        broken = [part for part in PARTS if not isinstance(data.get(part), Mapping)]
        if broken:
            raise ValueError(
                f"an attnperf record of version {version} without its {', '.join(broken)} as an object "
                f"(test {identity.test_id!r}): a version-{RECORD_VERSION} record has all of "
                f"{', '.join(PARTS)}; not a case record written by pytest-attnperf"
            )
        parts = {part: _part(part, data[part], identity.test_id) for part in PARTS if part != "identity"}
        return cls(identity, **parts, record_version=version)

    def junit_properties(self) -> list[tuple[str, object]]:
        """Flat properties that CI systems show next to the test case."""
        measurement, decision = self.measurement, self.decision
        pairs: list[tuple[str, object]] = [
            ("attnperf_backend", self.identity.backend),
            ("attnperf_device", self.identity.device),
            ("attnperf_median_ms", measurement.median_ms),
            ("attnperf_baseline_ms", decision.baseline_median_ms),
            ("attnperf_ratio", None if self.latency_ratio is None else round(self.latency_ratio, 4)),
            ("attnperf_normalised_ratio", None if self.normalised_ratio is None else round(self.normalised_ratio, 4)),
            ("attnperf_clock_mhz", None if decision.median_clock_mhz is None else round(decision.median_clock_mhz, 1)),
            ("attnperf_tolerance", decision.tolerance),
            ("attnperf_peak_bytes", measurement.peak_bytes),
            ("attnperf_baseline_peak_bytes", decision.baseline_peak_bytes),
            ("attnperf_tflops", measurement.tflops),
            ("attnperf_gbps", measurement.gbps),
            ("attnperf_verdict", self.verdict()),
        ]
        return [(name, value) for name, value in pairs if value is not None]


CaseResult = CaseRecord  # its name before record version 3


def flat_record(*identity: Any, **values: Any) -> CaseRecord:
    """A record from fields by name, the identity's also in order (tests, replayed runs), as the flat record was built:
    ``flat_record("t.py::test", "eager", "cpu", "cpu", "forward", None, 64, median_ms=1.0)``; a misspelt name raises."""
    named = {**dict(zip([item.name for item in fields(CaseIdentity)], identity, strict=False)), **values}
    who = {name: named.pop(name) for name in KNOWN["identity"] if name in named}
    return CaseRecord(_identity(who)).with_fields(**named)
