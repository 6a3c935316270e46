"""Baselines from N independent runs, the controller that never touches a GPU, dispatch names, injections,
and `attnperf update --runs` / `attnperf calibrate` end to end on the CPU with tiny shapes."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf.gate.baselines import BaselineFile, baseline_path, load_baseline, parse_baseline_text
from pytest_attnperf.gate.dispatch import describe_change, family_name, fingerprint
from pytest_attnperf.gate.recording import entry_from_runs, runs_note
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.gate.statistics import geometric_mean, log_spread
from pytest_attnperf.measure.injection import Injector, delivered
from pytest_attnperf.session.baseline_update import update_baselines
from pytest_attnperf.session.state import AttnPerfSession
from pytest_attnperf.spec.settings import resolve_settings

H200 = {"device": "cuda:0", "name": "NVIDIA H200", "slug": "nvidia-h200", "uuid": "GPU-aaaa", "sm_count": 132}


def run(level: float, uuid: str, rng: random.Random, beta: float = 1.0) -> CaseRecord:
    """One process's result of a compute-bound case whose clock settled at ``level`` of 1980 MHz."""
    clocks = [1980 * level * math.exp(rng.gauss(0, 0.01)) for _ in range(60)]
    times = [3.0 * (1980 / clock) ** beta * math.exp(rng.gauss(0, 0.001)) for clock in clocks]
    result = flat_record(
        "t.py::test[sdpa-cudnn-16K]",
        "sdpa-cudnn",
        "NVIDIA H200",
        "nvidia-h200",
        "forward",
        {"heads": 32},
        16384,
        median_ms=sorted(times[20:])[20],
        samples_ms=times[20:],
        clock_mhz=clocks[20:],
        warmup_ms=times[:20],
        warmup_clock_mhz=clocks[:20],
        peak_bytes=1 << 20,
        clock_source="sm0-timestamps",
        gpu={
            "energy_mj_per_call": 10.0,
            "burst_power_w": 600.0 * level,
            "reference": {"ms": 0.2 / level, "clock_mhz": 1980 * level},
        },
        fingerprint={"families": ["cudnn_sdpa"], "variant": "abc", "kernels": 1},
        device_info={**H200, "uuid": uuid},
        plugin_version="0.1.0",
        timing_settings={"rep_ms": 100.0},
    )
    return result


def test_a_skipped_power_window_is_left_out_of_the_entry_never_taken_for_zero() -> None:
    rng = random.Random(5)
    results = [run(level, f"GPU-{i}", rng) for i, level in enumerate((1.0, 0.93, 0.96))]
    skipped = {"burst_power_w": None, "burst_power_skipped": "--attnperf-power=off"}

    def without_power(result: CaseRecord) -> CaseRecord:
        measured = result.measurement
        return dataclasses.replace(result, measurement=dataclasses.replace(measured, gpu={**measured.gpu, **skipped}))

    entry = entry_from_runs([without_power(results[0]), *results[1:]], "2026-12-01T00:00:00Z")
    assert entry.power_w == 567.0  # the median of the two runs that measured it
    assert entry.power_spread == pytest.approx(log_spread([558.0, 576.0]), rel=1e-2)  # kept to 3 digits
    none = entry_from_runs([without_power(result) for result in results], "2026-12-01T00:00:00Z")
    assert none.power_w is None
    assert none.power_spread is None


def test_three_runs_become_one_consistent_entry_with_their_spread() -> None:
    rng = random.Random(3)
    results = [run(level, f"GPU-{i}", rng) for i, level in enumerate((1.0, 0.93, 0.96))]
    entry = entry_from_runs(results, "2026-12-01T00:00:00Z")
    assert entry.runs == 3
    assert entry.beta == pytest.approx(1.0, abs=0.05)
    assert entry.clock_mhz is not None
    assert entry.clock_mhz == pytest.approx(1980 * 0.96, rel=0.02)
    # normalised to one clock, the three runs agree far better than their raw medians (7 % apart)
    assert entry.spread is not None
    assert entry.spread < 0.005 < (log_spread([r.median_ms or 0 for r in results]) or 0)
    assert entry.median_ms == pytest.approx(geometric_mean(list(entry.run_medians_ms)), rel=1e-3)
    assert entry.gpu_uuids == ("GPU-0", "GPU-1", "GPU-2")
    assert entry.energy_mj is None  # the old energy per call spanned spins and flushes: no longer stored
    assert entry.power_w == 576.0  # the median of the runs' mean power over back-to-back calls
    assert entry.power_spread == pytest.approx(log_spread([600.0, 558.0, 576.0]), rel=1e-3)
    assert entry.reference == {"ms": pytest.approx(0.2 / 0.96, rel=1e-4), "clock_mhz": pytest.approx(1980 * 0.96)}
    assert entry.fingerprint == {"families": ["cudnn_sdpa"], "variant": "abc", "kernels": 1}
    assert entry.timing == {"rep_ms": 100.0, "clock_source": "sm0-timestamps"}
    written = BaselineFile(Path("x.yaml"), {"name": "x"}, {}, {"t": entry})
    assert parse_baseline_text(written.to_text(), Path("x.yaml")) == written  # what is written reads back


@pytest.mark.parametrize(
    ("placements", "stored"),
    [((None, None, None), None), (("adjacent",) * 3, "adjacent"), (("adjacent", "periodic", "adjacent"), "mixed")],
)
def test_an_entry_says_how_its_cases_references_were_read(
    placements: tuple[str | None, ...], stored: str | None
) -> None:
    """Under --attnperf-machine-reference=adjacent only the long cases are read next to them: each entry stores how
    its own runs' readings were taken, which a verdict compares with the run's."""
    rng = random.Random(7)

    def placed(result: CaseRecord, placement: str | None) -> CaseRecord:
        measured = result.measurement
        gpu = {**measured.gpu, **({"reference_placement": placement} if placement else {})}
        return dataclasses.replace(result, measurement=dataclasses.replace(measured, gpu=gpu))

    results = [placed(run(1.0, "GPU-0", rng), placement) for placement in placements]
    timing = entry_from_runs(results, "2026-12-01T00:00:00Z").timing
    assert timing is not None
    assert timing.get("machine_reference") == stored


def test_runs_that_did_not_fit_are_left_out_and_said() -> None:
    rng = random.Random(4)
    results = [run(1.0, "GPU-0", rng), run(1.0, "GPU-0", rng)]
    results.append(flat_record("t", "sdpa-cudnn", "H200", "nvidia-h200", "forward", None, 1, fits=False))
    entry = entry_from_runs(results, "")
    assert entry.runs == 2
    assert runs_note(results) == "measured in 2 of 3 runs (the others did not fit or failed)"
    nothing = entry_from_runs(results[2:], "")
    assert (nothing.fits, nothing.latency_ms, nothing.runs) == (False, None, 1)


def test_the_controller_writes_baselines_from_the_records_without_touching_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under pytest-xdist the controller has only the workers' records: it must not resolve a device."""
    settings = resolve_settings({"attnperf": True, "attnperf_update": True}, {}, rootdir=tmp_path)
    state = AttnPerfSession(settings, is_worker=False, distributing=True)

    def no_device(self: AttnPerfSession) -> None:
        raise AssertionError("the controller touched a device")

    monkeypatch.setattr(AttnPerfSession, "device", property(no_device))
    rng = random.Random(5)
    gpu_state = {"max_sm_clock_mhz": 1980, "temperature_c": 35}
    state.results = [run(1.0, "GPU-aaaa", rng).with_fields(session_gpu_state=gpu_state)]  # records are frozen
    outcome = update_baselines(state.settings, state.results, state.baseline_path)
    assert (outcome.errors, outcome.failed, len(outcome.changes)) == ((), False, 1)
    written = load_baseline(baseline_path(tmp_path / "baselines", "nvidia-h200"))
    assert written is not None
    assert written.device == {"name": "NVIDIA H200", "slug": "nvidia-h200", "sm_count": 132}
    assert written.environment["gpu_state"] == {"max_sm_clock_mhz": 1980, "temperature_c": 35}
    assert written.entries["t.py::test[sdpa-cudnn-16K]"].gpu_uuids == ("GPU-aaaa",)
    assert state.report().device["name"] == "NVIDIA H200"


# ---------------------------------------------------------------- dispatch names


@pytest.mark.parametrize(
    ("name", "family"),
    [
        (
            "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64, 64, 4, false, false, cutlass::half_t,"
            " Flash_kernel_traits<128, 64, 64, 4, cutlass::half_t> >, false, true>(pytorch_flash::Flash_fwd_params)",
            "pytorch_flash::flash_fwd_kernel",
        ),
        (
            "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x128_4x1x1_kernel0_0",
            "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x128_4x1x1_kernel0_0",
        ),
        ("triton_tem_fused_0", "triton_tem_fused"),
        ("triton_per_fused__softmax_12", "triton_per_fused__softmax"),
        ("Memcpy DtoD (Device -> Device)", "Memcpy DtoD"),
        (
            "void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>(float*, float const*, int)",
            "at::native::{anonymous}::cunn_SoftMaxForward",
        ),
        ("kernel_at_0x7f00deadbeef", "kernel_at_0x?"),
    ],
)
def test_kernel_families(name: str, family: str) -> None:
    assert family_name(name) == family


def test_a_new_cudnn_plan_is_a_dispatch_change_other_tiles_a_variant_change() -> None:
    knob7 = fingerprint(["cudnn_generated_fort_native_sdpa_sm90_knob_7_64x128x128"])
    knob3 = fingerprint(["cudnn_generated_fort_native_sdpa_sm90_knob_3_128x128x128"])
    assert describe_change(knob7, knob3) == (
        "dispatch changed: cudnn_generated_fort_native_sdpa_sm90_knob_7_64x128x128 -> "
        "cudnn_generated_fort_native_sdpa_sm90_knob_3_128x128x128"
    )
    tile64 = fingerprint(["void flash_fwd<64, true>(Params)"])
    tile128 = fingerprint(["void flash_fwd<128, true>(Params)"])
    assert (
        describe_change(tile64, tile128)
        == "kernel variant changed: the same kernels (flash_fwd) with other template arguments"
    )
    assert describe_change(tile64, tile64) is None
    assert describe_change(None, tile64) is None


# ---------------------------------------------------------------- injections


def test_an_injection_is_sized_in_time_and_what_it_delivers_is_measured() -> None:
    injector = Injector(torch.device("cpu"), torch.float32, "compute")
    assert injector.time_ms(64) > 0
    size = injector.size_for(injector.time_ms(4096))  # timings on a shared CPU are rough: only the bounds hold
    assert 16 <= size <= 1 << 16
    slowed = injector.wrap(lambda: "out", size)
    assert slowed() == "out"
    assert delivered(2.0, 2.1) == pytest.approx(0.05)
    memory = Injector(torch.device("cpu"), torch.float16, "memory")
    assert memory.dtype == torch.float32  # a CPU matmul in half precision is not what a GPU does
    memory.injection(1 << 20)()
    with pytest.raises(ValueError, match="injection kind 'sleep' is not 'compute' or 'memory'"):
        Injector(torch.device("cpu"), torch.float32, "sleep")


def test_on_a_gpu_the_injection_is_timed_behind_a_lead_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's launch of the injection stays out of its timed span: a spin is queued before the start event
    (without it a 15 us injection was sized short by its launch and delivered less than asked)."""
    import pytest_attnperf.measure.timing as timing

    calls: list[str] = []
    made = iter(["start", "end"] * 3)  # each sample makes its start event, then its end event

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            self.name = next(made)

        def record(self) -> None:
            calls.append(f"record:{self.name}")

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, other: object) -> float:
            return 0.015

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: calls.append(f"sleep:{cycles}"))
    monkeypatch.setattr(timing, "cycles_per_ms", lambda device: 1.5e6)
    injector = Injector(torch.device("cpu"), torch.float32, "compute")
    injector.device = torch.device("cuda", 0)
    monkeypatch.setattr(injector, "injection", lambda size: lambda: calls.append("injection"))
    assert injector.time_ms(64, repeats=3) == pytest.approx(0.015)
    assert calls[0] == "injection"  # once untimed first
    assert calls[1:] == ["sleep:300000", "record:start", "injection", "record:end"] * 3


def test_on_a_gpu_the_first_target_picks_an_inner_size_whose_floor_it_can_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few-row matmul streams its K x K operand whatever the rows: at K = 4096 about 11 us on an H100, more than a
    10 us target. The widest K whose smallest matmul takes a quarter of the first target is kept for later ones."""
    floors = {4096: 0.011, 2048: 0.004, 1024: 0.0015, 512: 0.001, 256: 0.001}
    injector = Injector(torch.device("cpu"), torch.float32, "compute")
    injector.inner_fixed = False  # as on a GPU
    monkeypatch.setattr(injector, "time_ms", lambda size: floors[injector.inner] + size * 1e-6 * injector.inner / 1024)
    size = injector.size_for(0.010)
    assert injector.inner == 1024
    assert floors[1024] + size * 1e-6 == pytest.approx(0.010, rel=0.01)
    injector.size_for(0.5)  # a later, larger target keeps the inner size its sizes were made with
    assert injector.inner == 1024
    wide = Injector(torch.device("cpu"), torch.float32, "compute")
    wide.inner_fixed = False
    monkeypatch.setattr(wide, "time_ms", lambda size: floors[wide.inner] + size * 1e-6)
    wide.size_for(0.2)
    assert wide.inner == 4096
    assert Injector(torch.device("cpu"), torch.float32, "compute").fit_inner(0.001) == 128  # a CPU keeps its own


# ---------------------------------------------------------------- end to end


GATED = """
import pytest

@pytest.mark.attnperf_latency()
@pytest.mark.attnperf_memory()
def test_gate(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)
"""


def _attnperf(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "import sys; from pytest_attnperf.cli import main; sys.exit(main())", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_update_with_two_runs_records_both_and_their_spread(tmp_path: Path) -> None:
    (tmp_path / "test_gate.py").write_text(GATED, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    completed = _attnperf("update", "--runs", "2", *FAST_OPTIONS, cwd=tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "run 1 of 2 measured; the baselines are written after run 2" in output
    assert "test_gate[eager-64]: median " in output
    assert ", 2 runs, spread " in output
    written = load_baseline(baseline_path(tmp_path / "baselines", CPU.slug))
    assert written is not None
    entry = written.entries["test_gate.py::test_gate[eager-64]"]
    assert entry.runs == 2
    assert len(entry.run_medians_ms) == 2
    assert entry.spread is not None
    assert written.environment["runs"] == 2
    assert written.environment["command"] == "attnperf update --runs 2"
    # and it gates: the next run passes or is at worst re-measured, never an error
    gated = subprocess.run(
        [sys.executable, "-m", "pytest", "--attnperf", *FAST_OPTIONS], cwd=tmp_path, capture_output=True, text=True
    )
    assert gated.returncode in (0, 1), gated.stdout + gated.stderr
    assert "INTERNALERROR" not in gated.stdout + gated.stderr


def test_calibrate_measures_and_stores_a_detection_limit_per_case(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=GATED)
    pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS, "--attnperf-update").assert_outcomes(passed=1)
    result = pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS, "--attnperf-calibrate")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [
            r".*attnperf: detection limits \(attnperf calibrate\).*",
            r"test_gate\[eager-64\]: (detects >= [0-9.]+ % \(predicted from its spread: [0-9.]+ %\)"
            r"|not caught in every trial up to [0-9.]+ % delivered"
            r"|no detection limit: every trial failed with no slowdown delivered .*"  # a loaded CPU
            r"|no detection limit: no trial delivered a slowdown above the noise .*)$",  # a loaded CPU too
        ]
    )
    entry = load_baseline(baseline_path(pytester.path / "baselines", CPU.slug)).entries[
        "test_gate.py::test_gate[eager-64]"
    ]  # type: ignore[union-attr]
    detects = re.search(r"detects >= ([0-9.]+) %", result.stdout.str())
    assert entry.detection_limit == (pytest.approx(float(detects.group(1)) / 100, abs=1e-3) if detects else None)


def test_the_cpu_fingerprint_names_the_kernel_sdpa_chose() -> None:
    from pytest_attnperf.measure.fingerprint import capture

    q = torch.randn(1, 2, 64, 16)
    print_ = capture(
        lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True), torch.device("cpu")
    )
    assert print_ is not None
    assert print_["families"] == ["aten::_scaled_dot_product_flash_attention_for_cpu"]
    assert len(print_["variant"]) == 12


def test_the_update_report_says_what_was_replaced_and_what_was_refused() -> None:
    from pytest_attnperf.gate.baselines import BaselineEntry, Change
    from pytest_attnperf.session.report import change_lines

    old = BaselineEntry("eager", {"heads": 8, "dtype": "float32"}, "forward", {"median": 1.0}, 10, True, "", {})
    new = BaselineEntry(
        "eager", {"heads": 1, "dtype": "bfloat16"}, "forward", {"median": 0.5}, 10, True, "", {},
        runs=3, run_medians_ms=(0.5, 0.5, 0.5), spread=0.0012,
    )  # fmt: skip
    lines = change_lines([Change("t.py::test[eager-64]", old, new), Change("t.py::test[x]", None, new, "median: 0")])
    assert lines == [
        "test[eager-64]: median 1 ms -> 0.5 ms (x0.500), 3 runs, spread 0.12 %, peak 10 B -> 10 B; replaces a baseline "
        "recorded for another problem (dtype float32 -> bfloat16, heads 8 -> 1)",
        "test[x]: NOT recorded: median: 0",
    ]


# ---------------------------------------------------------------- the software a baseline records


def test_the_software_versions_are_listed_once_and_kept_out_of_the_device_block() -> None:
    """flash_attn_4 was missing from a second list in updating.py and leaked into the H200 file's device: block."""
    from pytest_attnperf.session.baseline_update import _device_record
    from pytest_attnperf.spec.device_info import SOFTWARE_KEYS, DeviceInfo

    assert set(SOFTWARE_KEYS) <= {field.name for field in dataclasses.fields(DeviceInfo)}
    versions = {key: f"{key}-1.0" for key in SOFTWARE_KEYS}
    info = DeviceInfo("cuda:0", "NVIDIA H200", "nvidia-h200", (9, 0), "Hopper", 1 << 30, 132, **versions)  # type: ignore[arg-type]
    assert info.software() == versions
    result = flat_record("t", "eager", "NVIDIA H200", "nvidia-h200", "forward", None, 1, device_info=info.as_dict())
    assert not set(_device_record(result)) & set(SOFTWARE_KEYS)
    for path in sorted(Path(__file__).parents[2].glob("baselines/*.yaml")):
        committed = load_baseline(path)
        assert committed is not None
        assert not set(committed.device) & set(SOFTWARE_KEYS), path


def test_a_beta_confidently_over_one_is_stored_as_fitted_and_reads_back() -> None:
    """sdpa-cudnn at the H200's power cap fitted 1.18 with its interval above 1: stored as fitted, not clamped to 1."""
    rng = random.Random(8)
    results = [run(level, "GPU-0", rng, beta=1.2) for level in (1.0, 0.93, 0.96)]
    entry = entry_from_runs(results, "2026-12-01T00:00:00Z")
    assert entry.beta_ci is not None
    assert entry.beta_ci[0] > 1
    assert entry.beta == pytest.approx(1.2, abs=0.05)
    written = BaselineFile(Path("x.yaml"), {"name": "x"}, {}, {"t": entry})
    assert parse_baseline_text(written.to_text(), Path("x.yaml")).entries["t"].beta == entry.beta


@pytest.mark.parametrize(
    ("calibration", "said"),
    [
        ({"detection_limit": 0.04, "predicted": 0.03, "levels": [{"delivered": 0.05}]}, "detects >= 4.0 %"),
        ({"detection_limit": None, "levels": [{"delivered": 0.08}]}, "not caught in every trial up to 8.0 % delivered"),
        (  # a loaded CPU: the noise swallowed every injected level
            {"detection_limit": None, "levels": [{"delivered": -0.12}, {"delivered": -0.02}]},
            "no detection limit: no trial delivered a slowdown above the noise (the most was -2.0 %)",
        ),
    ],
)
def test_the_calibration_line_never_claims_a_negative_slowdown_was_tried(
    tmp_path: Path, calibration: dict[str, object], said: str
) -> None:
    from pytest_attnperf.session.baseline_update import write_detection_limits

    result = flat_record("t.py::test[eager-64]", "eager", "cpu", "cpu", "forward", None, 64, calibration=calibration)
    outcome = write_detection_limits([result], lambda slug: tmp_path / f"{slug}.yaml")
    assert outcome.lines[0].startswith(f"test[eager-64]: {said}"), outcome.lines
