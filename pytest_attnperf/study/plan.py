"""What a study measures, as recorded in its study.json: its plan, its parts, which are missing, and the
--configs choice of which parts one call measures (no torch import).

A study's parts are its prefill configurations and its decode section. A run writes study.json after each
part, so a run cut off by a time limit keeps what finished and a later run measures only the rest; the plan
says which study a file belongs to, so parts of different studies are never mixed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..spec.options import TimingConfig
from .decode_plan import DecodeStudy
from .document import mapping, records

DECODE_PART = "decode section"
_NUMBERS = re.compile(r"^([0-9]+)(?:\s*-\s*([0-9]+))?$")  # ASCII digits: "²".isdigit() is true, int("²") fails


class SelectionError(ValueError):
    """A --configs value names no configuration of the study; the message lists the accepted ones."""


def study_plan(
    *,
    configs: Sequence[Mapping[str, Any]],
    seqlens: Sequence[int],
    backends: Sequence[str],
    decode: DecodeStudy | None,
    timing: TimingConfig,
    seed: int,
    frontier: bool,
) -> dict[str, Any]:
    """The study's identity: everything that decides what its numbers mean, as JSON-able values."""
    plan = {
        "configs": [dict(config) for config in configs],
        "seqlens": list(seqlens),
        "backends": list(backends),
        "decode": dataclasses.asdict(decode) if decode is not None else None,
        "timing": dataclasses.asdict(timing),
        "seed": seed,
        "frontier": frontier,
    }
    read_back: dict[str, Any] = json.loads(json.dumps(plan))  # tuples as lists, as study.json gives them back
    return read_back


def planned_config_names(plan: Mapping[str, Any]) -> list[str]:
    """The configuration names of a plan, in the study's order."""
    return [str(config.get("name")) for config in records(plan.get("configs"))]


def finished_parts(study: Mapping[str, Any]) -> list[str]:
    """The parts a study document holds: its configurations' names, then the decode section if it has one."""
    names = [str(config.get("name")) for config in records(study.get("configs"))]
    return names + ([DECODE_PART] if "decode" in study else [])


def missing_parts(study: Mapping[str, Any]) -> list[str]:
    """The parts of the study's plan it does not hold yet, in the study's order."""
    plan = mapping(study.get("plan"))
    done = set(finished_parts(study))
    wanted = planned_config_names(plan) + ([DECODE_PART] if plan.get("decode") is not None else [])
    return [part for part in wanted if part not in done]


def _accepted(names: Sequence[str]) -> str:
    listed = ", ".join(f"{index} {name!r}" for index, name in enumerate(names, start=1))
    return f"accepted: {listed}; or a range such as 2-{len(names)}, comma-separated"


def select_configs(spec: str, names: Sequence[str]) -> tuple[str, ...]:
    """The configurations a --configs value chooses, in the study's order.

    Items are comma-separated: a number from 1, a range ``2-5`` (both ends included) or a name
    (case and spacing as you like: ``"bf16 causal d128"``)."""
    by_name = {" ".join(name.lower().split()): name for name in names}
    chosen: set[str] = set()
    items = spec.split(",")
    for raw in items:
        item = " ".join(raw.split())
        if not item:
            raise SelectionError(f"--configs {spec!r}: an empty item; {_accepted(names)}")
        numbers = _NUMBERS.match(item)
        if numbers:
            first, last = int(numbers[1]), int(numbers[2] or numbers[1])
            if not 1 <= first <= last <= len(names):
                problem = "a range that runs backwards" if first > last else f"only 1-{len(names)} exist"
                raise SelectionError(f"--configs {spec!r}: {item!r}: {problem}; {_accepted(names)}")
            chosen.update(names[first - 1 : last])
        elif item.lower() in by_name:
            chosen.add(by_name[item.lower()])
        else:
            raise SelectionError(f"--configs {spec!r}: unknown configuration {item!r}; {_accepted(names)}")
    return tuple(name for name in names if name in chosen)
