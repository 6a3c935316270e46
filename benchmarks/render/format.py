"""Writing numbers and Markdown: significant digits, ms/µs, bytes, ratios, ranges, lists, tables."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, trailing zeros kept (1.00, 82.1, 224)."""
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    if decimals <= 0:
        return f"{round(value):,}"
    text = f"{value:.{decimals}f}"
    # Rounding can add a digit (9.996 -> 10.00): format again with one decimal less.
    if len(text.replace("-", "").replace(".", "").lstrip("0")) > digits and decimals > 0:
        text = f"{value:.{decimals - 1}f}"
    return text


def fmt_ms(milliseconds: float) -> str:
    """Three significant digits, in µs below 0.1 ms: 0.423 ms, 59.1 µs, 82.1 ms."""
    return f"{sig(milliseconds * 1e3)} µs" if milliseconds < 0.1 else f"{sig(milliseconds)} ms"


def fmt_ms_precise(milliseconds: float) -> str:
    return f"{milliseconds:.4f} ms"


def fmt_bytes(num_bytes: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(num_bytes) >= scale:
            return f"{sig(num_bytes / scale)} {unit}"
    return f"{int(num_bytes)} B"


def fmt_bytes_range(low: float, high: float) -> str:
    """256–264 MiB, or 256 MiB–1.2 GiB when the units differ."""
    first, second = fmt_bytes(low), fmt_bytes(high)
    if first == second:
        return first
    (a, unit_a), (b, unit_b) = first.split(" "), second.split(" ")
    return f"{a}–{b} {unit_a}" if unit_a == unit_b else f"{first}–{second}"


def fmt_ratio(ratio: float) -> str:
    return f"×{ratio:.3f}"


def fmt_pct(fraction: float, decimals: int = 1, sign: bool = False) -> str:
    text = f"{fraction * 100:+.{decimals}f}" if sign else f"{fraction * 100:.{decimals}f}"
    return text.replace("-", "−") + " %"


def fmt_range(low: str, high: str) -> str:
    return low if low == high else f"{low}–{high}"


def span(values: Iterable[Any], fmt: Callable[[Any], str] = str) -> str:
    """The range of ``values``, each end formatted: '3', '31.2–35.0'."""
    values = list(values)
    return fmt_range(fmt(min(values)), fmt(max(values)))


def f3(value: float) -> str:
    return f"{value:.3f}"


def f1(value: float) -> str:
    return f"{value:.1f}"


def seqlen_label(seqlen: int) -> str:
    return f"{seqlen // 1024}K" if seqlen % 1024 == 0 else f"{seqlen:,}"


def join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def test_label(test_id: str) -> str:
    """'test_forward[sdpa-math-16K]' -> 'sdpa-math 16K'; 'test_prefill[llama-2-7b-eager-16K]' -> 'llama-2-7b eager prefill 16K'."""
    match = re.search(r"test_(\w+)\[(.+)-(\d+K|\d+)\]$", test_id)
    if match is None:
        return test_id
    kind, name, length = match.groups()
    if kind == "forward":
        return f"{name} {length}"
    model, _, implementation = name.rpartition("-")
    return f"{model} {implementation} {kind} {length}" if model else f"{name} {kind} {length}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """A Markdown table; the columns of ``right`` right-aligned."""
    aligned = set(right)
    out = ["| " + " | ".join(header) + " |"]
    out.append("| " + " | ".join("---:" if index in aligned else "---" for index in range(len(header))) + " |")
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return out
