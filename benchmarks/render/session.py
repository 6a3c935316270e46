"""The GPU session's other runs: the main job, pytest-xdist on two GPUs, GPU faults, the property test."""

from __future__ import annotations

import re
from collections.abc import Callable

from render.format import fmt_ms_precise, fmt_pct, fmt_ratio, join, span, table, test_label
from render.source import Context, PytestSummary, attnperf_rows, gpu_of, markdown_tables, parse_ms, summary_line


def main_job(ctx: Context, text: str) -> list[str]:
    """The gated suite on the GPU machine: its outcome, wall time and the cases that do not fit."""
    summary = PytestSummary.parse(summary_line(text))
    wall = re.search(r"^exit (\d+) wall ([\d.]+) s$", text, flags=re.M)
    rows = attnperf_rows(text)
    unfit = [test_label(row["test"]) for row in rows if row["verdict"] == "does not fit"]
    other = summary.skipped - len(unfit)
    rest = f"; the other {other} skipped tests are not in the table (flash-attn-3 is not installed there)"
    return [
        f"`pytest --attnperf --attnperf-missing=fail` on the {gpu_of(text) or 'the GPU machine'} "
        f"{f'took {wall.group(2)} s and ' if wall else ''}gave **{summary.text()}** ({ctx.link(ctx.main)}; "
        f"{len(rows)} cases in its table; skipped because they do not fit: {join(unfit)}{rest if other > 0 else ''})."
    ]


def xdist(ctx: Context, text: str) -> list[str]:
    """The suite under pytest-xdist on two GPUs: wall times, verdicts and medians against one worker."""
    gpus = re.findall(r"^GPU \d+: (.+?) \(UUID", text, flags=re.M)
    runs = {
        workers: (float(wall), PytestSummary.parse(rest))
        for workers, wall, rest in re.findall(r"^-n (\d+): exit \d+, wall ([\d.]+) s, (.*)$", text, flags=re.M)
    }
    entries = re.search(r"wrote (\d+) entries", text)
    tables = markdown_tables(text)
    if not tables or len(runs) < 2:
        raise ctx.error("expected the '-n N' lines and the comparison table")
    compare = tables[0]
    ratios = [float(row["median ratio"].lstrip("x")) for row in compare if row["median ratio"].startswith("x")]
    second = list(compare[0].keys())[2]
    elsewhere = sum("cuda:1" in row[second] for row in compare)
    differing = re.search(r"(\d+) verdicts differ", text)
    counts = {summary.text() for _, summary in runs.values()}
    (n_a, (wall_a, _)), (n_b, (wall_b, _)) = sorted(runs.items())[:2]
    outcomes = "both " + next(iter(counts)) if len(counts) == 1 else join(sorted(counts))
    return [
        f"On {len(gpus)} × {join(sorted(set(gpus)))}: the baselines were recorded with `-n 2`"
        f"{f' ({entries.group(1)} entries)' if entries else ''}; the gated suite then took {wall_a:.1f} s with "
        f"`-n {n_a}` and {wall_b:.1f} s with `-n {n_b}` ({outcomes}); "
        f"the two reports hold {len(compare)} cases and {differing.group(1) if differing else '?'} verdicts differ "
        f"({elsewhere} of the {len(compare)} cases ran on cuda:1 under `-n {n_b}`); the `-n {n_b}` medians are "
        f"{span(ratios, fmt_ratio)} of the `-n {n_a}` ones "
        f"({fmt_pct(min(ratios) - 1, sign=True)} to {fmt_pct(max(ratios) - 1, sign=True)})."
    ]


def _bytes_change(value: str) -> str:
    """'+4294967296 B (4 GiB)' -> '+4,294,967,296 B (4 GiB)'; '+0 B (0 B)' -> '+0 B'."""
    match = re.match(r"([+-])(\d+) B(?: \((.+)\))?", value)
    if match is None:
        return value
    sign, number, readable = match.groups()
    text = f"{sign}{int(number):,} B"
    return f"{text} ({readable})" if readable and int(number) else text


def _bytes_cell(value: str) -> str:
    number = re.match(r"[+-]?\d+", value)
    return f"{int(number.group()):,} B" if number else value


def gpu_faults(ctx: Context, text: str) -> list[str]:
    """What an out-of-memory case and a raising backend leave behind (benchmarks/gpu_faults.py)."""
    tries, after, workspace = ctx.tables(ctx.main, 3, "expected the OOM, sdpa-flash and workspace tables")[:3]
    before = re.search(r"allocated before the inputs: (\d+) B; with the 32K inputs: (\d+) B", text)
    freed = re.search(r"allocated once the 32K inputs are freed: (\d+) B \(before them: (\d+) B\)", text)
    checks = re.findall(r"^- (PASS|FAIL): (.+)$", text, flags=re.M)
    alone = parse_ms(after[0]["median"]) or 0.0

    def seen(column: str, cell: Callable[[str], str] = str) -> str:
        return join([cell(value) for value in sorted({row[column] for row in tries})], "or")

    def moved(row: dict[str, str]) -> str:
        median = parse_ms(row["median"].split(" (")[0]) or 0.0
        return f"{fmt_ms_precise(median)} ({fmt_pct(median / alone - 1, 2, sign=True)})"

    results = {f"`{row['result'].split(' Tried')[0].rstrip('.')}`" for row in tries}
    oom = (
        f"{len(tries)} tries, each: {join(sorted(results), 'or')}; allocated after the try "
        f"{seen('allocated after', _bytes_cell)} ({seen('change')}), reserved after "
        f"{seen('reserved after')}, peak during the try {seen('peak during the try')}"
    )
    if before and freed:
        oom += (
            f"; allocated with the 32K inputs {int(before.group(2)):,} B; once they are freed {int(freed.group(1)):,} B "
            f"(before them: {int(freed.group(2)):,} B)"
        )
    script = "`benchmarks/gpu_faults.py`"
    rows = [
        ["out-of-memory in one case (eager at 32K, B=1 H=32 D=128 fp16 causal), five times", oom, f"{script} (a)"],
        [
            "the case after the OOMs (sdpa-flash 4K)",
            f"right after them {moved(after[2])} against {fmt_ms_precise(alone)} measured alone before; "
            f"a second measurement alone: {moved(after[1])}",
            f"{script} (a)",
        ],
        [
            "a backend that allocates 4 GiB of workspace and raises",
            f"allocated {workspace[0]['moment']}: {_bytes_cell(workspace[0]['allocated'])}; "
            + "; ".join(f"{row['moment']}: {_bytes_change(row['change'])}" for row in workspace[1:]),
            f"{script} (b)",
        ],
    ]
    passed = sum(result == "PASS" for result, _ in checks)
    failing = join([name for result, name in checks if result != "PASS"])
    return [
        *table(["fault", "seen", "script"], rows),
        "",
        f"The script's own checks: {passed} of {len(checks)} pass{f' (failing: {failing})' if passed < len(checks) else ''}.",
    ]


def property_gpu(ctx: Context, text: str) -> list[str]:
    """The property test on the GPU: random shapes per backend, and what the failures were."""
    head = re.search(r"^(\d+) random shapes in ([\d.]+) s", text, flags=re.M)
    tables = markdown_tables(text)
    if not tables or head is None:
        raise ctx.error("expected the 'N random shapes in S s' line and the table")
    columns = ("backend", "ran", "agreed", "fp32 false alarms (known, error <= 1e-4)", "failed", "skipped")
    rows = [[row[column] for column in columns] for row in tables[0]]
    failures = re.findall(r"^- ([\w-]+), (.+)$", text.partition("## Failures")[2], flags=re.M)
    notes = []
    for backend in dict.fromkeys(name for name, _ in failures):
        mine = [detail for name, detail in failures if name == backend]
        parts = []
        no_key = [detail for detail in mine if "see no key" in detail]
        if no_key:
            errors = [float(e) for e in re.findall(r"max \|out - ref\| = ([\d.e+-]+)", " ".join(no_key))]
            largest = f", max |out − ref| {span(errors, lambda e: f'{e:.3g}')}" if errors else ""
            parts.append(f"{len(no_key)} with query rows that see no key{largest}")
        raised: dict[str, int] = {}
        for detail in mine:
            match = re.search(r"raised (\w+): (?:\w+: )?(\w+Error)?", detail)
            if match:
                name, error = match.groups()
                key = f"`{name}` (`{error}`)" if error else f"`{name}`"
                raised[key] = raised.get(key, 0) + 1
        parts.extend(f"{count} raised {name}" for name, count in raised.items())
        notes.append(f"{backend} {len(mine)}: {', '.join(parts)}" if parts else f"{backend} {len(mine)}")
    return [
        f"{head.group(1)} random shapes in {head.group(2)} s:",
        "",
        *table(["backend", "ran", "agreed", "fp32 false alarms", "failed", "skipped"], rows, right=range(1, 6)),
        "",
        f"Failures: {'; '.join(notes)}." if notes else "No failures.",
    ]
