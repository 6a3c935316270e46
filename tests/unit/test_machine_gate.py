"""The gate judged by the machine, simulated without a GPU: the power cap, beta over 1, a fleet of units.

Synthetic runs: each sample's time is ``t0 * (f0 / f) ** beta`` times the unit's offset and a little
noise; the machine reference (a compute-bound matmul, beta 1) moves with the machine's clock and the
unit's offset, never with the kernel under test. Every verdict goes through ``decide_latency`` with the
three stages the plugin uses (a first measurement, then re-measurements while ambiguous).
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

import pytest

from pytest_attnperf.gate.baselines import BaselineEntry
from pytest_attnperf.gate.latency import MACHINE_BAND, decide_latency
from pytest_attnperf.gate.machine import Reference, machine_shift, median_reference, reference_of, unit_note
from pytest_attnperf.gate.normalise import bounded_beta, fit_beta
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.gate.statistics import Verdict

F0 = 1662.6  # sdpa-cudnn 16K's baseline clock on the H200 (MHz)
REFERENCE_MS, REFERENCE_MHZ = 0.2, 1700.0


@dataclass(frozen=True)
class Machine:
    clock: float = 1.0  # the machine's clock at the cap, over the baseline session's
    offset: float = 1.0  # the unit's slowness at the same clock (1.025: 2.5 % slower across the board)
    uuid: str = "GPU-A"


def reference(machine: Machine, rng: random.Random) -> dict[str, float]:
    noise = math.exp(rng.gauss(0, 0.002))
    return {"ms": REFERENCE_MS / machine.clock * machine.offset * noise, "clock_mhz": REFERENCE_MHZ * machine.clock}


def run(
    rng: random.Random,
    machine: Machine,
    *,
    t0: float = 3.466,
    beta: float = 1.0,
    own_clock: float = 1.0,
    slowdown: float = 1.0,
    with_reference: bool = True,
) -> CaseRecord:
    """One measurement: ``own_clock`` is the kernel's own further clock drop (more energy per cycle at the cap)."""
    clocks = [F0 * machine.clock * own_clock * math.exp(rng.gauss(0, 0.002)) for _ in range(60)]
    times = [t0 * slowdown * machine.offset * (F0 / f) ** beta * math.exp(rng.gauss(0, 0.002)) for f in clocks]
    samples = times[20:]
    return flat_record(
        "t.py::test[sdpa-cudnn-16K]",
        "sdpa-cudnn",
        "NVIDIA H200",
        "nvidia-h200",
        "forward",
        None,
        16384,
        median_ms=sorted(samples)[len(samples) // 2],
        samples_ms=samples,
        clock_mhz=clocks[20:],
        warmup_ms=times[:20],
        warmup_clock_mhz=clocks[:20],
        gpu={"reference": reference(machine, rng)} if with_reference else {},
        device_info={"uuid": machine.uuid},
    )


def entry(
    *, t0: float = 3.466, beta: float | None = 1.0, ci: tuple[float, float] | None = (0.98, 1.02), ref: bool = True
) -> BaselineEntry:
    medians = (t0 * 0.998, t0, t0 * 1.002)
    return BaselineEntry(
        backend="sdpa-cudnn",
        shape=None,
        mode="forward",
        latency_ms={"median": math.exp(sum(map(math.log, medians)) / 3)},
        peak_bytes=1,
        fits=True,
        recorded_at="",
        environment={},
        runs=3,
        run_medians_ms=medians,
        spread=0.002,
        clock_mhz=F0,
        beta=beta,
        beta_ci=ci,
        gpu_uuids=("GPU-A",),
        reference={"ms": REFERENCE_MS, "clock_mhz": REFERENCE_MHZ} if ref else None,
    )


def verdict(baseline: BaselineEntry, measure: object) -> Verdict:
    """The plugin's stages: a first measurement, then a re-measurement while ambiguous (at most two)."""
    assert callable(measure)
    for stage in (1, 2, 3):
        decision = decide_latency(measure(), baseline, None, stage)
        if decision.verdict is not Verdict.AMBIGUOUS:
            return decision.verdict
    raise AssertionError("the third stage is never ambiguous")


# ---------------------------------------------------------------- the cap


@pytest.mark.parametrize("own_clock", [0.95, 0.92, 0.90, 0.85])
def test_a_kernel_that_lowers_its_own_clock_at_the_cap_is_caught(own_clock: float) -> None:
    """Same cycles, more energy per cycle: raw +5 % to +18 %; the old rule passed all of these (audit, section 3.2)."""
    rng = random.Random(int(own_clock * 100))
    baseline = entry()
    for _ in range(20):
        assert verdict(baseline, lambda: run(rng, Machine(), own_clock=own_clock)) is Verdict.REGRESSION


def test_the_old_rule_passed_the_same_kernel_which_is_why_the_reference_is_needed() -> None:
    """Without a machine reference the case's own clock excuses its own drop (the fallback, said in the notes)."""
    rng = random.Random(1)
    baseline = entry(ref=False)
    assert verdict(baseline, lambda: run(rng, Machine(), own_clock=0.92, with_reference=False)) is Verdict.PASS


@pytest.mark.parametrize("clock", [0.97, 0.98, 1.03])
def test_an_unchanged_kernel_on_a_hotter_or_cooler_machine_passes(clock: float) -> None:
    """The machine's clock moved (its reference too), within the band: that part is normalised away."""
    rng = random.Random(int(clock * 1000))
    baseline = entry()
    for _ in range(20):
        assert verdict(baseline, lambda: run(rng, Machine(clock=clock))) is Verdict.PASS


@pytest.mark.parametrize("machine_clock", [0.74, 0.81, 0.9])
def test_a_reference_reading_a_much_hotter_machine_excuses_no_more_than_the_band(machine_clock: float) -> None:
    """Live on an H100: the reference read x0.74 to x0.99 of its baseline's clock in one session while unchanged
    kernels at the cap stayed within x0.969; sdpa-cudnn on power-heavier inputs (its clock x0.91, +10 % in wall
    time) passed whenever the reading was low. The machine is credited with at most MACHINE_BAND."""
    rng = random.Random(int(machine_clock * 100))
    baseline = entry()
    for _ in range(20):
        heavier = lambda: run(rng, Machine(clock=machine_clock), own_clock=0.91 / machine_clock)  # noqa: E731
        assert verdict(baseline, heavier) is Verdict.REGRESSION
        unchanged = lambda: run(rng, Machine(clock=machine_clock), own_clock=0.975 / machine_clock)  # noqa: E731
        assert verdict(baseline, unchanged) is Verdict.PASS
    decision = decide_latency(run(rng, Machine(clock=machine_clock), own_clock=0.91 / machine_clock), baseline, None, 1)
    assert any(f"credited with at most a {MACHINE_BAND * 100:.0f} % lower clock" in note for note in decision.notes)
    assert decision.normalised_ratio == pytest.approx(decision.raw_ratio * (1 - MACHINE_BAND), rel=0.01)


def test_a_regression_at_a_higher_machine_clock_is_not_hidden() -> None:
    """+5 % more work on a machine 5 % faster in clock: normalised to the baseline's clock, still +5 %."""
    rng = random.Random(7)
    baseline = entry()
    for _ in range(20):
        assert verdict(baseline, lambda: run(rng, Machine(clock=1.05), slowdown=1.05)) is Verdict.REGRESSION


@pytest.mark.parametrize("machine_clock", [1.03, 1.06])
def test_a_cooler_machine_does_not_count_against_a_kernel_held_at_the_cap(machine_clock: float) -> None:
    """The first run of a CI job on a cool card: the reference clocks higher than in the baseline's session, the
    kernel at the power cap does not (its own clock is the baseline's). Replayed on three unchanged H100 record
    runs, a floor at the machine's higher clock failed a dozen capped kernels of the cooler first run."""
    rng = random.Random(int(machine_clock * 1000))
    baseline = entry()
    for _ in range(20):
        held = lambda: run(rng, Machine(clock=machine_clock), own_clock=1 / machine_clock)  # noqa: E731
        assert verdict(baseline, held) is Verdict.PASS


def test_on_a_cooler_machine_a_kernel_whose_own_clock_fell_is_still_caught() -> None:
    """The same cooler machine, the kernel's own clock 8 % under the baseline's (more energy per cycle): caught."""
    rng = random.Random(11)
    baseline = entry()
    for _ in range(20):
        heavier = lambda: run(rng, Machine(clock=1.06), own_clock=0.92 / 1.06)  # noqa: E731
        assert verdict(baseline, heavier) is Verdict.REGRESSION


# ---------------------------------------------------------------- beta over 1


def test_beta_over_one_is_kept_where_its_interval_is_over_one() -> None:
    assert bounded_beta(1.178, 1.174) == 1.178
    assert bounded_beta(1.178, 0.95) == 1.0  # not confidently over 1: the old bound
    assert bounded_beta(2.7, 2.4) == 2.0
    assert bounded_beta(-0.2, -0.4) == 0.0
    rng = random.Random(5)
    clocks = [F0 * (1.0 - 0.1 * i / 400) * math.exp(rng.gauss(0, 0.001)) for i in range(400)]
    times = [3.466 * (F0 / f) ** 1.2 * math.exp(rng.gauss(0, 0.001)) for f in clocks]
    fit = fit_beta(times, clocks)
    assert fit is not None
    assert fit.identified
    assert fit.low > 1
    assert fit.beta == pytest.approx(1.2, abs=0.03)


@pytest.mark.parametrize("clock", [0.85, 0.88, 0.92])
def test_the_cudnn_bias_the_clamp_left_is_gone(clock: float) -> None:
    """sdpa-cudnn 16K on the H200 fitted beta 1.178, interval [1.174, 1.219]; its time follows the clock with 1.2.

    Clamped to 1, an unchanged kernel at 0.85 of the clock measured (0.85) ** -0.2 = x1.033 normalised: a false
    alarm. Stored as fitted, or read from an old file whose beta was clamped below its own interval, it passes.
    The H200 file has no machine reference, so its cases are normalised by their own clock (the whole drop).
    """
    rng = random.Random(int(clock * 1000))
    fitted = entry(beta=1.178, ci=(1.174, 1.219), ref=False)
    old_file = entry(beta=1.0, ci=(1.174, 1.219), ref=False)  # the H200 file as committed: beta outside its interval
    clamped = entry(beta=1.0, ci=(0.99, 1.01), ref=False)  # the bias the old clamp left, for comparison
    biased = []

    def measure() -> CaseRecord:
        return run(rng, Machine(clock=clock), beta=1.2, with_reference=False)

    for _ in range(20):
        assert verdict(fitted, measure) is Verdict.PASS
        assert verdict(old_file, measure) is Verdict.PASS
        biased.append(decide_latency(measure(), clamped, None, 3).ratio)
    assert sorted(biased)[10] == pytest.approx(clock**-0.2, rel=0.01)
    if clock <= 0.85:
        assert verdict(clamped, measure) is Verdict.REGRESSION


# ---------------------------------------------------------------- the fleet


FLEET_CASES = [(t0, beta) for t0 in (0.02, 0.3, 3.5) for beta in (0.0, 0.5, 1.0)]


@pytest.mark.parametrize("offset", [1.02, 1.03])
@pytest.mark.parametrize("clock", [1.0, 0.97])
def test_a_unit_slower_across_the_board_raises_no_false_alarm(offset: float, clock: float) -> None:
    """Another unit of the model, 2-3 % slower in everything (the reference too), at the same or a lower clock."""
    rng = random.Random(int(offset * 1000 + clock * 100))
    unit = Machine(clock=clock, offset=offset, uuid="GPU-B")
    for t0, beta in FLEET_CASES:
        baseline = entry(t0=t0, beta=beta if beta else None, ci=(beta - 0.02, beta + 0.02) if beta else None)
        for _ in range(10):
            assert verdict(baseline, lambda t0=t0, beta=beta: run(rng, unit, t0=t0, beta=beta)) is Verdict.PASS


def test_without_the_reference_the_same_unit_fails_and_with_it_a_regression_is_still_caught() -> None:
    """A unit 6 % slower (past the fleet's allowance) fails a memory-bound case (beta 0: no clock excuses it) unless
    the reference says why."""
    rng = random.Random(11)
    unit = Machine(offset=1.06, uuid="GPU-B")
    no_reference = entry(t0=0.3, beta=None, ci=None, ref=False)
    assert verdict(no_reference, lambda: run(rng, unit, t0=0.3, beta=0.0, with_reference=False)) is Verdict.REGRESSION
    baseline = entry(t0=0.3, beta=None, ci=None)
    for _ in range(20):
        assert verdict(baseline, lambda: run(rng, unit, t0=0.3, beta=0.0, slowdown=1.05)) is Verdict.REGRESSION


def test_a_short_step_a_few_microseconds_slower_on_another_unit_passes_there_and_fails_on_its_own() -> None:
    """FlexAttention decode at 1K, 19.4 us on the recording unit, measured 2.45 us slower on another at the same
    clock (a constant offset the reference cannot see): no false alarm from the fleet; on the recording unit the same
    step 12 % slower is a regression, and so is a 6 % slowdown of a long step on the other unit (past its 4.5 % line)."""
    rng = random.Random(5)
    short = entry(t0=0.0194, beta=None, ci=None)
    slower = (0.0194 + 0.00245) / 0.0194
    other = Machine(uuid="GPU-B")
    for _ in range(10):
        assert verdict(short, lambda: run(rng, other, t0=0.0194, beta=0.0, slowdown=slower)) is Verdict.PASS
        assert verdict(short, lambda: run(rng, Machine(), t0=0.0194, beta=0.0, slowdown=slower)) is Verdict.REGRESSION
    long_step = entry(t0=3.466, beta=None, ci=None)
    for _ in range(10):
        assert verdict(long_step, lambda: run(rng, other, beta=0.0, slowdown=1.06)) is Verdict.REGRESSION
    notes = decide_latency(run(rng, other, t0=0.0194, beta=0.0), short, None, 1).notes
    assert any("units also differ by about 1.0 us a step, 5.2 % of this one" in note for note in notes)
    assert not any("us a step" in note for note in decide_latency(run(rng, other, beta=0.0), long_step, None, 1).notes)


def test_another_unit_is_named_in_the_notes() -> None:
    rng = random.Random(2)
    decision = decide_latency(run(rng, Machine(offset=1.02, uuid="GPU-B")), entry(), None, 1)
    (note,) = [note for note in decision.notes if "GPU-B" in note]
    assert "the baseline on GPU-A" in note
    assert decision.tolerance.fleet
    assert any(
        "on another unit than the baseline's; a baseline recorded on this unit gates it at 3.0 %" in note
        for note in decision.notes
    )
    assert not decide_latency(run(rng, Machine(uuid="GPU-A")), entry(), None, 1).tolerance.fleet
    assert "at a like clock) is normalised" in note
    shift = machine_shift(reference_of({"ms": 0.306}), reference_of({"ms": 0.3}))
    assert unit_note("GPU-B", ("GPU-A",), None) is not None
    assert "nothing corrects" in str(unit_note("GPU-B", ("GPU-A",), None))
    assert unit_note("GPU-A", ("GPU-A",), shift) is None


def test_a_machine_too_unlike_the_baselines_is_gated_raw_and_said() -> None:
    rng = random.Random(3)
    decision = decide_latency(run(rng, Machine(offset=1.15, uuid="GPU-B")), entry(), None, 3)
    assert decision.verdict is Verdict.REGRESSION
    assert decision.decided_by == "raw"
    assert any("too far to compare the machines" in note for note in decision.notes)


def test_on_the_same_unit_a_slower_reference_excuses_nothing() -> None:
    """A torch upgrade that slows the matmul library slows the reference too: on the baseline's own unit that
    must not excuse a kernel slowed by the same upgrade."""
    rng = random.Random(12)
    same_unit = Machine(offset=1.05, uuid="GPU-A")
    for _ in range(10):
        assert verdict(entry(), lambda: run(rng, same_unit)) is Verdict.REGRESSION
    other_unit = Machine(offset=1.05, uuid="GPU-B")
    assert verdict(entry(), lambda: run(rng, other_unit)) is Verdict.PASS


def test_a_baselines_readings_are_one_reading_the_middle_by_clock() -> None:
    """A reading's time goes with its clock: the middle time of one reading beside the middle clock of another
    would be a machine nobody measured."""
    readings = [Reference(0.1800, 1602.0, 700.0), Reference(0.2083, 1348.0, 690.0), Reference(0.1781, 1560.0, 650.0)]
    assert median_reference(readings) == readings[2]
    assert median_reference(readings[:2]) == readings[1]  # the lower middle of an even count
    assert median_reference([]) is None
    assert median_reference([Reference(0.2), Reference(0.3), Reference(0.25)]) == Reference(0.25)
    assert median_reference([Reference(0.3), Reference(0.2, 1500.0)]) == Reference(0.2, 1500.0)


def test_the_units_offset_is_read_only_at_a_like_clock() -> None:
    """Readings of three H100 units (December 2026): the reference's time x clock was 281 k MHz ms at the cap on
    every unit and 288 at a cool session's start (1,600 MHz). A baseline read at the start against a run read at the
    cap on another unit made an offset of x0.973 and judged every case 2.7 % slower than it ran."""
    session_start, at_cap = Reference(288.6 / 1599.2, 1599.2), Reference(281.5 / 1362.1, 1362.1)
    other_unit_at_cap = Reference(280.9 / 1351.9, 1351.9)
    far = machine_shift(other_unit_at_cap, session_start)
    assert far is not None
    assert far.cycles_ratio == pytest.approx(0.973, abs=0.001)
    assert far.residual == 1.0
    assert far.trusted(True)
    note = unit_note("GPU-B", ("GPU-A",), far)
    assert note is not None
    assert "too far apart" in note
    assert "none is normalised" in note
    like = machine_shift(other_unit_at_cap, at_cap)
    assert like is not None
    assert like.residual == pytest.approx(280.9 / 281.5)
    assert "at a like clock) is normalised" in str(unit_note("GPU-B", ("GPU-A",), like))
    slower_unit = machine_shift(Reference(1.03 * 281.5 / 1340.0, 1340.0), at_cap)
    assert slower_unit is not None
    assert slower_unit.residual == pytest.approx(1.03)


@pytest.mark.parametrize("run_clock", [1351.9, 1450.0])
def test_an_unchanged_kernel_at_full_clock_on_another_unit_is_judged_on_its_own_time(run_clock: float) -> None:
    """The fifth H100 unit's first gated run: eager 16K ran at the baseline's clock, raw x1.001, and was judged
    x1.027 through the offset of two reference readings 15 % apart in clock."""
    rng = random.Random(int(run_clock))
    baseline = dataclasses.replace(
        entry(t0=3.4, beta=None, ci=None), reference={"ms": 288.6 / 1599.2, "clock_mhz": 1599.2}
    )
    record = run(rng, Machine(uuid="GPU-B"), t0=3.4, beta=0.0)
    reading = {"reference": {"ms": 280.9 / run_clock, "clock_mhz": run_clock}}
    record = dataclasses.replace(record, measurement=dataclasses.replace(record.measurement, gpu=reading))
    decision = decide_latency(record, baseline, None, 1)
    assert decision.ratio == pytest.approx(decision.raw_ratio)
    assert decision.verdict is Verdict.PASS
