"""``attnperf compare BASE.json HEAD.json``: what a pull request changed, as the Markdown a PR comment shows.

Each HEAD case is paired with the BASE case of the same test on the same GPU model. A pair is refused,
as the gate refuses a baseline, when the two measured different problems (backend, mode, shape:
gate/identity.py) or different GPU models; refused rows are listed with the reason, never compared.
The verdict and tolerance shown are HEAD's own gate (against the committed baselines); the base/head
ratio beside them is the two CI runs side by side, for reading, not a second gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..gate.identity import problem_differences
from ..spec.device_info import SOFTWARE_KEYS
from ..spec.units import format_bytes, format_ms
from .stored import StoredReport, gpu_of, problem_of, short_id

COMMENT_LIMIT = 65536  # characters GitHub accepts in one comment
QUIET_BAND = 0.03  # under the size limit, a passing case within this of BASE is the first to be left out
MARKER = "<!-- attnperf-compare -->"  # the first line: a workflow finds its own comment by it and updates it
FAILING_VERDICTS = ("REGRESSION", "MISMATCH")  # the verdicts that fail HEAD's gate, and `compare`'s exit status


@dataclass
class Row:
    case: str
    gpu: str
    base: dict[str, Any] | None
    head: dict[str, Any] | None
    refused: str | None = None
    software: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.base is None or self.head is None or self.refused:
            return None
        before, after = self.base.get("median_ms"), self.head.get("median_ms")
        return after / before if before and after else None

    @property
    def failing(self) -> bool:
        verdicts = (self.head or {}).get("verdicts") or {}
        return any(word in verdicts.values() for word in FAILING_VERDICTS)


def software_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """'torch 2.12.0 -> 2.13.0' for each component whose version differs between two environments."""
    before, after = before or {}, after or {}
    return [
        f"{key} {before.get(key) or 'none'} -> {after.get(key) or 'none'}"
        for key in SOFTWARE_KEYS
        if key in before and key in after and before.get(key) != after.get(key)
    ]


def pair_cases(base: StoredReport, head: StoredReport) -> list[Row]:
    """HEAD's cases in its order, each with its BASE case or why it has none; then BASE's removed cases."""
    by_key = {(gpu_of(case), case["test_id"]): case for case in base.cases}
    gpus_of_test: dict[str, list[str]] = {}
    for case in base.cases:
        gpus_of_test.setdefault(case["test_id"], []).append(gpu_of(case))
    rows: list[Row] = []
    seen = set()
    for case in head.cases:
        key = (gpu_of(case), case["test_id"])
        row = Row(short_id(case["test_id"]), str(case.get("device") or key[0]), by_key.get(key), case)
        if row.base is None:
            others = gpus_of_test.get(case["test_id"])
            row.refused = f"measured on {', '.join(others)} in BASE, {key[0]} in HEAD" if others else "new in HEAD"
        else:
            seen.add(key)
            differences = problem_differences(problem_of(row.base), problem_of(case))
            if differences:
                row.refused = f"another problem: {', '.join(differences)}"
            row.software = software_changes(row.base.get("environment"), case.get("environment"))
        rows.append(row)
    heads = {case["test_id"] for case in head.cases}
    for key, case in by_key.items():
        if key not in seen and case["test_id"] not in heads:
            rows.append(Row(short_id(case["test_id"]), str(case.get("device") or key[0]), case, None, "not in HEAD"))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _label(report: StoredReport, side: str) -> str:
    return f"{side} `{report.commit[:10]}`" if report.commit else side


def _tolerance(case: Mapping[str, Any]) -> str:
    tolerance = case.get("tolerance")
    return f"{100 * tolerance:.1f} %" if isinstance(tolerance, (int, float)) else "-"


def _quiet(row: Row) -> bool:
    """A passing case whose median moved less than QUIET_BAND from BASE's."""
    ratio = row.ratio
    return not row.failing and ratio is not None and abs(ratio - 1) < QUIET_BAND


def markdown(base: StoredReport, head: StoredReport, rows: Sequence[Row], limit: int = COMMENT_LIMIT) -> str:
    """The comment: a headline, what changed, the compared table, the refused rows; within ``limit`` characters.

    A run of hundreds of cases on several GPU models can outgrow one comment: then the passing cases
    within QUIET_BAND of BASE are left out of the table, and the comment says how many.
    """
    text = _markdown(base, head, rows, omit_quiet=False)
    if len(text) <= limit:
        return text
    return _markdown(base, head, rows, omit_quiet=True)


def _markdown(base: StoredReport, head: StoredReport, rows: Sequence[Row], *, omit_quiet: bool) -> str:
    compared = [row for row in rows if row.refused is None]
    refused = [row for row in rows if row.refused is not None]
    failing = [row for row in rows if row.failing]
    common = set.intersection(*(set(row.software) for row in compared)) if compared else set()
    verdict = f"**{len(failing)} regression(s)** in HEAD's gate" if failing else "no regression in HEAD's gate"
    lines = [
        MARKER,
        f"## attnperf: {_label(head, 'HEAD')} vs {_label(base, 'BASE')}",
        "",
        f"{verdict}; {len(compared)} case(s) compared, {len(refused)} not compared.",
    ]
    ordered_common = [change for change in compared[0].software if change in common] if compared else []
    if ordered_common:
        lines += ["", f"Software changed since BASE: {', '.join(ordered_common)}."]
    if compared:
        lines += [
            "",
            "| case | GPU | BASE | HEAD | HEAD/BASE | peak memory | gate verdict | tolerance | software changed |",
            "|---|---|---:|---:|---:|---|---|---:|---|",
        ]
        shown = [row for row in compared if not (omit_quiet and _quiet(row))]
        for row in shown:
            assert row.base is not None
            assert row.head is not None
            ratio = row.ratio
            memory = f"{format_bytes(row.base.get('peak_bytes'))} -> {format_bytes(row.head.get('peak_bytes'))}"
            own = [change for change in row.software if change not in common]
            verdict_word = str(row.head.get("verdict") or "-")
            cells = (
                row.case,
                row.gpu,
                format_ms(row.base.get("median_ms")),
                format_ms(row.head.get("median_ms")),
                "-" if ratio is None else f"x{ratio:.3f}",
                memory,
                f"**{verdict_word}**" if row.failing else verdict_word,
                _tolerance(row.head),
                ", ".join(own) or "-",
            )
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        if len(shown) < len(compared):
            lines += [
                "",
                f"{len(compared) - len(shown)} passing case(s) within {100 * QUIET_BAND:g} % of BASE are left out: "
                "the whole table would not fit in one comment.",
            ]
    if refused:
        lines += [
            "",
            "Not compared (the gate would not compare these either):",
            "",
            "| case | GPU | reason | gate verdict |",
            "|---|---|---|---|",
        ]
        for row in refused:
            word = str((row.head or {}).get("verdict") or "-")
            word = f"**{word}**" if row.failing else word
            lines.append(f"| {_cell(row.case)} | {_cell(row.gpu)} | {_cell(row.refused or '')} | {_cell(word)} |")
    lines += [
        "",
        "<sub>`attnperf compare`: the verdict and tolerance are HEAD's gate against the committed baselines; "
        "HEAD/BASE is the two CI runs' medians side by side.</sub>",
    ]
    return "\n".join(lines) + "\n"


def exit_status(rows: Sequence[Row]) -> int:
    """1 when HEAD's gate has a failing verdict (a regression or a numerics mismatch), else 0."""
    return 1 if any(row.failing for row in rows) else 0
