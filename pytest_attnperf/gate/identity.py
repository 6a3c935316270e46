"""Is a baseline entry a measurement of the same problem as this run's case? (torch-free)

A test id names a test, not a problem: ``--attnperf-heads=1`` or ``--attnperf-mode=backward``
run the same ids on other shapes or in other modes. An entry only gates the backend, mode and
shape it was recorded for; anything else is a named mismatch, never a silent comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(map(str, value)) + ")"
    return str(value)


def problem_differences(recorded: Mapping[str, Any], measured: Mapping[str, Any]) -> list[str]:
    """'heads 8 -> 1', 'mode forward -> backward', ...: what differs between two problems (recorded -> now).

    Each side is {"backend": ..., "mode": ..., "shape": {...} or None}. Shape keys present on one side
    only are not compared (an entry recorded by an older version may lack some), nor is a missing shape.
    """
    differences = []
    for key in ("backend", "mode"):
        before, after = recorded.get(key), measured.get(key)
        if before is not None and after is not None and before != after:
            differences.append(f"{key} {before} -> {after}")
    shape_before, shape_after = recorded.get("shape") or {}, measured.get("shape") or {}
    for key in sorted(shape_before.keys() & shape_after.keys()):
        before, after = shape_before[key], shape_after[key]
        if _normal(before) != _normal(after):
            differences.append(f"{key} {_show(before)} -> {_show(after)}")
    return differences


def _normal(value: Any) -> Any:
    """Lists and tuples alike (YAML gives lists, AttnShape tuples); ints and floats alike."""
    if isinstance(value, (list, tuple)):
        return tuple(_normal(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
