"""Test-only fault injection for proving the gate works: ATTNPERF_SLOWDOWN="sdpa-flash=50us".

It replaces the named backend with the same kernel followed by extra GPU work of known length
(``pytest_attnperf.measure.injection``: a dense matmul sized in time, which draws power as a real
kernel does, not a one-thread sleep), keeping the backend's name so the test compares against
that backend's real baseline, and must then fail its latency check.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from pytest_attnperf import REGISTRY, AttnShape
from pytest_attnperf.spec.units import parse_duration_ms


def _install_slowdown(spec: str) -> None:
    from pytest_attnperf.measure.injection import Injector

    name, _, delay = spec.partition("=")
    delay_ms = parse_duration_ms(delay)
    original = REGISTRY.get(name)
    extra: dict[tuple[Any, ...], Any] = {}

    def slowed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        output = original.run(q, k, v, shape)
        key = (q.device, q.dtype)
        if key not in extra:  # sized once per device and dtype, in time, before the first timed call
            injector = Injector(q.device, q.dtype, "compute")
            extra[key] = injector.injection(injector.size_for(delay_ms))
        extra[key]()
        return output

    REGISTRY.unregister(name)
    REGISTRY.register(
        dataclasses.replace(original, run=slowed, description=f"{original.description} + {delay} of matmul")
    )


if os.environ.get("ATTNPERF_SLOWDOWN"):
    _install_slowdown(os.environ["ATTNPERF_SLOWDOWN"])
