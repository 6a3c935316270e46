"""``attnperf diff``: two baseline files, entry by entry, comparing only what measured the same problem (torch-free).

A ratio between two entries means something only when both measured the same problem on the same GPU model,
so the gate's own rules decide: files of two GPU models are not compared (unless asked, ``--any-gpu``), and an
entry whose backend, mode or shape changed is listed as "not compared" with what changed. Of the entries
compared, only those whose median or peak memory moved by more than the threshold, or that stopped (or started)
fitting, are listed; a summary line counts the rest, and says "no differences" when nothing changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec.device_info import slugify
from ..spec.units import format_bytes, format_ms
from .baseline_schema import BaselineEntry, BaselineFile
from .identity import problem_differences

DEFAULT_THRESHOLD = 0.05  # baselines of one code re-recorded differ by a few percent (their spread)


def device_identity(device: Mapping[str, Any]) -> str:
    """The GPU model a file was recorded on, as its file name says it (the slug; from the name for old files)."""
    slug = device.get("slug")
    return str(slug) if isinstance(slug, str) and slug else slugify(str(device.get("name") or ""))


def device_mismatch(old: BaselineFile, new: BaselineFile) -> str | None:
    """Why two files cannot be compared entry by entry: they hold two GPU models (None when they hold one)."""
    before, after = device_identity(old.device), device_identity(new.device)
    if before == after:
        return None
    return (
        f"{old.path} was recorded on {old.device.get('name')!s} ({before}), {new.path} on "
        f"{new.device.get('name')!s} ({after}): two GPU models' times are not a regression; "
        "give --any-gpu to compare them anyway"
    )


def _ratio(before: float | None, after: float | None) -> float | None:
    return after / before if before and after else None


def _moved(ratio: float | None, threshold: float) -> bool:
    return ratio is not None and abs(ratio - 1) > threshold


@dataclass
class Diff:
    """The rows to print and what each kind of entry counted."""

    rows: list[tuple[str, ...]] = field(default_factory=list)
    common: int = 0
    unchanged: int = 0
    added: int = 0
    removed: int = 0
    not_compared: int = 0

    def summary(self, threshold: float, *, shown_all: bool) -> str:
        changed = self.common - self.unchanged - self.not_compared
        if not (changed or self.added or self.removed or self.not_compared):
            return f"no differences: {self.common} entries in both files, none moved by more than {threshold:.0%}"
        parts = [f"{self.common} entries in both files: {changed} changed by more than {threshold:.0%}"]
        if self.unchanged:
            parts.append(f"{self.unchanged} within {threshold:.0%}" + ("" if shown_all else " (not shown; --all)"))
        if self.not_compared:
            parts.append(f"{self.not_compared} not compared (another problem)")
        return "; ".join(parts) + f"; {self.added} added, {self.removed} removed"


def _row(name: str, before: BaselineEntry, after: BaselineEntry) -> tuple[str, ...]:
    ratio, memory_ratio = _ratio(before.median_ms, after.median_ms), _ratio(before.peak_bytes, after.peak_bytes)
    fits = (
        ""
        if before.fits == after.fits
        else f" (fits {'yes' if before.fits else 'no'} -> {'yes' if after.fits else 'no'})"
    )
    return (
        name,
        f"{format_ms(before.median_ms)} -> {format_ms(after.median_ms)}",
        "-" if ratio is None else f"x{ratio:.3f}",
        f"{format_bytes(before.peak_bytes)} -> {format_bytes(after.peak_bytes)}{fits}",
        "-" if memory_ratio is None else f"x{memory_ratio:.3f}",
    )


def diff_baselines(
    old: BaselineFile, new: BaselineFile, *, threshold: float = DEFAULT_THRESHOLD, show_all: bool = False
) -> Diff:
    """Per-entry old -> new of the entries that moved beyond ``threshold`` (all with ``show_all``), plus the
    entries on one side only and those that measured another problem (never given a ratio)."""
    diff = Diff()
    for test_id in sorted(set(old.entries) | set(new.entries)):
        before, after = old.entries.get(test_id), new.entries.get(test_id)
        name = test_id.split("::", 1)[-1]
        if before is None or after is None:
            diff.added += before is None
            diff.removed += after is None
            diff.rows.append((name, "added" if before is None else "removed", "", "", ""))
            continue
        diff.common += 1
        differences = problem_differences(before.problem(), after.problem())
        if differences:
            diff.not_compared += 1
            diff.rows.append((name, f"not compared: another problem ({', '.join(differences)})", "", "", ""))
            continue
        moved = (
            _moved(_ratio(before.median_ms, after.median_ms), threshold)
            or _moved(_ratio(before.peak_bytes, after.peak_bytes), threshold)
            or before.fits != after.fits
            or (before.median_ms is None) != (after.median_ms is None)
        )
        diff.unchanged += not moved
        if moved or show_all:
            diff.rows.append(_row(name, before, after))
    return diff
