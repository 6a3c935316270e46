"""How well the plugin's clock agrees with others: do_bench, Nsight Compute, the timing modes (CUDA graph)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from render.format import f1, f3, fmt_ms, fmt_ratio, join, seqlen_label, span, table, test_label
from render.source import Context, PytestSummary, RenderError, attnperf_rows, markdown_tables, parse_ms, summary_line
from render.study import cases_of, ran_ok, study_config

Fidelity = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # (cases that ran, cases that did not fit)


def fidelity_rows(ctx: Context, name: str) -> Fidelity:
    """(cases that ran, cases that did not fit) of fidelity.md, each with the plugin/do_bench ratio."""
    # The stage logs stderr into the same file: a library's warning printed between two rows (FlashAttention-4's
    # CuTe DSL note) is dropped, so the table reads as one.
    lines = ctx.read(name).splitlines()
    rows = [index for index, line in enumerate(lines) if line.lstrip().startswith("|")]
    kept = [line for index, line in enumerate(lines) if not rows or index in rows or not rows[0] < index < rows[-1]]
    tables = markdown_tables("\n".join(kept))
    if not tables:
        raise ctx.error("no table")
    ran, unfit = [], []
    for row in tables[0]:
        plugin = parse_ms(row.get("plugin (CUDA events)", ""))
        reference = parse_ms(row.get("do_bench (median)", ""))
        case = {"backend": row["backend"], "seqlen": int(row["length"]), "plugin": plugin, "do_bench": reference}
        if plugin is None or reference is None:
            unfit.append(case)
        else:
            ran.append({**case, "ratio": plugin / reference})
    return ran, unfit


def _within(cases: Iterable[dict[str, Any]], band: float) -> int:
    return sum(abs(case["ratio"] - 1) <= band + 1e-12 for case in cases)


def _case_name(case: dict[str, Any]) -> str:
    return f"{case['backend']} {seqlen_label(case['seqlen'])}"


def _outside(ran: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases more than 3 % from do_bench, the lowest ratio first."""
    return sorted((case for case in ran if abs(case["ratio"] - 1) > 0.03), key=lambda case: case["ratio"])


def fidelity_summary(ctx: Context, cases: Fidelity) -> list[str]:
    """One sentence for the README: how many cases agree with do_bench within ±3 %, and which do not."""
    ran, outside = cases[0], _outside(cases[0])
    listed = "; outside it, plugin/do_bench: " + join([f"{_case_name(c)} {fmt_ratio(c['ratio'])}" for c in outside])
    return [
        f"The plugin's medians agree with `triton.testing.do_bench` within ±3 % for {_within(ran, 0.03)} of the "
        f"{len(ran)} cases that fit (fp16, causal, B=1, H=32, D=128, forward){listed if outside else ''}."
    ]


def fidelity(ctx: Context, cases: Fidelity) -> list[str]:
    """The do_bench comparison: counts within ±3 % and ±2.5 %, the cases outside, and the same cases in the study."""
    (ran, unfit), outside = cases, _outside(cases[0])
    ratios = [case["ratio"] for case in ran]
    lines = [
        f"- {len(ran)} of the {len(ran) + len(unfit)} cases fit ({join([_case_name(case) for case in unfit])} do not). "
        f"{_within(ran, 0.03)} of the {len(ran)} agree within ±3 % and {_within(ran, 0.025)} within ±2.5 % "
        f"(plugin/do_bench {ratios and span(ratios, f3)}).",
        "- Outside ±3 %: "
        + join(
            [
                f"{_case_name(c)} {fmt_ratio(c['ratio'])} (plugin {fmt_ms(c['plugin'])}, do_bench {fmt_ms(c['do_bench'])})"
                for c in outside
            ]
        )
        + ".",
    ]
    if ctx.exists("study.json"):
        study_cases = cases_of(study_config(ctx, ctx.load("study.json")))
        again = [
            f"{_case_name(case)} {fmt_ms(study_cases[(case['backend'], case['seqlen'])]['median_ms'])}"
            for case in outside
            if ran_ok(study_cases.get((case["backend"], case["seqlen"])))
        ]
        if again:
            lines.append(f"- The same cases in the plugin's study run: {join(again)}.")
    return lines


def ncu_rows(ctx: Context, name: str) -> list[dict[str, Any]]:
    """The cases of ncu-fidelity.md: the plugin's median against Nsight Compute's kernel sum."""
    rows = []
    for row in ctx.tables(name)[0]:
        backend, _, length = row["case"].rpartition("-")
        plugin, kernel = float(row["plugin median (ms)"]), float(row["ncu kernel sum (ms)"])
        rows.append(
            {"backend": backend, "seqlen": int(length), "plugin": plugin, "ncu": kernel, "kernels": int(row["kernels"]),
             "ratio": plugin / kernel}
        )  # fmt: skip
    return rows


def ncu(ctx: Context, rows: list[dict[str, Any]]) -> list[str]:
    """Plugin medians against Nsight Compute's kernel time, per length; how many within ±3 %."""
    lines = []
    shortest = min(row["seqlen"] for row in rows)
    for seqlen in sorted({row["seqlen"] for row in rows}):
        single = sorted((r for r in rows if r["seqlen"] == seqlen and r["kernels"] == 1), key=lambda r: -r["ratio"])
        multi = [r for r in rows if r["seqlen"] == seqlen and r["kernels"] > 1]
        parts = []
        if single:
            gap = f"; plugin − ncu {span([(r['plugin'] - r['ncu']) * 1e3 for r in single], f1)} µs"
            ratios = ", ".join(f"{r['backend']} {r['ratio']:.3f}" for r in single)
            parts.append(
                f"single-kernel backends {span([r['ratio'] for r in single], f3)} ({ratios}"
                f"{gap if seqlen == shortest else ''})"
            )
        parts.extend(f"{r['backend']} ({r['kernels']} kernels) {r['ratio']:.3f}" for r in multi)
        lines.append(f"- {seqlen_label(seqlen)}: " + "; ".join(parts) + ".")
    return [*lines, f"- **Within ±3 %: {_within(rows, 0.03)} of the {len(rows)} cases.**"]


def modes_sections(ctx: Context, name: str) -> list[dict[str, Any]]:
    """The sections of modes.log: the extra option, its table rows, its summary and skip lines."""
    sections: list[dict[str, Any]] = []
    for chunk in re.split(r"^=== ", ctx.read(name), flags=re.M)[1:]:
        option, _, body = chunk.partition("\n")
        skips = [(int(count), reason) for count, reason in re.findall(r"SKIPPED \[(\d+)\] [^:]+:\d+: (.+)", body)]
        summary = PytestSummary.parse(summary_line(body))
        sections.append({"option": option.strip(), "rows": attnperf_rows(body), "summary": summary, "skips": skips})
    if not sections:
        raise ctx.error("no '=== option' sections", name)
    return sections


def modes(ctx: Context, sections: list[dict[str, Any]]) -> list[str]:
    """Graph mode and the training modes at 1K/4K: outcome counts per mode, and which cases are missing."""
    everyone = {row["test"] for section in sections for row in section["rows"]}
    rows = []
    for section in sections:
        missing = sorted(everyone - {row["test"] for row in section["rows"]}, key=test_label)
        skip = "; ".join(
            f"{count} skipped: {reason.split(' needs ')[0]} not installed"
            if " needs " in reason
            else f"{count}: {reason}"
            for count, reason in section["skips"]
        )
        outcome = section["summary"].text()
        rows.append(
            [f"`{section['option']}`", outcome, join([test_label(test) for test in missing]) or "–", skip or "–"]
        )
    return table(["option", "outcome", "cases missing from its table", "skips"], rows)


def graph_vs_ncu(ctx: Context, ncu_cases: list[dict[str, Any]]) -> list[str]:
    """The 1K single-kernel cases: event-timed eager mode, CUDA-graph mode (modes.log) and ncu's kernel time."""
    ncu = {(r["backend"], r["seqlen"]): r for r in ncu_cases if r["kernels"] == 1}
    graph = next((s for s in modes_sections(ctx, "modes.log") if "cuda-graph" in s["option"]), None)
    if graph is None:
        raise ctx.error("no CUDA-graph section", "modes.log")
    rows: list[list[str]] = []
    graph_ratios: dict[int, list[float]] = {}
    plain_ratios: dict[int, list[float]] = {}
    for row in graph["rows"]:
        key = (row["backend"], int(row["len"]))
        median = parse_ms(row["median"])
        if key not in ncu or median is None:
            continue
        reference = ncu[key]
        graph_ratios.setdefault(key[1], []).append(median / reference["ncu"])
        plain_ratios.setdefault(key[1], []).append(reference["ratio"])
        events = f"{fmt_ms(reference['plugin'])} ({fmt_ratio(reference['ratio'])})"
        graphed = f"{fmt_ms(median)} ({fmt_ratio(median / reference['ncu'])})"
        rows.append([f"{key[0]} {seqlen_label(key[1])}", fmt_ms(reference["ncu"]), events, graphed])
    if not rows:
        raise RenderError("no case is in both the CUDA-graph run and the ncu comparison")
    ratios = "; ".join(
        f"{seqlen_label(seqlen)} {span(plain, f3)} with events, {span(graph_ratios[seqlen], f3)} with the graph"
        for seqlen, plain in sorted(plain_ratios.items())
    )
    return [
        *table(["case", "ncu kernel time", "plugin, events", "plugin, CUDA graph"], rows, right=(1, 2, 3)),
        "",
        f"Over ncu's kernel time (events and CUDA graph were timed in different processes): {ratios}.",
    ]
