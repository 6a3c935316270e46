"""The study document (schema ``attnperf-study/1``, a plain JSON-able dict): reading it defensively, and formatting.

Every key other than ``configs`` is optional, and a malformed value is treated as missing rather
than raised on: a report should still come out of a partial run. Shared by the Markdown and the
plots; no torch, no matplotlib.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeGuard

from ..spec.shapes import length_id
from ..spec.units import format_ms

Record = Mapping[str, Any]
# "FlashAttention on" is the fastest of these that ran; "off" is the materialised eager path. A study
# records the registry's own lists (``flash_backends``, ``materialised_backends``); these are the
# defaults for documents written before it did.
FLASH_BACKENDS = ("flash-attn", "sdpa-flash", "flash-attn-3")
OFF_BACKEND = "eager"
MATERIALISED_BACKENDS = ("eager", "sdpa-math")
STATUS_CELLS = {"does_not_fit": "**does not fit**", "unavailable": "n/a", "error": "error"}


def as_number(value: object) -> float | None:
    """A finite number, or None for anything else (None, NaN, bools, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def as_count(value: object) -> int | None:
    """An integral count, or None."""
    number = as_number(value)
    return int(number) if number is not None else None


def records(value: object) -> list[Record]:
    """The mappings in a list-valued key; missing or malformed gives an empty list."""
    if not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def mapping(value: object) -> Record:
    """A mapping-valued key, or an empty mapping."""
    return value if isinstance(value, Mapping) else {}


def as_text(value: object) -> str | None:
    """Non-empty text, or None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def ran(case: Record | None) -> TypeGuard[Record]:
    """Whether a case ran and produced numbers."""
    return case is not None and case.get("status") == "ok"


def grid(cases: Iterable[Record], row_key: Callable[[Record], str]) -> tuple[list[str], list[int], dict[Any, Record]]:
    """Rows in order of first appearance, sorted lengths, and (row, seqlen) -> case."""
    rows: list[str] = []
    seqlens: set[int] = set()
    cells: dict[Any, Record] = {}
    for case in cases:
        row, seqlen = row_key(case), as_count(case.get("seqlen"))
        if seqlen is None:
            continue
        if row not in rows:
            rows.append(row)
        seqlens.add(seqlen)
        cells[(row, seqlen)] = case
    return rows, sorted(seqlens), cells


def backend_of(case: Record) -> str:
    """The backend name of a case."""
    return as_text(case.get("backend")) or "?"


def config_grid(config: Record) -> tuple[list[str], list[int], dict[Any, Record]]:
    """Backends, lengths and cells of one config."""
    return grid(records(config.get("cases")), backend_of)


def matmul_peak(study: Record, dtype: object) -> float | None:
    """The measured matmul ceiling for a dtype, when the study has one."""
    return as_number(mapping(study.get("matmul_peak_tflops")).get(str(dtype)))


def frontier_for(study: Record, config_name: str | None) -> list[Record]:
    """Frontier entries of one config (entries that name no config apply to all)."""
    entries = records(study.get("frontier"))
    return [e for e in entries if e.get("config") is None or e.get("config") == config_name]


def significant(value: float) -> str:
    """Three significant digits, trailing zeros kept (1.00, 12.9, 342)."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:#.3g}".rstrip(".")


def duration(milliseconds: float | None) -> str:
    """Like format_ms, but seconds above one second (transformers runs can be long)."""
    if milliseconds is not None and milliseconds >= 1000:
        return f"{milliseconds / 1000:.3g} s"
    return format_ms(milliseconds)


def token_count(tokens: int | None) -> str:
    """A token count with thousands separators (exact, not rounded)."""
    return "–" if tokens is None else f"{tokens:,}"


def gpu_name(study: Record) -> str:
    """The device name, or a placeholder."""
    return as_text(mapping(study.get("gpu")).get("name")) or "unknown device"


def config_summary(config: Record) -> str:
    """'float16, causal, batch 1, 32 heads (8 KV heads), head_dim 128'."""
    parts = [as_text(config.get("dtype"))]
    causal = config.get("causal")
    parts.append(None if causal is None else ("causal" if causal else "not causal"))
    for label, key in (("batch", "batch"), ("heads", "heads"), ("head_dim", "head_dim")):
        value = as_count(config.get(key))
        if value is not None:
            parts.append(f"{value} heads" if label == "heads" else f"{label} {value}")
    kv_heads, heads = as_count(config.get("kv_heads")), as_count(config.get("heads"))
    if kv_heads is not None and kv_heads != heads:
        parts.append(f"{kv_heads} KV heads")
    return ", ".join(p for p in parts if p)


def render_json(study: Mapping[str, Any]) -> str:
    """The study as stable JSON (sorted keys, indent 2); NaN and infinity raise ValueError."""
    return json.dumps(study, sort_keys=True, indent=2, allow_nan=False) + "\n"


def length_label(length: int) -> str:
    """1024 -> 1K, 32768 -> 32K; lengths that are not whole K keep thousands separators."""
    label = length_id(length)
    return f"{length:,}" if label == str(length) else label


def flash_backends(study: Record) -> tuple[str, ...]:
    """The backends that count as "FlashAttention on" in this study."""
    names = study.get("flash_backends")
    return tuple(str(name) for name in names) if isinstance(names, list) else FLASH_BACKENDS


def materialised_backends(study: Record) -> tuple[str, ...]:
    """The backends that materialise the score matrix (so they have a memory frontier)."""
    names = study.get("materialised_backends")
    return tuple(str(name) for name in names) if isinstance(names, list) else MATERIALISED_BACKENDS
