"""The gate, live, through ``pytest --attnperf``: unchanged cases, +3 % and +5 % of extra GPU work, and a
power-heavier kernel (the same cycles at more energy per cycle). Driven by ``benchmarks/gate_validation_live.py``.

The power-heavier row's baseline is recorded on the seeded inputs rounded to a few fractional bits (made
once per input, outside the timed calls: fewer bits switching, the same instructions) and gated on the
seeded inputs as they are: at the power cap its clock falls and its wall time rises, and the gate must
catch it. The +3 / +5 % rows run the unchanged backend followed by a matmul (a copy for the memory-bound
decode step) sized to that fraction of the unchanged baseline's median.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from live_cases import ALL_CASES, EXTRA, interleaved, item_id, phase, rounding_bits

from pytest_attnperf import AttnPerf
from pytest_attnperf.backends.registry import REGISTRY, Backend
from pytest_attnperf.measure.injection import Injector
from pytest_attnperf.measure.inputs import QKV, make_qkv
from pytest_attnperf.session.state import session_of

_injectors: dict[str, tuple[Injector, int]] = {}


def _inputs(case: str, rounded: bool, device: torch.device) -> QKV:
    qkv = make_qkv(ALL_CASES[case].shape, device=device)
    if rounded:
        scale = float(2 ** rounding_bits())
        with torch.no_grad():
            for tensor in (qkv.q, qkv.k, qkv.v):
                tensor.copy_(torch.round(tensor * scale) / scale)
    return qkv


def _slowed(
    backend: Backend, trial: int | None, case: str, row: str, request: pytest.FixtureRequest, device: torch.device
) -> Backend:
    """The backend followed by extra GPU work worth EXTRA[row] of the unchanged baseline's median (sized once per
    case and row: every trial's entry is the same recorded one)."""
    key = f"{case}-{row}"
    if key not in _injectors:
        unchanged = request.node.nodeid.replace(
            f"[{item_id(case, row, trial)}]", f"[{item_id(case, 'unchanged', trial)}]"
        )
        entry = session_of(request.config).baseline_entry(unchanged)
        if entry is None or entry.median_ms is None:
            pytest.fail(f"{unchanged} has no baseline: record the unchanged row first (gate_validation_live.py record)")
        injector = Injector(device, torch.float16, ALL_CASES[case].injection)
        _injectors[key] = (injector, injector.size_for(EXTRA[row] * entry.median_ms))
    injector, size = _injectors[key]
    extra = injector.injection(size)
    run = backend.run

    def slowed(*arguments: Any) -> Any:
        output = run(*arguments)
        extra()
        return output

    return dataclasses.replace(backend, run=slowed)


@pytest.mark.attnperf_latency
@pytest.mark.parametrize(("trial", "case", "row"), interleaved(), ids=[item_id(c, r, t) for t, c, r in interleaved()])
def test_gate(attnperf: AttnPerf, trial: int | None, case: str, row: str, request: pytest.FixtureRequest) -> None:
    backend = REGISTRY.get(ALL_CASES[case].backend)
    qkv = _inputs(case, rounded=row == "power" and phase() == "record", device=attnperf.device)
    if row in EXTRA:
        backend = _slowed(backend, trial, case, row, request, attnperf.device)
    result = attnperf.measure(backend, qkv)
    assert result.fits, result.reason
