"""How the machine moved since a baseline was recorded, from a fixed reference workload (torch-free).

A case's SM clock falls for two reasons: the machine's (its temperature, its unit, its power
limit, a neighbour) and the kernel's own (a kernel that draws more energy per cycle lowers the
clock at the power cap by itself). Only the machine's part may be normalised away. The machine is
measured by a reference workload that never changes (``measure/machine_reference.py``: a dense
matmul loop at the power cap), next to the case, when the baseline is recorded and when it is
gated. Its clock ratio (now over then) is the clock the machine explains; its time ratio beyond
what that clock explains (``residual``: time ratio x clock ratio, the reference being
compute-bound) is the unit's own offset, which applies to every case, but only on another unit
than the baseline's: on the same unit a slower reference means a slower software stack (a
matmul library in a torch upgrade), which must excuse nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RESIDUAL_LIMITS = (0.9, 1.1)  # a reference slower or faster than this at its clock: another kind of machine
CLOCK_LIMITS = (0.8, 1.25)  # the same extrapolation limits the power law has


@dataclass(frozen=True)
class Reference:
    """One reading of the reference workload: time per matmul (ms), its SM clock and its mean power."""

    ms: float
    clock_mhz: float | None = None
    power_w: float | None = None

    def as_dict(self) -> dict[str, float]:
        data = {"ms": self.ms, "clock_mhz": self.clock_mhz, "power_w": self.power_w}
        return {key: value for key, value in data.items() if value is not None}


def reference_of(data: Mapping[str, Any] | None) -> Reference | None:
    """A Reference from its stored mapping; None for none or one without a positive time."""
    if not data:
        return None
    ms = data.get("ms")
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not ms > 0:
        return None

    def positive(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None

    return Reference(float(ms), positive("clock_mhz"), positive("power_w"))


@dataclass(frozen=True)
class MachineShift:
    """The reference now over the reference in the baseline's session."""

    time_ratio: float
    clock_ratio: float | None  # None: no clock was read (then the whole time ratio is the residual)

    @property
    def residual(self) -> float:
        """The reference's slowdown its clock does not explain (1.0: the same unit at another clock)."""
        return self.time_ratio * (self.clock_ratio or 1.0)

    def trusted(self, other_unit: bool) -> bool:
        """Within the limits where one machine is comparable with the other at all (the residual: another unit's)."""
        clock_ok = self.clock_ratio is None or CLOCK_LIMITS[0] <= self.clock_ratio <= CLOCK_LIMITS[1]
        return clock_ok and (not other_unit or RESIDUAL_LIMITS[0] <= self.residual <= RESIDUAL_LIMITS[1])

    def describe(self) -> str:
        clock = f"clock x{self.clock_ratio:.3f}, " if self.clock_ratio is not None else ""
        return f"the machine's reference workload ran at {clock}time x{self.time_ratio:.3f} of the baseline's"


def machine_shift(run: Reference | None, baseline: Reference | None) -> MachineShift | None:
    """The shift between two readings; None when either is missing."""
    if run is None or baseline is None:
        return None
    clock = run.clock_mhz / baseline.clock_mhz if run.clock_mhz and baseline.clock_mhz else None
    return MachineShift(run.ms / baseline.ms, clock)


def median_reference(readings: list[Reference]) -> Reference | None:
    """The element-wise median of several readings (a baseline's runs); None for none."""
    if not readings:
        return None

    def middle(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    ms = middle([reading.ms for reading in readings])
    assert ms is not None
    return Reference(
        ms,
        middle([reading.clock_mhz for reading in readings]),
        middle([reading.power_w for reading in readings]),
    )


def other_unit(run_uuid: str | None, baseline_uuids: tuple[str, ...]) -> bool:
    """Whether the GPU that measured is known and not one the baseline was recorded on."""
    return bool(run_uuid) and bool(baseline_uuids) and run_uuid not in baseline_uuids


def unit_note(run_uuid: str | None, baseline_uuids: tuple[str, ...], shift: MachineShift | None) -> str | None:
    """Said when the GPU that measured is not one the baseline was recorded on."""
    if not other_unit(run_uuid, baseline_uuids):
        return None
    recorded = ", ".join(baseline_uuids)
    if shift is None:
        return (
            f"measured on {run_uuid}, the baseline on {recorded}: no machine reference in both, so nothing corrects "
            "a unit-to-unit offset (record the baseline with this plugin version)"
        )
    return f"measured on {run_uuid}, the baseline on {recorded}: {shift.describe()}, and that offset is normalised"
