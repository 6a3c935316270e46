"""Markdown cells shared by the study's sections: safe text, tables, status markers, reasons (no torch import)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .document import STATUS_CELLS, Record, as_count, as_number, as_text, length_label, ran, significant

STATUS_NOTES = {"does_not_fit": "does not fit", "unavailable": "n/a", "error": "error"}
MAX_REASON_CHARS = 300


def md(text: object) -> str:
    """Text safe inside a Markdown table cell or list item: one line, no HTML, no table breaks."""
    flat = " ".join(str(text).split())
    if len(flat) > MAX_REASON_CHARS:
        flat = flat[: MAX_REASON_CHARS - 1] + "…"
    flat = re.sub(r"([\\`*_\[\]|])", r"\\\1", flat)
    return flat.replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """Inline code that survives backticks inside the text."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: Sequence[int] = (0,)) -> list[str]:
    """A GitHub table: text columns left-aligned, numbers right-aligned."""
    rule = " | ".join(
        "---" if i in text_columns or i - len(header) in text_columns else "---:" for i in range(len(header))
    )
    lines = ["| " + " | ".join(header) + " |", f"| {rule} |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def status_cell(case: Record | None) -> str | None:
    """The marker for a cell without numbers, or None when the case ran."""
    if case is None:
        return "–"
    status = as_text(case.get("status")) or "unknown"
    if status == "ok":
        return None
    return STATUS_CELLS.get(status, md(status.replace("_", " ")))


def reason_notes(cases: Iterable[Record], row_key: Callable[[Record], str], seqlens: Sequence[int]) -> list[str]:
    """Why cells have no numbers: one line per (status, reason), naming rows and lengths once."""
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}
    for case in cases:
        status = as_text(case.get("status")) or "unknown"
        seqlen = as_count(case.get("seqlen"))
        if status == "ok" or seqlen is None:
            continue
        reason = as_text(case.get("reason")) or "no reason recorded"
        groups.setdefault((status, reason), {}).setdefault(row_key(case), []).append(seqlen)
    lines = []
    for (status, reason), rows in groups.items():
        named = []
        for row, lengths in rows.items():
            # A row that failed everywhere for one reason needs no list of lengths.
            every = sorted(set(lengths)) == list(seqlens)
            named.append(md(row) if every else f"{md(row)} ({', '.join(length_label(n) for n in sorted(lengths))})")
        label = STATUS_NOTES.get(status, status.replace("_", " "))
        lines.append(f"- *{md(label)}* — {', '.join(named)}: {md(reason)}")
    return ["Cells without numbers:", "", *lines, ""] if lines else []


def fastest_flash(cells: Mapping[Any, Record], seqlen: int, flash: Sequence[str]) -> tuple[str, float] | None:
    """The fastest FlashAttention backend that ran at this length, with its median."""
    timings = [
        (backend, median)
        for backend in flash
        if ran(case := cells.get((backend, seqlen))) and (median := as_number(case.get("median_ms"))) is not None
    ]
    return min(timings, key=lambda item: item[1]) if timings else None


def gap(value: object) -> str:
    """Signed percentage: -0.0123 -> '-1.23%'."""
    fraction = as_number(value)
    return "–" if fraction is None else f"{'+' if fraction > 0 else ''}{significant(100 * fraction)}%"
