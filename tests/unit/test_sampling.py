"""Warm-up until steady, throttled samples discarded with a growing pause, sampling until the median is known;
the clock read from SM-0 stamps; NVML per case; all with fakes, on the CPU."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pytest_attnperf.measure import clock, nvml
from pytest_attnperf.measure.sampling import (
    EXTEND_FACTOR,
    FIRST_PAUSE_S,
    MAX_PAUSE_S,
    MIN_BUSY_MS,
    PAUSE_GROWTH,
    PRECISION,
    Sample,
    collect,
    median_half_width,
    sample_count,
    throttle_threshold,
    warm_up,
)
from pytest_attnperf.measure.timing import CPU_REP_CAP_MS, CudaSource, lead_for, time_cpu, timed
from pytest_attnperf.spec.options import TimingConfig


class Scripted:
    """A sample source that replays (time, clock) pairs, the last one forever."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples, self.taken = samples, 0

    def take(self, count: int) -> list[Sample]:
        out = [self.samples[min(self.taken + i, len(self.samples) - 1)] for i in range(count)]
        self.taken += count
        return out


def boost_then_cap(time_ms: float, steps: int) -> list[Sample]:
    """The heavy kernel's story: fast at boost clock for ``steps`` samples, then 8 % slower at the cap."""
    fast = [Sample(time_ms, 1980.0)] * steps
    return [*fast, Sample(time_ms * 1.08, 1980.0 / 1.08)]


def fake_clock() -> Iterator[float]:
    now = 0.0
    while True:
        yield now
        now += 1e-4


def test_warm_up_waits_out_the_step_to_the_power_cap() -> None:
    source = Scripted(boost_then_cap(5.0, steps=12))  # 60 ms of boost: under the 100 ms minimum for a 5 ms kernel
    ticks = fake_clock()
    result = warm_up(source, cap_ms=10_000, gpu=True, now=lambda: next(ticks))
    assert result.steady
    assert result.samples[-1].time_ms == pytest.approx(5.4)
    assert sum(sample.time_ms for sample in result.samples) >= MIN_BUSY_MS
    assert result.time_spread == pytest.approx(0.0)
    assert len(result.samples) >= 12 + 5  # five settled blocks after the step


def test_a_short_kernel_is_steady_without_100_ms_of_load() -> None:
    ticks = fake_clock()
    result = warm_up(Scripted([Sample(0.05, 1900.0)]), cap_ms=10_000, gpu=True, now=lambda: next(ticks))
    assert result.steady
    assert sum(sample.time_ms for sample in result.samples) < MIN_BUSY_MS


def test_a_warm_up_that_never_settles_stops_at_its_cap_and_says_so() -> None:
    wobble = [Sample(5.0 if i % 2 else 5.5, 1800.0) for i in range(10_000)]
    ticks = fake_clock()
    result = warm_up(Scripted(wobble), cap_ms=5.0, gpu=True, now=lambda: next(ticks))
    assert not result.steady
    assert result.wall_ms >= 5.0
    assert result.time_spread is not None
    assert result.time_spread > 0.01


def test_a_cpu_is_allowed_more_jitter_than_a_gpu() -> None:
    jitter = [Sample(1.0 + 0.02 * ((i // 2) % 2), None) for i in range(10_000)]  # blocks alternate by 2 %
    ticks = fake_clock()
    assert warm_up(Scripted(jitter), cap_ms=1e9, gpu=False, now=lambda: next(ticks)).steady
    ticks = fake_clock()
    assert not warm_up(Scripted(jitter), cap_ms=50.0, gpu=True, now=lambda: next(ticks)).steady


@pytest.mark.parametrize(("estimate", "count"), [(0.001, 500), (0.5, 200), (50.0, 10), (1e9, 10)])
def test_a_cpus_first_batch_is_rep_ms_of_samples(estimate: float, count: int) -> None:
    assert sample_count(estimate, 100.0, 10, 500) == count


def test_the_medians_interval_comes_from_order_statistics() -> None:
    # n = 10: the interval runs from the 2nd to the 9th smallest value (97.9 % coverage, the first >= 95 %).
    values = [float(v) for v in range(1, 11)]  # median 5.5
    assert median_half_width(values) == pytest.approx((9 - 2) / 2 / 5.5)
    assert median_half_width([1.0] * 5) == math.inf  # five values cannot give a 95 % interval
    assert median_half_width([2.0] * 6) == 0.0
    assert median_half_width([]) == math.inf


def test_throttle_threshold_is_75_percent_of_the_maximum_clock() -> None:
    assert throttle_threshold(1980.0, []) == pytest.approx(1485.0)
    assert throttle_threshold(None, [Sample(1.0, 1800.0), Sample(1.0, 1900.0)]) == pytest.approx(1425.0)
    assert throttle_threshold(None, [Sample(1.0, None)]) is None


class ThrottledFor:
    """Every sample of the first ``calls`` calls of take() is throttled; then the clock is back."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def take(self, count: int) -> list[Sample]:
        self.calls -= 1
        return [Sample(1.0, 1000.0 if self.calls >= 0 else 1900.0)] * count


def test_throttled_samples_are_discarded_and_the_pause_grows() -> None:
    source = ThrottledFor(3)
    pauses: list[float] = []
    result = collect(source, 10, threshold_mhz=1485.0, rep_ms=1e9, max_samples=500, sleep=pauses.append)
    assert len(result.kept) == 10
    assert all(sample.clock_mhz == 1900.0 for sample in result.kept)
    assert [round(pause, 4) for pause in pauses] == [
        FIRST_PAUSE_S,
        round(FIRST_PAUSE_S * PAUSE_GROWTH, 4),
        round(FIRST_PAUSE_S * PAUSE_GROWTH**2, 4),
    ]
    assert result.paused_s == pytest.approx(sum(pauses))
    assert not result.exhausted


def test_a_gpu_that_stays_throttled_gives_an_explicit_short_result_never_an_endless_loop() -> None:
    pauses: list[float] = []
    result = collect(
        Scripted([Sample(1.0, 500.0)]), 10, threshold_mhz=1485.0, rep_ms=1e9, max_samples=500, sleep=pauses.append
    )
    assert result.exhausted
    assert result.kept == []
    assert result.discarded
    assert max(pauses) <= MAX_PAUSE_S
    assert sum(pauses) <= 2.0


def test_a_noisy_median_gets_more_samples_within_three_times_the_sampling_time() -> None:
    noisy = [Sample(1.0 + 0.1 * math.sin(i), None) for i in range(10_000)]
    result = collect(Scripted(noisy), 10, threshold_mhz=None, rep_ms=10.0, max_samples=500)
    assert result.extended > 0
    assert sum(sample.time_ms for sample in result.kept) <= 3 * 10.0 + 10 * 1.1
    quiet = collect(Scripted([Sample(1.0, None)]), 10, threshold_mhz=None, rep_ms=10.0, max_samples=500)
    assert quiet.extended == 0
    assert quiet.half_width == 0.0


def test_sampling_stops_once_the_median_is_known_not_at_a_fixed_budget() -> None:
    """A short kernel with a little jitter: the old rule took 500 samples (100 ms / 15 us); this one stops
    when the median's 95 % interval is within PRECISION, and never under the minimum count."""
    jitter = [Sample(0.015 * (1 + 0.001 * ((i * 7) % 11 - 5)), None) for i in range(10_000)]  # +-0.5 %
    source = Scripted(jitter)
    result = collect(source, 10, threshold_mhz=None, rep_ms=100.0, max_samples=500)
    assert 10 <= len(result.kept) < 100
    assert result.half_width <= PRECISION
    assert median_half_width([s.time_ms for s in result.kept]) == result.half_width
    wide = [Sample(0.015 * (1 + 0.05 * ((i * 7) % 11 - 5)), None) for i in range(10_000)]  # +-25 %: never known
    capped = collect(Scripted(wide), 10, threshold_mhz=None, rep_ms=100.0, max_samples=500)
    assert len(capped.kept) == 500  # the cap holds
    assert capped.half_width > PRECISION


def test_one_preempted_sample_does_not_spend_the_budget() -> None:
    """A loaded CPU stretches a sample 10 000x: the budget counts samples x median, so sampling goes on."""
    stretched = [Sample(500.0 if i == 3 else 0.05 * (1 + 0.001 * ((i * 7) % 11 - 5)), None) for i in range(10_000)]
    result = collect(Scripted(stretched), 10, threshold_mhz=None, rep_ms=100.0, max_samples=500)
    assert len(result.kept) > 10
    assert result.half_width <= PRECISION


def test_a_host_too_loaded_for_the_median_to_settle_stops_at_ten_times_the_budget() -> None:
    """Half the samples preempted (20 ms instead of 0.05 ms): the median never settles; the measured time bounds it."""
    bimodal = [Sample(20.0 if i % 2 else 0.05 * (1 + 0.001 * (i % 7)), None) for i in range(10_000)]
    result = collect(Scripted(bimodal), 10, threshold_mhz=None, rep_ms=10.0, max_samples=500)
    assert len(result.kept) == 10  # its first 10 samples took 100 ms: 10 x rep_ms
    assert result.half_width > PRECISION  # and it says the median was not known that well


def test_a_cpus_first_batch_stops_at_the_bound_when_another_job_takes_the_host() -> None:
    """Planned from a 0.06 ms warm-up: 400 samples. The host is taken meanwhile (each sample 40 ms): the batch
    stops at ten times the budget of measured time, once it holds the minimum count; a GPU's batch is not cut."""
    stretched = [Sample(40.0, None)] * 10_000
    cpu = collect(Scripted(stretched), 400, threshold_mhz=None, rep_ms=25.0, max_samples=500, bounded_from=10)
    assert len(cpu.kept) == 10  # 400 ms >= 10 x 25 ms once the minimum is in
    assert cpu.extended == 0
    slow = collect(Scripted(stretched), 400, threshold_mhz=None, rep_ms=25.0, max_samples=500, bounded_from=20)
    assert len(slow.kept) == 20  # never fewer than the minimum, however long they took
    unbounded = collect(Scripted(stretched), 400, threshold_mhz=None, rep_ms=25.0, max_samples=500)
    assert len(unbounded.kept) == 400


def test_the_lead_covers_the_hosts_launch_time_not_a_fixed_millisecond() -> None:
    """A compiled call's launch takes ~0.4 ms with a rare slow one: the lead covers its 90th percentile
    with a margin; the old rule (twice the slowest launch of a batch) spun 2x the outlier."""
    launches = [0.40] * 60 + [0.45] * 3 + [2.0]  # ms
    p90, lead = lead_for(launches, CudaSource.LEAD_MARGIN, CudaSource.LEAD_SLACK_MS)
    assert p90 == 0.40
    assert lead == pytest.approx(1.25 * 0.40 + 0.01)
    assert lead < 2 * max(launches) / 4
    assert lead_for([0.005], CudaSource.LEAD_MARGIN, CudaSource.LEAD_SLACK_MS)[1] < CudaSource.MIN_LEAD_MS * 2


def test_past_its_cover_the_lead_covers_what_the_kernels_do_not_hide() -> None:
    """A host-bound step (a Hugging Face decode step: about 8.4 ms of launch for 2.3 ms of kernels) starved behind
    a lead capped at 5 ms, and its spans took in the host's hiccups (x2.2 in a gated run on an H100); a GPU-bound
    one (a 32K prefill: 77 ms of launch, 110 ms of kernels) needs no more than it had."""
    margin, slack, cover = CudaSource.LEAD_MARGIN, CudaSource.LEAD_SLACK_MS, CudaSource.COVER_MS
    host_bound = lead_for([8.4] * 20, margin, slack, spans_ms=[2.3] * 20, cover_ms=cover)[1]
    assert host_bound == pytest.approx(margin * 8.4 + slack - 2.3)
    assert lead_for([77.0] * 20, margin, slack, spans_ms=[110.0] * 20, cover_ms=cover)[1] == cover
    # under the cover nothing changed: a single kernel's launch comes all before it, and is covered whole
    assert lead_for([0.40] * 20, margin, slack, spans_ms=[5.0] * 20, cover_ms=cover)[1] == pytest.approx(0.51)
    assert lead_for([8.4] * 20, margin, slack, cover_ms=cover)[1] == cover  # no spans yet: the cover


def test_the_warm_up_finds_a_host_bound_steps_lead_from_its_starved_spans() -> None:
    """The first spans of a starved step are the host's (launch time less the lead): the lead grows call by call
    until the kernels' own span shows, within a few warm-up calls."""
    host_ms, kernels_ms = 8.4, 2.3
    lead, hosts, spans = 0.05, [], []
    for _ in range(4):
        hosts.append(host_ms)
        spans.append(max(kernels_ms, host_ms - lead))  # the GPU waits for the host past the lead
        _, lead = lead_for(hosts, CudaSource.LEAD_MARGIN, CudaSource.LEAD_SLACK_MS, spans_ms=spans, cover_ms=5.0)
        lead = min(max(lead, CudaSource.MIN_LEAD_MS), CudaSource.MAX_LEAD_MS)
    assert max(kernels_ms, host_ms - lead) == kernels_ms
    assert spans[-1] == kernels_ms


def test_cpu_timing_runs_the_same_rules_and_records_how() -> None:
    timing = time_cpu(lambda: sum(range(100)), TimingConfig(warmup_ms=5.0, rep_ms=2.0, min_samples=5))
    assert len(timing.samples_ms) >= 5
    assert timing.clocks_mhz == (None,) * len(timing.samples_ms)
    assert timing.warmup_ms
    assert timing.clock_source == "none"
    assert {"steady", "warmup_calls", "discarded", "paused_s", "extended"} <= timing.info.keys()


def test_a_cpu_samples_from_a_quarter_of_the_gpus_sampling_time_and_records_it() -> None:
    """A CPU run is a smoke run: its first batch and its caps come from CPU_REP_CAP_MS, a GPU's from rep_ms."""
    noisy = [Sample(1.0 + 0.4 * (i * 0.618034 % 1), None) for i in range(10_000)]  # its median: not to +-0.3 % soon
    config = TimingConfig(warmup_ms=5.0, rep_ms=100.0, min_samples=5, max_samples=10_000)
    cpu = timed(Scripted(noisy), config, gpu=False, timer="fake", clock_source="none")
    assert cpu.info["rep_ms"] == CPU_REP_CAP_MS < config.rep_ms
    assert len(cpu.samples_ms) * cpu.median_ms >= EXTEND_FACTOR * CPU_REP_CAP_MS  # its own budget, spent
    assert sum(cpu.samples_ms) < EXTEND_FACTOR * config.rep_ms / 2
    gpu = timed(Scripted(noisy), config, gpu=True, timer="fake", clock_source="none")
    assert gpu.info["rep_ms"] == config.rep_ms
    assert len(gpu.samples_ms) * gpu.median_ms >= EXTEND_FACTOR * config.rep_ms


# ---------------------------------------------------------------- the clock stamps


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        ((1_000, 0, 2_000, 1_980), 1980.0),  # 1980 cycles in 1000 ns: 1980 MHz
        ((0, 0, 2_000, 1_980), None),  # SM 0 never wrote the first stamp
        ((1_000, 0, 0, 0), None),
        ((2_000, 0, 1_000, 5), None),  # time went backwards: not a sample
        ((1_000, 10, 2_000, 5), None),  # clock64 went backwards
    ],
)
def test_clock_from_two_stamps(stamps: tuple[int, int, int, int], expected: float | None) -> None:
    assert clock.clock_mhz(*stamps) == expected


def test_the_stamp_probe_reads_each_samples_clock_and_counts_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's bookkeeping with the Triton kernel replaced by a Python one writing the same slots."""
    state = {"ns": 1_000, "cycles": 0}

    class FakeKernel:
        def __getitem__(self, grid: tuple[int]) -> Any:
            def launch(buffer: torch.Tensor, slot: int, num_warps: int) -> None:
                if slot == 3:  # sample 1's closing stamp: no program on SM 0
                    return
                state["ns"] += 500
                state["cycles"] += 900
                buffer[2 * slot], buffer[2 * slot + 1] = state["ns"], state["cycles"]

            return launch

    monkeypatch.setattr(clock, "_stamp_kernel", lambda: FakeKernel())
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=4))
    probe = clock.StampProbe(torch.device("cpu"))
    probe.prepare(3)
    for index in range(3):
        probe.before(index)
        probe.after(index)
    assert probe.read(3) == [pytest.approx(1800.0), None, pytest.approx(1800.0)]
    assert probe.missed == 1


def test_without_a_gpu_there_is_no_clock() -> None:
    probe = clock.probe_for(torch.device("cpu"))
    assert probe.source == "none"
    assert probe.read(2) == [None, None]


# ---------------------------------------------------------------- NVML per case


class FakeNvml:
    """nvidia-ml-py's functions a case reads, with an old driver that lacks the new calls when ``old``."""

    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL = 0, 1, 0, 1

    def __init__(self, old: bool = False) -> None:
        self.old, self.energy, self.temperature, self.reasons_mask = old, 1_000_000, 60, 0x4

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: object) -> int:
        if self.old:
            raise AttributeError("not in this binding")
        return self.reasons_mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: object) -> int:
        return self.reasons_mask

    def nvmlDeviceGetTemperatureV(self, handle: object, sensor: int) -> int:
        if self.old:
            raise RuntimeError("NVML_ERROR_FUNCTION_NOT_FOUND")
        return self.temperature

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        return self.temperature

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        self.energy += 5_000
        return self.energy

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        return 650_000

    def nvmlDeviceGetClockInfo(self, handle: object, kind: int) -> int:
        return 1755

    def nvmlDeviceGetMaxClockInfo(self, handle: object, kind: int) -> int:
        return 1980

    def nvmlDeviceGetViolationStatus(self, handle: object, policy: int) -> Any:
        return SimpleNamespace(violationTime=123_000_000 * (policy + 1))


@pytest.mark.parametrize("old", [False, True], ids=["new-calls", "deprecated-calls"])
def test_a_case_summary_from_two_snapshots(old: bool) -> None:
    fake = FakeNvml(old)
    reader = nvml.Nvml(fake, handle=object())
    start = reader.snapshot()
    end = nvml.GpuSnapshot(
        time_s=start.time_s + 0.5,
        energy_mj=(start.energy_mj or 0) + 300_000,
        temperature_c=64,
        power_w=680,
        sm_clock_mhz=1700,
        reasons=0x4 | 0x20,
        power_capped_ns=(start.power_capped_ns or 0) + 250e6,
        thermal_capped_ns=start.thermal_capped_ns,
    )
    summary = nvml.case_summary(start, end, calls=100)
    assert summary["temperature_c"] == [60, 64]
    assert summary["mean_power_w"] == pytest.approx(600.0)
    assert summary["energy_mj_per_call"] == pytest.approx(3000.0)
    assert summary["power_capped_fraction"] == pytest.approx(0.5)
    assert summary["thermal_capped_fraction"] == 0.0
    assert summary["clock_event_reasons"] == ["software power cap", "software thermal slowdown"]
    assert reader.max_sm_clock_mhz() == 1980.0


def test_a_missing_nvml_call_leaves_its_field_empty() -> None:
    class Broken(FakeNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    snapshot = nvml.Nvml(Broken(), handle=object()).snapshot()
    assert snapshot.energy_mj is None
    assert snapshot.temperature_c == 60
    summary = nvml.case_summary(snapshot, snapshot, calls=10)
    assert "energy_mj_per_call" not in summary


def test_cool_down_waits_for_the_temperature_and_the_power_cap_within_its_limit() -> None:
    fake = FakeNvml()
    reader = nvml.Nvml(fake, handle=object())
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        fake.temperature -= 1
        if fake.temperature <= 62:
            fake.reasons_mask = 0x1  # idle

    waited = reader.cool_down(55.0, sleep=sleep, now=lambda: now[0])
    assert fake.temperature == 57  # within 2 C of 55
    assert waited == pytest.approx(0.15)
    fake.temperature, fake.reasons_mask = 90, 0x4
    assert reader.cool_down(40.0, max_s=0.2, sleep=sleep, now=lambda: now[0]) <= 0.25


def test_without_triton_the_clock_falls_back_to_the_timed_spin_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_triton() -> Any:
        raise ModuleNotFoundError("No module named 'triton'")

    monkeypatch.setattr(clock, "_stamp_kernel", no_triton)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=132))
    monkeypatch.setattr(clock, "_probes", {})
    monkeypatch.setattr(clock, "_probe_notes", {})
    device = torch.device("cuda", 0)
    probe = clock.probe_for(device)
    assert probe.source == "sleep-spin"
    assert clock.probe_note(device) == (
        "SM clock read with timed spins: the timestamps kernel is unavailable (No module named 'triton')"
    )


def test_a_cuda_sources_warm_up_grows_a_host_bound_steps_lead_past_the_cover(monkeypatch: pytest.MonkeyPatch) -> None:
    """CudaSource.take on a simulated GPU: a step launched in about 8 ms whose kernels take 2 ms. Its spans are the
    events' (2 ms each); after a few warm-up calls the lead covers what the kernels do not hide, past COVER_MS."""
    import time as clock

    import pytest_attnperf.measure.timing as timing
    from pytest_attnperf.measure.clock import NoClock

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            pass

        def record(self, stream: object = None) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, other: object) -> float:
            return 2.0

        def query(self) -> bool:
            return len(spins) % 2 == 0  # every other sample's lead ended before its launch did

    spins: list[int] = []
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "_sleep", spins.append)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(timing, "cycles_per_ms", lambda device: 1.0e6)
    source = CudaSource(lambda: clock.sleep(0.008), torch.device("cuda", 0), NoClock(), None)
    for _ in range(3):
        source.take(1)
    assert source.lead_ms == CudaSource.COVER_MS  # too few launch times yet to go past the cover
    for _ in range(CudaSource.MIN_LAUNCHES_PAST_COVER - 3):
        samples = source.take(1)
    assert samples[0].time_ms == 2.0
    assert source.host_ms >= 8.0
    assert source.lead_ms == pytest.approx(1.25 * source.host_ms + 0.01 - 2.0)
    assert source.lead_ms > CudaSource.COVER_MS
    source.fix_lead()
    fixed = source.lead_ms
    source.take(2)
    assert source.lead_ms == fixed  # the samples keep the warm-up's lead
    assert spins[-2:] == [int(fixed * 1.0e6)] * 2  # spun before each of them
    assert (source.sampled, source.overruns) == (2, 1)  # asked of the samples only, not of the warm-up
