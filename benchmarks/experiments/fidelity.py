"""Fidelity of the plugin's timing: its median vs triton.testing.do_bench's median, per backend and length.

Run on the GPU machine: python3 benchmarks/experiments/fidelity.py > fidelity.md
Both time the same workload on the same inputs; do_bench flushes L2 with a 256 MiB buffer,
the plugin with twice the L2 size. The table is Markdown, ready for docs/measurement.md.
"""

from __future__ import annotations

import statistics
import sys

import torch
import triton.testing

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.measurement import measure
from pytest_attnperf.measure.memory import DoesNotFit, release_memory
from pytest_attnperf.measure.timing import spin_up
from pytest_attnperf.session.case_runner import make_workload
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape

SEQLENS = (1024, 4096, 16384, 32768)


def main() -> int:
    device = torch.device("cuda", torch.cuda.current_device())
    info = describe_device(device)
    spin_up(device, 1.0)
    print(f"# Timing fidelity on {info.name} (torch {info.torch}, triton {info.triton})\n")
    print("B=1, H=32, D=128, fp16, causal, forward. Median ms; ratio = plugin / do_bench.\n")
    print("| backend | length | plugin (CUDA events) | do_bench (median) | ratio | plugin SM clock (MHz) |")
    print("|---|---|---|---|---|---|")
    for seqlen in SEQLENS:
        shape = AttnShape(q_len=seqlen, k_len=seqlen)
        qkv = make_qkv(shape, device=device)
        for backend in REGISTRY:
            if backend.unsupported_reason(shape, info):
                continue
            workload = make_workload(backend, qkv, "forward")
            try:
                timing = measure(workload, device, TimingConfig(min_samples=20)).timing
            except DoesNotFit:
                print(f"| {backend.name} | {seqlen} | does not fit | - | - | - |")
                continue
            ours = timing.median_ms
            clocks = [clock for clock in timing.clocks_mhz if clock]
            clock = f"{statistics.median(clocks):.0f}" if clocks else "-"
            theirs = triton.testing.do_bench(workload, warmup=25, rep=200, return_mode="median")
            print(f"| {backend.name} | {seqlen} | {ours:.4f} | {theirs:.4f} | {ours / theirs:.3f} | {clock} |")
            sys.stdout.flush()
            release_memory(device)
        qkv = None
        release_memory(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
