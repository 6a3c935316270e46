"""The SM clock over exactly each sample: a timestamps kernel, or a fixed-cycle spin when Triton is missing.

``sm0-timestamps`` (NVBench's method, written with Triton's ``inline_asm_elementwise`` so no nvcc
is needed): a kernel of one single-warp program per SM; the program that lands on SM 0 writes
``%globaltimer`` (ns) and ``%clock64`` (cycles) into a slot of a device buffer. One stamp is
queued before a sample's start event and one after its end event, on the same stream, so the
pair brackets exactly that sample; the clock is d(cycles) / d(ns). The buffer is read once after
the samples. A slot left at 0 means no program ran on SM 0: that sample has no clock.

``sleep-spin`` (no Triton): right after the sample, two ``torch.cuda._sleep`` spins of 100k and
400k cycles are timed with events; the clock is their cycle difference over their time
difference (launch overhead cancels). Coarser: it reads the clock after the sample, not during
it, on one thread drawing little power.

``none``: no CUDA device; samples have no clock.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class ClockProbe(Protocol):
    source: str

    def prepare(self, count: int) -> None:
        """Make room for ``count`` samples (called before each batch)."""

    def before(self, index: int) -> None:
        """Queue what goes before sample ``index``'s start event."""

    def after(self, index: int) -> None:
        """Queue what goes after sample ``index``'s end event."""

    def read(self, count: int) -> list[float | None]:
        """Each sample's clock in MHz (None: not read); call after the stream has finished."""


def clock_mhz(ns_before: int, cycles_before: int, ns_after: int, cycles_after: int) -> float | None:
    """Cycles per microsecond between two stamps; None when a stamp is missing or the counters went backwards."""
    elapsed_ns, cycles = ns_after - ns_before, cycles_after - cycles_before
    if ns_before <= 0 or ns_after <= 0 or elapsed_ns <= 0 or cycles <= 0:
        return None
    return cycles / elapsed_ns * 1e3


class NoClock:
    source = "none"

    def prepare(self, count: int) -> None:
        pass

    def before(self, index: int) -> None:
        pass

    def after(self, index: int) -> None:
        pass

    def read(self, count: int) -> list[float | None]:
        return [None] * count


def _stamp_kernel() -> Any:
    from .stamp_kernel import stamp  # imports triton: only here

    return stamp


class StampProbe:
    """SM-0 timestamps around each sample, in one int64 device buffer read back once."""

    source = "sm0-timestamps"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.programs = int(torch.cuda.get_device_properties(device).multi_processor_count)
        self.kernel = _stamp_kernel()
        self.stamps = torch.zeros(2, dtype=torch.int64, device=device)
        self.missed = 0

    def prepare(self, count: int) -> None:
        if self.stamps.numel() < 4 * count:
            self.stamps = torch.zeros(4 * count, dtype=torch.int64, device=self.device)
        else:
            self.stamps.zero_()

    def _stamp(self, slot: int) -> None:
        self.kernel[(self.programs,)](self.stamps, slot, num_warps=1)

    def before(self, index: int) -> None:
        self._stamp(2 * index)

    def after(self, index: int) -> None:
        self._stamp(2 * index + 1)

    def read(self, count: int) -> list[float | None]:
        values = self.stamps[: 4 * count].view(count, 4).tolist()  # [ns, cycles] before, [ns, cycles] after
        clocks = [clock_mhz(*row) for row in values]
        self.missed += sum(clock is None for clock in clocks)
        return clocks


class SpinProbe:
    """Two fixed-cycle spins timed with events after each sample (when Triton is missing)."""

    source = "sleep-spin"
    SHORT, LONG = 100_000, 400_000

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.events: list[tuple[Any, Any, Any, Any]] = []

    def prepare(self, count: int) -> None:
        self.events = []

    def before(self, index: int) -> None:
        pass

    def after(self, index: int) -> None:
        marks = tuple(torch.cuda.Event(enable_timing=True) for _ in range(4))
        marks[0].record()
        torch.cuda._sleep(self.SHORT)
        marks[1].record()
        marks[2].record()
        torch.cuda._sleep(self.LONG)
        marks[3].record()
        self.events.append(marks)  # type: ignore[arg-type]

    def read(self, count: int) -> list[float | None]:
        clocks: list[float | None] = []
        for first, second, third, fourth in self.events[:count]:
            short_ms, long_ms = first.elapsed_time(second), third.elapsed_time(fourth)
            clocks.append((self.LONG - self.SHORT) / ((long_ms - short_ms) * 1e3) if long_ms > short_ms else None)
        return clocks


_probes: dict[torch.device, ClockProbe] = {}
_probe_notes: dict[torch.device, str] = {}


def probe_for(device: torch.device) -> ClockProbe:
    """This device's probe, made once: the stamp kernel if Triton compiles it and a stamp lands, else the spin."""
    if device in _probes:
        return _probes[device]
    probe: ClockProbe = NoClock()
    if device.type == "cuda":
        try:
            stamps = StampProbe(device)
            stamps.prepare(3)
            for index in range(3):  # one miss can happen (SM 0 busy): three tries before giving up on it
                stamps.before(index)
                torch.cuda._sleep(200_000)
                stamps.after(index)
            torch.cuda.synchronize(device)
            if not any(stamps.read(3)):
                raise RuntimeError("no stamp landed on SM 0")
            stamps.missed = 0
            probe = stamps
        except Exception as error:  # no triton, or a driver/compiler that refuses the kernel: the spin still works
            _probe_notes[device] = f"SM clock read with timed spins: the timestamps kernel is unavailable ({error})"
            probe = SpinProbe(device)
    _probes[device] = probe
    return probe


def probe_note(device: torch.device) -> str | None:
    """Why this device's clock is read the coarse way, if it is."""
    return _probe_notes.get(device)
