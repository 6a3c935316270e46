"""What a baseline file holds (schema version 2) and how it is written as YAML. No I/O, no torch.

One file per GPU model. Each entry is one test's baseline, recorded from ``runs`` independent
processes: the centre (``latency_ms.median``, the geometric mean of the run medians, each
normalised to the clock ``clock_mhz``), the run medians themselves and their log standard
deviation ``spread``, the clock elasticity ``beta``, the GPUs that measured it, the plugin
version and the timing settings, and the dispatch fingerprint. Version-1 files are read (and
rewritten as version 2 on update); their quantiles are no longer used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER = (
    "# pytest-attnperf baselines for one GPU model. Written by `attnperf update` (or pytest --attnperf\n"
    "# --attnperf-update); review changes like code. Times in milliseconds, clocks in MHz, memory in bytes.\n"
)
REFERENCE_KEYS = ("ms", "clock_mhz", "power_w")  # the machine reference workload (measure/machine_reference.py)
LATENCY_KEYS = ("median", "raw_median", "iqr", "mean", "stdev", "min", "max", "samples")
ENTRY_KEYS = (
    "backend",
    "mode",
    "shape",
    "fits",
    "latency_ms",
    "runs",
    "run_medians_ms",
    "spread",
    "clock_mhz",
    "beta",
    "beta_ci",
    "energy_mj",
    "power_w",
    "power_spread",
    "reference",
    "peak_bytes",
    "fingerprint",
    "detection_limit",
    "gpu_uuids",
    "plugin_version",
    "timing",
    "recorded_at",
    "environment",
)


class BaselineFileError(ValueError):
    """A baseline file that cannot be used as it is."""

    def __init__(self, path: Path, problem: str, *, line: int | None = None, key: str | None = None) -> None:
        location = str(path) + (f":{line}" if line else "")
        where = f" at {key!r}" if key else ""
        super().__init__(f"baseline file {location}{where}: {problem}")
        self.path, self.line, self.key, self.problem = path, line, key, problem


@dataclass(frozen=True)
class BaselineEntry:
    """What one test measured when its baseline was recorded."""

    backend: str | None
    shape: Mapping[str, Any] | None
    mode: str
    latency_ms: Mapping[str, Any] | None
    peak_bytes: int | None
    fits: bool
    recorded_at: str
    environment: Mapping[str, Any]
    runs: int = 1
    run_medians_ms: tuple[float, ...] = ()
    spread: float | None = None  # log-sd of the run medians; None for a single run
    clock_mhz: float | None = None  # the SM clock the centre is normalised to (None: no clock read)
    beta: float | None = None  # how much time follows the clock, 0..1, up to 2 when its interval is over 1
    beta_ci: tuple[float, float] | None = None  # its 90 % interval, unclamped
    energy_mj: float | None = None  # old files: NVML energy per call over warm-up, spins and flushes (not used)
    power_w: float | None = None  # mean power over back-to-back calls alone (median of the runs)
    power_spread: float | None = None  # log-sd of that power between the runs
    reference: Mapping[str, Any] | None = None  # the machine reference measured next to the case: ms, clock_mhz
    fingerprint: Mapping[str, Any] | None = None  # the kernels that ran: {"families": [...], "variant": ...}
    detection_limit: float | None = None  # smallest slowdown `attnperf calibrate` saw caught here
    gpu_uuids: tuple[str, ...] = ()
    plugin_version: str | None = None
    timing: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.latency_ms and not self.run_medians_ms and self.runs == 1:
            object.__setattr__(self, "run_medians_ms", (float(self.latency_ms["median"]),))  # one run: its own

    def as_yaml(self) -> dict[str, Any]:
        latency = (
            {key: self.latency_ms[key] for key in LATENCY_KEYS if key in self.latency_ms} if self.latency_ms else None
        )
        data: dict[str, Any] = {
            "backend": self.backend,
            "mode": self.mode,
            "shape": _plain(self.shape),
            "fits": self.fits,
            "latency_ms": latency,
            "runs": self.runs,
            "run_medians_ms": list(self.run_medians_ms),
            "spread": self.spread,
            "clock_mhz": self.clock_mhz,
            "beta": self.beta,
            "beta_ci": list(self.beta_ci) if self.beta_ci is not None else None,
            "energy_mj": self.energy_mj,
            "power_w": self.power_w,
            "power_spread": self.power_spread,
            "reference": _plain(self.reference),
            "peak_bytes": self.peak_bytes,
            "fingerprint": _plain(self.fingerprint),
            "detection_limit": self.detection_limit,
            "gpu_uuids": list(self.gpu_uuids),
            "plugin_version": self.plugin_version,
            "timing": _plain(self.timing),
            "recorded_at": self.recorded_at,
            "environment": _plain(self.environment),
        }
        optional = ("energy_mj", "power_w", "power_spread", "reference", "fingerprint", "detection_limit")
        return {key: value for key, value in data.items() if value is not None or key not in optional}

    @property
    def median_ms(self) -> float | None:
        return float(self.latency_ms["median"]) if self.latency_ms else None

    def problem(self) -> dict[str, Any]:
        """What was measured: backend, mode and shape (the gate compares them with the run's)."""
        return {"backend": self.backend, "mode": self.mode, "shape": dict(self.shape) if self.shape else None}


def _plain(value: Any) -> Any:
    """Mappings as dicts and tuples as lists, recursively: plain YAML, no Python tags."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass
class BaselineFile:
    """The parsed contents of one GPU model's baseline file."""

    path: Path
    device: dict[str, Any]
    environment: dict[str, Any]
    entries: dict[str, BaselineEntry] = field(default_factory=dict)
    version: int = SCHEMA_VERSION  # the version read; always written as SCHEMA_VERSION

    def to_text(self) -> str:
        document = {
            "schema_version": SCHEMA_VERSION,
            "device": _plain(self.device),
            "environment": _plain(self.environment),
            "entries": {test_id: self.entries[test_id].as_yaml() for test_id in sorted(self.entries)},
        }
        return HEADER + dump_yaml(document)

    def __eq__(self, other: object) -> bool:  # the version read is not part of the contents
        if not isinstance(other, BaselineFile):
            return NotImplemented
        return (self.path, self.device, self.environment, self.entries) == (
            other.path,
            other.device,
            other.environment,
            other.entries,
        )


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Lists on one line (one changed entry is one changed line in a diff); never anchors or aliases,
    which the reader refuses (a shared object would otherwise be written as &id001 / *id001)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_yaml(document: Any) -> str:
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True))


def round_significant(value: float, digits: int = 4) -> float:
    """Keep baselines diff-friendly: 4 significant digits are far below run-to-run noise."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))
