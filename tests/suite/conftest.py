"""Test-only fault injection for proving the gate works: ATTNPERF_SLOWDOWN="sdpa-flash=50us".

It replaces the named backend with the same kernel followed by a GPU sleep kernel of known
length (``torch.cuda._sleep``, calibrated once with CUDA events), keeping the backend's name so
the test compares against that backend's real baseline, and must then fail its latency check.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import torch

from pytest_attnperf import REGISTRY, AttnShape
from pytest_attnperf.spec.units import parse_duration_ms


@functools.lru_cache(maxsize=1)
def _cycles_per_ms() -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(1_000_000)  # warm-up
    start.record()
    torch.cuda._sleep(10_000_000)
    end.record()
    end.synchronize()
    return 10_000_000 / start.elapsed_time(end)


def _install_slowdown(spec: str) -> None:
    name, _, delay = spec.partition("=")
    delay_ms = parse_duration_ms(delay)
    original = REGISTRY.get(name)

    def slowed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        output = original.run(q, k, v, shape)
        torch.cuda._sleep(int(delay_ms * _cycles_per_ms()))
        return output

    REGISTRY.unregister(name)
    REGISTRY.register(dataclasses.replace(original, run=slowed, description=f"{original.description} + {delay} sleep"))


if os.environ.get("ATTNPERF_SLOWDOWN"):
    _install_slowdown(os.environ["ATTNPERF_SLOWDOWN"])
