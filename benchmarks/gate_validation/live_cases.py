"""The live gate validation's cases and rows (for validation only; read by test_live_gate.py).

Environment (set by ``benchmarks/gate_validation_live.py``):

- ``GATE_VALIDATION_CASES``: comma-separated case names (default: all of ``CASES``);
- ``GATE_VALIDATION_ROWS``: comma-separated rows (default: all of ``ROWS``);
- ``GATE_VALIDATION_PHASE``: ``record`` (the power-heavier row's baseline on inputs rounded to
  ``GATE_VALIDATION_ROUNDING`` fractional bits: less switching, the same cycles) or ``gate`` (every row
  on the seeded inputs as they are);
- ``GATE_VALIDATION_TRIAL`` and ``GATE_VALIDATION_TRIAL_COUNT``: the gate phase runs the trials numbered from
  the first for the count given (default 0 and 1), one after the other in this session; each is a parameter of
  the test (``[case-row-tN]``) and runs every case, with the rows of each case in an order rotated by its index.

A gated test's id names its trial, so its baseline entry is the record phase's ``[case-row]`` entry copied under
the trial's id (``gate_validation_live.py`` writes that copy): one entry per item, as the plugin looks them up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest

from pytest_attnperf.spec.shapes import AttnShape

ROWS = ("unchanged", "plus3", "plus5", "power")
EXTRA = {"plus3": 0.03, "plus5": 0.05}  # extra GPU work, a fraction of the unchanged baseline's median (wall time)


@dataclass(frozen=True)
class Case:
    backend: str
    shape: AttnShape

    @property
    def injection(self) -> str:
        return "memory" if self.shape.workload == "decode" else "compute"


def _prefill(backend: str, seqlen: int) -> Case:
    return Case(backend, AttnShape(q_len=seqlen, k_len=seqlen, dtype="float16"))


CASES = {
    "flash-attn-16K": _prefill("flash-attn", 16384),
    "flash-attn-32K": _prefill("flash-attn", 32768),
    "sdpa-cudnn-16K": _prefill("sdpa-cudnn", 16384),
    "sdpa-cudnn-32K": _prefill("sdpa-cudnn", 32768),
    "sdpa-flash-4K": _prefill("sdpa-flash", 4096),
    "flex-16K": _prefill("flex", 16384),
    "eager-4K": _prefill("eager", 4096),
    "decode-flash-attn-16K": Case("flash-attn", AttnShape(q_len=1, k_len=16384, workload="decode", dtype="float16")),
}
SMOKE = {
    "eager-256": Case("eager", AttnShape(q_len=256, k_len=256, heads=2, kv_heads=2, dtype="float32"))
}  # a CPU run of the script
ALL_CASES = {**CASES, **SMOKE}


def _listed(variable: str, known: tuple[str, ...]) -> list[str]:
    names = [name for name in os.environ.get(variable, "").split(",") if name] or list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise pytest.UsageError(f"{variable}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    return names


def selected_cases() -> list[str]:
    names = [name for name in os.environ.get("GATE_VALIDATION_CASES", "").split(",") if name] or list(CASES)
    unknown = [name for name in names if name not in ALL_CASES]
    if unknown:
        raise pytest.UsageError(
            f"GATE_VALIDATION_CASES: unknown {', '.join(unknown)}; expected some of {', '.join(ALL_CASES)}"
        )
    return names


def selected_rows() -> list[str]:
    return _listed("GATE_VALIDATION_ROWS", ROWS)


def _whole_number(variable: str, default: int, minimum: int) -> int:
    value = os.environ.get(variable, str(default))
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise pytest.UsageError(f"{variable} must be a whole number >= {minimum}, not {value!r}")
    return number


def trials() -> list[int]:
    """The trial indices this gate session runs, in order."""
    first = _whole_number("GATE_VALIDATION_TRIAL", 0, 0)
    return list(range(first, first + _whole_number("GATE_VALIDATION_TRIAL_COUNT", 1, 1)))


def phase() -> str:
    value = os.environ.get("GATE_VALIDATION_PHASE", "gate")
    if value not in ("record", "gate"):
        raise pytest.UsageError(f"GATE_VALIDATION_PHASE must be record or gate, not {value!r}")
    return value


def rounding_bits() -> int:
    return int(os.environ.get("GATE_VALIDATION_ROUNDING", "3"))


def interleaved() -> list[tuple[int | None, str, str]]:
    """(trial, case, row) in run order: the record phase once, without a trial; the gate phase trial after trial,
    every case in each, its rows rotated by the trial's index, so no row always runs first and drift over the
    session falls on every row alike."""
    rows, cases = selected_rows(), selected_cases()
    if phase() == "record":
        return [(None, case, row) for case in cases for row in rows]
    return [
        (index, case, row)
        for index in trials()
        for case in cases
        for row in rows[index % len(rows) :] + rows[: index % len(rows)]
    ]


def item_id(case: str, row: str, trial: int | None) -> str:
    """The parameter id of one item: ``case-row`` (record), ``case-row-tN`` (trial N)."""
    return f"{case}-{row}" if trial is None else f"{case}-{row}-t{trial}"


_ID = re.compile(rf"\[(?P<case>[^\[\]]+)-(?P<row>{'|'.join(ROWS)})(?:-t(?P<trial>\d+))?\]$")


def parse_item_id(node_id: str) -> tuple[str, str, int | None]:
    """(case, row, trial) of a node id of test_gate (trial None: the record phase's id)."""
    match = _ID.search(node_id)
    if match is None or match["case"] not in ALL_CASES:
        raise ValueError(f"{node_id!r} is not an id of test_gate[case-row] or test_gate[case-row-tN]")
    return match["case"], match["row"], None if match["trial"] is None else int(match["trial"])
