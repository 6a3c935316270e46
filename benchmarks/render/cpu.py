"""Runs on a CPU machine: the load tax, a foreign suite, the memory gate repeated, the hostile probe, history."""

from __future__ import annotations

import re
from typing import Any

from render.format import table
from render.source import Context, RenderError


def load_tax(ctx: Context, text: str) -> list[str]:
    """What every pytest run pays with the plugin installed (benchmarks/load_tax.py on a CPU machine)."""
    ratio = ctx.find(r"^ratio of medians \(plugin installed / -p no:attnperf\): ([\d.]+) \(([+-][\d.]+) s")
    cpu = ctx.find(r"^ratio of CPU-time medians \(information, not the goal\): ([\d.]+)")[1]
    torch = ctx.find(r"^torch imported when loading the plugin: (\w+)")[1]
    help_cost = ctx.find(r"^attnperf --help: ([+-][\d.]+) s over python -c pass")[1]
    show_cost = ctx.find(r"^attnperf show [^:\n]+: ([+-][\d.]+) s over python -c pass")[1]
    packages = ctx.find(r"^packages: (.+)$")[1]
    runs = ctx.find(r"^pytest, plugin installed .* (\d+)$")[1]
    load = ctx.find(r"^load average \(1 min\) before / after: ([\d.]+) / ([\d.]+)")
    return [
        f"A one-test suite with the plugin installed takes {ratio[1]}× the median wall time of the same run with "
        f"`-p no:attnperf` ({ratio[2]} s; CPU time {cpu}×), torch imported at load: {torch}; "
        f"`attnperf --help` costs {help_cost} s over `python -c pass`, `attnperf show` of the H200 baselines "
        f"{show_cost} s. Measured where the README's CPU install puts it (a virtual environment with "
        f"`pip install torch==2.13.0 && pip install -e .` and nothing else: {packages}), on a 2-core CPU machine "
        f"shared with other work (load average {load[1]} before, {load[2]} after); medians of {runs} "
        "interleaved runs."
    ]


def foreign_suite(ctx: Context, outcomes: list[dict[str, str]]) -> list[str]:
    """A suite nobody here wrote (einops'), with the plugin installed and with -p no:attnperf."""
    rows = {row[""]: row for row in outcomes}
    plugin, bare = "`plugin installed`", "`-p no:attnperf`"
    identical = ctx.find(r"^\*\*identical outcomes: (\w+)\*\*")[1]
    runs = ctx.find(r"^- runs per mode: (\d+)")[1]
    wall = rows["wall time, whole process (s)"]
    return [
        f"einops' own test suite (its PyPI source distribution, numpy and torch backends), {runs} runs per mode: "
        f"identical outcomes in every run: **{identical}** ({rows['passed'][plugin]} passed, {rows['failed'][plugin]} "
        f"failed, {rows['skipped'][plugin]} skipped with the plugin; {rows['passed'][bare]}, {rows['failed'][bare]}, "
        f"{rows['skipped'][bare]} without); median wall time {wall[plugin].split()[0]} s with the plugin installed, "
        f"{wall[bare].split()[0]} s with `-p no:attnperf`."
    ]


def memory_repeat(ctx: Context, text: str) -> list[str]:
    """The CPU memory gate run again and again right after one update: its false alarms."""
    runs, cases, alarms, deviation = ctx.find(
        r"^\*\*(\d+) runs, (\d+) cases each: (\d+) memory false alarms\*\*.*?from its baseline in any run: ([\d.]+ %)"
    ).groups()
    return [
        f"The repo's CPU kernel suite gated {runs} times right after one `--attnperf-update`, {cases} cases each: "
        f"**{alarms} memory false alarms**; the largest peak deviation from its baseline in any run: {deviation}."
    ]


def hostile_probe(ctx: Context, text: str) -> list[str]:
    """The hostile probe's verdict counts and its whole table (a CPU run of benchmarks/hostile_probe.py)."""
    counts = next((line for line in text.splitlines() if re.match(r"- \d+ probes: ", line)), None)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    if counts is None or len(rows) < 3:
        raise ctx.error("no verdict counts or no table")
    return [counts.removeprefix("- "), "", *rows]


PROBE_VERDICTS = ("clear error", "acceptable", "DEFECT", "skipped", "harness error")

# A run line of the report's header (benchmarks/hostile_probe.py's RunInfo.line).
PROBE_RUN = re.compile(
    r"^  - (?P<date>.+?) \([\d.]+ min\), pytest-attnperf at commit (?P<commit>\S+): `.+`; "
    r"families (?P<families>.+) \(\d+ probes\)$"
)


def hostile_probe_families(ctx: Context, text: str) -> list[str]:
    """The hostile probe's verdicts per family (``families=a,b``: only those), with the run that made each family's rows."""
    counts: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].isdigit():
            verdict = cells[4].strip("*")
            if verdict not in PROBE_VERDICTS:
                raise ctx.error(f"unknown verdict {verdict!r} in row {cells[0]}")
            counts.setdefault(cells[1], dict.fromkeys(PROBE_VERDICTS, 0))[verdict] += 1
    runs = {}
    for match in map(PROBE_RUN.match, text.splitlines()):
        if match:
            runs.update(dict.fromkeys(match["families"].split(", "), f"{match['date']}, commit {match['commit']}"))
    wanted = ctx.options["families"].split(",") if "families" in ctx.options else list(counts)
    unknown = [family for family in wanted if family not in counts]
    if unknown or not wanted:
        raise ctx.error(f"no probes of the families {', '.join(unknown) or '(none given)'}")
    shown = [*PROBE_VERDICTS[:3], *(v for v in PROBE_VERDICTS[3:] if any(counts[family][v] for family in wanted))]

    def count(family: str, verdict: str) -> str:
        found = counts[family][verdict]
        return f"**{found}**" if verdict == "DEFECT" and found else str(found)

    total = {family: str(sum(counts[family].values())) for family in wanted}
    rows = [[family, total[family], *(count(family, v) for v in shown), runs.get(family, "-")] for family in wanted]
    return table(["family", "probes", *shown, "run"], rows, right=range(1, len(shown) + 2))


def history_reports(ctx: Context, name: str) -> Any:
    """The JSON reports of <folder>/history/ (real runs), as pytest_attnperf's history reads them."""
    # Imported here: only this kind needs the plugin's code (which imports no torch for these modules).
    from pytest_attnperf.runs.history import find_reports
    from pytest_attnperf.runs.stored import ReportError

    if not (ctx.root / ctx.path(name)).is_dir():
        raise RenderError(f"{ctx.path(name).as_posix()}/ does not exist")
    try:
        reports, _ = find_reports([ctx.root / ctx.path(name)])
    except ReportError as error:
        raise RenderError(str(error)) from None
    if not reports:
        raise RenderError(f"no JSON report in {ctx.path(name).as_posix()}/")
    # A folder, not a file: on the CPU history_runs.py writes it ("history/"), on a GPU the history stage.
    ctx.used.append(name if ctx.folder == "cpu" else "history")
    return reports


def history(ctx: Context, reports: Any) -> list[str]:
    """`attnperf history` of a folder of JSON reports, as docs/ci.md shows it."""
    from pytest_attnperf.runs.drift import DriftRule
    from pytest_attnperf.runs.history import build_series, history_markdown

    return list(history_markdown(build_series(reports), DriftRule()))
