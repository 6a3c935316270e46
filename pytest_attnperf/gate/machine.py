"""How the machine moved since a baseline was recorded, from a fixed reference workload (torch-free).

A case's SM clock falls for two reasons: the machine's (its temperature, its unit, its power
limit, a neighbour) and the kernel's own (a kernel that draws more energy per cycle lowers the
clock at the power cap by itself). Only the machine's part may be normalised away. The machine is
measured by a reference workload that never changes (``measure/machine_reference.py``: a dense
matmul loop at the power cap), next to the case, when the baseline is recorded and when it is
gated. Its clock ratio (now over then) is the clock the machine explains; its time ratio beyond
what that clock explains (``residual``: time ratio x clock ratio, the reference being
compute-bound) is the unit's own offset, which applies to every case, but only on another unit
than the baseline's (on the same unit a slower reference means a slower software stack, a
matmul library in a torch upgrade, which must excuse nothing), and only between readings at a
like clock (``LIKE_CLOCK``: the reference's time follows its clock only roughly, so readings far
apart in clock would make an offset of the same silicon).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RESIDUAL_LIMITS = (0.9, 1.1)  # a reference slower or faster than this at its clock: another kind of machine
# The unit's offset is read only between readings this close in clock. The reference's time does not follow its clock
# exactly: on three H100 units its time x clock was 281 (k MHz ms) at the cap (1,100-1,400 MHz) on every unit, 288 at
# a cool session's start (1,600 MHz), so readings 15 % apart in clock made a 2.7 % "offset" of the same silicon.
LIKE_CLOCK = 0.05


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
    def cycles_ratio(self) -> float:
        """The reference's time ratio at its clock (time x clock): the comparability check reads it."""
        return self.time_ratio * (self.clock_ratio or 1.0)

    @property
    def like_clock(self) -> bool:
        return self.clock_ratio is None or abs(self.clock_ratio - 1) <= LIKE_CLOCK

    @property
    def residual(self) -> float:
        """The unit's slowdown at the same clock (1.0: the same unit at another clock), normalised on another unit;
        1.0 where the two readings' clocks are too far apart to tell it from the reference's own clock dependence."""
        return self.cycles_ratio if self.like_clock else 1.0

    def trusted(self, other_unit: bool) -> bool:
        """Whether one machine is comparable with the other at all: another unit's reference within RESIDUAL_LIMITS
        at its clock. (Its clock alone decides nothing here: the gate credits the machine with a bounded share.)"""
        return not other_unit or RESIDUAL_LIMITS[0] <= self.cycles_ratio <= RESIDUAL_LIMITS[1]

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
    """Several readings (a baseline's runs) as one: the reading whose clock is the median (the lower middle of an
    even count), its time and power with it; by time where no reading has a clock. None for none.

    A reading's time goes with its clock: the middle time of one reading beside the middle clock of another is a
    machine nobody measured.
    """
    if not readings:
        return None
    clocked = [reading for reading in readings if reading.clock_mhz is not None]
    if clocked:
        return sorted(clocked, key=lambda reading: reading.clock_mhz or 0.0)[(len(clocked) - 1) // 2]
    return sorted(readings, key=lambda reading: reading.ms)[(len(readings) - 1) // 2]


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
    if not shift.like_clock:
        return (
            f"measured on {run_uuid}, the baseline on {recorded}: {shift.describe()}; their clocks are too far apart "
            "to read the unit's offset, so none is normalised"
        )
    return (
        f"measured on {run_uuid}, the baseline on {recorded}: {shift.describe()}, and that offset "
        f"(x{shift.residual:.3f} at a like clock) is normalised"
    )
