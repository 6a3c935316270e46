"""Sensitivity of the latency gate: how often a known slowdown (injected GPU work) is caught.

For each case a baseline is measured, then the same kernel followed by a spin kernel of
5 % or 10 % of the baseline median is measured TRIALS times and judged by the gate's own
decision: the median over tolerance -> measured again -> one-sided Mann-Whitney test of the
quantiles against the baseline's (``checks.check_latency``), at several tolerances.
Unchanged kernels are judged the same way (false alarms).

Run on the GPU machine: python3 benchmarks/sensitivity.py > sensitivity.md
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.gate.baselines import QUANTILE_COUNT
from pytest_attnperf.gate.checks import GateContext, check_latency
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.measurement import measure
from pytest_attnperf.measure.timing import Timing, _cycles_per_ms, spin_up
from pytest_attnperf.runner import make_workload
from pytest_attnperf.spec.marks import LatencySpec
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape

TRIALS = 20
TOLERANCES = (0.03, 0.05, 0.10)
CASES = (("sdpa-flash", 4096), ("flash-attn", 16384), ("sdpa-cudnn", 32768), ("flex", 1024))
CONTEXT = GateContext(test_id="sensitivity", device_name="-", baseline_file="-")


def gate_fails(first: Timing, second: Timing, baseline: Timing, tolerance: float) -> bool:
    """The gate's decision: a median over tolerance is measured again, then must be significant."""
    if first.median_ms <= baseline.median_ms * (1 + tolerance):
        return False
    violation = check_latency(
        second.median_ms,
        LatencySpec(),
        tolerance=tolerance,
        baseline_ms=baseline.median_ms,
        context=CONTEXT,
        samples_ms=second.quantiles(QUANTILE_COUNT),
        baseline_quantiles_ms=baseline.quantiles(QUANTILE_COUNT),
    )
    return violation is not None


def main() -> int:
    device = torch.device("cuda", torch.cuda.current_device())
    spin_up(device, 1.0)
    cycles_per_ms = _cycles_per_ms(device)
    print(f"# Gate sensitivity on {torch.cuda.get_device_name(device)}\n")
    print(f"{TRIALS} trials per row (each: a measurement and its re-measurement), fp16 causal B=1 H=32 D=128;")
    print("the baseline is measured once in the same process. Detected = the gate would fail the test.\n")
    header = " | ".join(f"detected at {tolerance:.0%} tolerance" for tolerance in TOLERANCES)
    print(f"| backend | length | baseline median | injected | {header} | mean measured ratio |")
    print("|---|---|---|---|" + "---|" * len(TOLERANCES) + "---|")
    for name, seqlen in CASES:
        backend = REGISTRY.get(name)
        qkv = make_qkv(AttnShape(q_len=seqlen, k_len=seqlen), device=device)
        plain = make_workload(backend, qkv, "forward")
        baseline = measure(plain, device, TimingConfig()).timing
        for fraction in (0.0, 0.05, 0.10):
            cycles = int(fraction * baseline.median_ms * cycles_per_ms)

            def slowed(plain: Any = plain, cycles: int = cycles) -> Any:
                output = plain()
                if cycles:
                    torch.cuda._sleep(cycles)
                return output

            trials = [
                (measure(slowed, device, TimingConfig()).timing, measure(slowed, device, TimingConfig()).timing)
                for _ in range(TRIALS)
            ]
            counts = [
                sum(gate_fails(first, second, baseline, tolerance) for first, second in trials)
                for tolerance in TOLERANCES
            ]
            mean_ratio = sum(first.median_ms for first, _ in trials) / TRIALS / baseline.median_ms
            label = "none (false alarms)" if fraction == 0 else f"+{fraction:.0%} of the median"
            cells = " | ".join(f"{count}/{TRIALS}" for count in counts)
            print(f"| {name} | {seqlen} | {baseline.median_ms:.4f} ms | {label} | {cells} | x{mean_ratio:.3f} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
