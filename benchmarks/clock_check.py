"""GPU self-check of the clock-aware measurement: what the CPU tests cannot see (about a minute on an H200).

    python3 benchmarks/clock_check.py OUTDIR      # writes OUTDIR/clock-check.json, prints a summary

Sections (each independent; a failure is recorded and the rest still runs):
  probe     - which clock source the plugin chose; stamps that missed SM 0; host and GPU cost of a stamp
  clock     - the probe's clock on a long and a ~30 us sample against NVML's SM clock and the timed-spin fallback
  nvml      - cost of a per-case NVML snapshot; the energy counter's update period
  steady    - sdpa-cudnn 16K from a rested GPU through the plugin's timing: the warm-up's stop, the clock, beta
  profiler  - the dispatch fingerprint of each SDPA backend, its cost, and the host launch cost before and after it
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pytest_attnperf.gate.normalise import fit_beta
from pytest_attnperf.measure.clock import SpinProbe, probe_for, probe_note
from pytest_attnperf.measure.fingerprint import capture
from pytest_attnperf.measure.nvml import nvml_for
from pytest_attnperf.measure.timing import CudaSource, l2_flush_buffer, time_cuda
from pytest_attnperf.spec.options import TimingConfig

DEVICE = torch.device("cuda", 0)
RESULT: dict[str, Any] = {}


def section(function: Callable[[], Any]) -> None:
    started = time.perf_counter()
    try:
        RESULT[function.__name__] = function()
    except Exception:  # record it and go on: each section answers its own question
        RESULT[function.__name__] = {"error": traceback.format_exc(limit=4)}
    RESULT.setdefault("wall_s", {})[function.__name__] = round(time.perf_counter() - started, 2)
    print(f"[{function.__name__}] {json.dumps(RESULT[function.__name__], default=str)[:1200]}", flush=True)


def probe() -> dict[str, Any]:
    chosen = probe_for(DEVICE)
    out: dict[str, Any] = {"source": chosen.source, "note": probe_note(DEVICE)}
    count = 500
    chosen.prepare(count)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for index in range(count):
        chosen.before(index)
        torch.cuda._sleep(20_000)
        chosen.after(index)
    out["host_us_per_stamp_pair"] = round((time.perf_counter() - started) / count * 1e6, 2)
    torch.cuda.synchronize()
    clocks = chosen.read(count)
    out["missed"] = sum(clock is None for clock in clocks)
    known = [clock for clock in clocks if clock]
    out["clock_mhz_median"] = statistics.median(known) if known else None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    chosen.prepare(count)
    torch.cuda._sleep(50_000_000)  # hides the host launches: the events time the stamps alone
    start.record()
    for index in range(count):
        chosen.before(index)
    end.record()
    end.synchronize()
    out["gpu_us_per_stamp"] = round(start.elapsed_time(end) * 1e3 / count, 3)
    return out


def _samples(target: Callable[[], Any], count: int) -> tuple[list[float], list[float | None]]:
    source = CudaSource(target, DEVICE, probe_for(DEVICE), l2_flush_buffer(DEVICE))
    samples = source.take(count)
    return [s.time_ms for s in samples], [s.clock_mhz for s in samples]


def clock() -> dict[str, Any]:
    nvml = nvml_for(DEVICE)
    big = torch.randn(8192, 8192, device=DEVICE, dtype=torch.float16)
    small = torch.randn(1024, 1024, device=DEVICE, dtype=torch.float16)
    out: dict[str, Any] = {}
    for label, target, count in (
        ("matmul_8192_x2", lambda: (big @ big, big @ big), 60),
        ("matmul_1024", lambda: small @ small, 300),
    ):
        times, clocks = _samples(target, count)
        known = [c for c in clocks if c]
        spin = SpinProbe(DEVICE)
        spin.prepare(20)
        for index in range(20):
            target()
            spin.after(index)
        torch.cuda.synchronize()
        spin_clocks = [c for c in spin.read(20) if c]
        out[label] = {
            "time_ms_median": statistics.median(times),
            "probe_mhz_median": statistics.median(known) if known else None,
            "probe_mhz_rel_sd": statistics.pstdev(known) / statistics.fmean(known) if len(known) > 1 else None,
            "nvml_sm_mhz_after": nvml.snapshot().sm_clock_mhz if nvml else None,
            "spin_fallback_mhz_median": statistics.median(spin_clocks) if spin_clocks else None,
            "missed": clocks.count(None),
        }  # fmt: skip
    return out


def nvml_costs() -> dict[str, Any]:
    nvml = nvml_for(DEVICE)
    if nvml is None:
        return {"nvml": "not available"}
    started = time.perf_counter()
    for _ in range(100):
        nvml.snapshot()
    out: dict[str, Any] = {"us_per_snapshot": round((time.perf_counter() - started) / 100 * 1e6, 1)}
    big = torch.randn(8192, 8192, device=DEVICE, dtype=torch.float16)
    values, stamps = [], []
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:
        for _ in range(4):
            big @ big
        values.append(nvml.snapshot().energy_mj)
        stamps.append(time.perf_counter())
    torch.cuda.synchronize()
    changes = [stamps[i] for i in range(1, len(values)) if values[i] != values[i - 1]]
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    out["energy_counter_update_ms"] = round(statistics.median(gaps) * 1e3, 2) if gaps else None
    out["reasons_now"] = nvml.reasons()
    return out


def profiler() -> dict[str, Any]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    def host_launch_us() -> float:
        x = torch.zeros(16, device=DEVICE)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(2000):
            x.add_(1)
        elapsed = (time.perf_counter() - started) / 2000 * 1e6
        torch.cuda.synchronize()
        return round(elapsed, 2)

    q = torch.randn(1, 32, 4096, 128, device=DEVICE, dtype=torch.float16)
    out: dict[str, Any] = {"host_launch_us_before": host_launch_us()}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        with sdpa_kernel([getattr(SDPBackend, name)]):
            started = time.perf_counter()
            fingerprint = capture(lambda: sdpa(q, q, q, is_causal=True), DEVICE)
            out[name] = {"wall_ms": round((time.perf_counter() - started) * 1e3, 1), "fingerprint": fingerprint}
    out["host_launch_us_after"] = host_launch_us()
    return out


def steady() -> dict[str, Any]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    q = torch.randn(1, 32, 16384, 128, device=DEVICE, dtype=torch.float16)
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        sdpa(q, q, q, is_causal=True)
        torch.cuda.synchronize()
        time.sleep(3.0)  # a rested GPU, as at the start of a session
        nvml = nvml_for(DEVICE)
        timing = time_cuda(
            lambda: sdpa(q, q, q, is_causal=True),
            DEVICE,
            TimingConfig(),
            max_clock_mhz=nvml.max_sm_clock_mhz() if nvml else None,
        )
    fit = fit_beta([*timing.warmup_ms, *timing.samples_ms], [*timing.warmup_clocks_mhz, *timing.clocks_mhz])
    return {
        "info": timing.info,
        "samples": len(timing.samples_ms),
        "median_ms": timing.median_ms,
        "beta": None if fit is None else {"beta": fit.beta, "unclamped": fit.unclamped, "ci90": [fit.low, fit.high],
                                          "identified": fit.identified, "blocks": fit.blocks, "clock_range": fit.clock_range},
        "warmup": list(zip(timing.warmup_ms, timing.warmup_clocks_mhz, strict=True)),
        "samples_and_clocks": list(zip(timing.samples_ms, timing.clocks_mhz, strict=True)),
    }  # fmt: skip


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for function in (probe, clock, nvml_costs, steady, profiler):  # the profiler last: CUPTI may stay attached
        section(function)
    (out / "clock-check.json").write_text(json.dumps(RESULT, default=str, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
