"""The gate: false alarms, sensitivity to injected slowdowns, the simulation, the live validation, its cost."""

from __future__ import annotations

import re
from typing import Any

from render.format import f1, fmt_pct, fmt_range, fmt_ratio, join, plural, seqlen_label, span, table
from render.source import Context, PytestSummary, RenderError, first_int

GatedRuns = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # (the runs, what their JSON reports held)


def false_alarm_runs(ctx: Context, name: str) -> GatedRuns:
    """The 'run N: exit S, wall W s, <summary>' lines of false-alarms.txt, and what each JSON report held."""
    text = ctx.read(name)
    runs = [
        {"run": int(run), "exit": int(status), "wall": float(wall), "summary": PytestSummary.parse(rest)}
        for run, status, wall, rest in re.findall(r"^run (\d+): exit (\d+), wall ([\d.]+) s, (.*)$", text, flags=re.M)
    ]
    reports = [
        {"run": int(run), "cases": int(cases), "kernel": float(kernel), "failures": failures.strip("[]").strip()}
        for run, cases, kernel, failures in re.findall(
            r"gate-run-(\d+)\.json: (\d+) cases, sampled kernel time ([\d.]+) s, failures (\[.*\])$", text, flags=re.M
        )
    ]
    if not runs:
        raise ctx.error("no 'run N: exit S, wall W s' lines")
    return runs, reports


def false_alarms(ctx: Context, data: GatedRuns) -> list[str]:
    """How many gated runs of an unchanged build failed, and what their JSON reports list."""
    runs, reports = data
    failing = [run for run in runs if run["exit"] != 0]
    counts = {run["summary"].text() for run in runs}
    listed = [report for report in reports if report["failures"]]
    head = (
        f"**{plural(len(failing), 'failing run')} of {len(runs)}**"
        if failing
        else f"**0 failures in {len(runs)} runs**"
    )
    each = "each: " + next(iter(counts)) if len(counts) == 1 else join(sorted(counts), "or")
    return [
        f"{head} (exit status {span([run['exit'] for run in runs])}; {each}); the {len(reports)} JSON reports hold "
        f"{span([r['cases'] for r in reports])} cases each and list "
        f"{plural(len(listed), 'failure') if listed else 'no failure'}."
    ]


def cost(ctx: Context, data: GatedRuns) -> list[str]:
    """The wall time of a gated run, and the sampled kernel time's share of it."""
    runs, reports = data
    kernel = {report["run"]: report["kernel"] for report in reports}
    shares = [kernel[run["run"]] / run["wall"] for run in runs if run["run"] in kernel]
    return [
        f"A full gated run of the attention suite ({span([r['cases'] for r in reports])} cases) took "
        f"**{span([run['wall'] for run in runs], f1)} s from `pytest` start to exit** over the "
        f"{len(runs)} runs. The sampled kernel time was {span(kernel.values(), f1)} s of that "
        f"({span([round(share * 100) for share in shares])} %)."
    ]


def sensitivity(ctx: Context, rows: list[dict[str, str]]) -> list[str]:
    """Detected/false-alarm counts per tolerance, the drift of the unchanged rows and what the injections added."""
    tolerances = sorted(
        (column for column in rows[0] if re.fullmatch(r"detected at \d+% tolerance", column)),
        key=lambda column: -(first_int(column) or 0),
    )
    if not tolerances:
        raise ctx.error("no 'detected at N% tolerance' columns")
    cases = list(dict.fromkeys((row["backend"], int(row["length"])) for row in rows))
    kinds = list(dict.fromkeys(row["injected"] for row in rows))
    by = {(row["backend"], int(row["length"]), row["injected"]): row for row in rows}
    none = next((kind for kind in kinds if not kind.startswith("+")), None)
    injected = sorted((kind for kind in kinds if kind != none), key=lambda kind: first_int(kind) or 0)
    order = [*reversed(injected), *([none] if none is not None else [])]
    labels = [f"detected at +{first_int(kind)} %" if kind != none else "false alarms (no injection)" for kind in order]
    out = []
    for column in tolerances:
        line = [f"{first_int(column)} %"]
        for kind in order:
            cells = [by[(backend, length, kind)][column] for backend, length in cases]
            totals = {cell.split("/")[1] for cell in cells}
            hits = [cell.split("/")[0] for cell in cells]
            total = next(iter(totals)) if len(totals) == 1 else "n"
            line.append(f"{hits[0]} of {total} everywhere" if len(set(hits)) == 1 else f"{', '.join(hits)} of {total}")
        out.append(line)

    def ratio(backend: str, length: int, kind: str) -> float:
        return float(by[(backend, length, kind)]["mean measured ratio"].lstrip("x"))

    lines = [
        *table(["tolerance", *labels], out),
        "",
        f"Cases, in this order: {join([f'{b} {seqlen_label(n)}' for b, n in cases])}; "
        f"{rows[0][tolerances[0]].split('/')[1]} trials per row, the baseline measured once in the same process.",
    ]
    if none is not None:
        added = "; ".join(
            f"+{first_int(kind)} % → "
            + ", ".join(fmt_pct(ratio(b, n, kind) / ratio(b, n, none) - 1, sign=True) for b, n in cases)
            for kind in injected
        )
        lines.append(
            "Mean measured ratio to that baseline with nothing injected: "
            + ", ".join(fmt_ratio(ratio(b, n, none)) for b, n in cases)
            + f"; what the injections added over that unchanged row: {added}."
        )
    return lines


def simulation(ctx: Context, data: Any) -> list[str]:
    """The CPU simulation of the old and the new gate, per case: false alarms and slowdowns caught."""
    trials = int(data["trials"])
    rows = []
    for case in data["cases"]:
        old, new = case["old"], case["new"]
        old_cells = [" / ".join(str(old[level][tol]) for tol in ("0.10", "0.05", "0.03")) for level in ("0.00", "0.05")]
        new_cells = [str(new[level]) for level in ("0.00", "0.03", "0.05", "0.10")]
        rows.append(
            [case["case"], fmt_pct(case["sigma_b"], 2), fmt_pct(case["sigma_normalised"], 2), *old_cells, *new_cells]
        )
    caught = [case["new"]["0.05"] for case in data["cases"]]
    worst = min(data["cases"], key=lambda case: case["new"]["0.05"])
    probability = data["p_any_false_alarm_in_10_suite_runs"]
    header = ["case", "between-run sd, raw", "normalised", "old: false alarms", "old: +5 % caught", "new: false alarms",
              "new: +3 %", "new: +5 %", "new: +10 %"]  # fmt: skip
    return [
        f"Out of {trials} simulated trials per cell (the old gate at tolerances 10 / 5 / 3 %; the new gate at its "
        "automatic tolerance):",
        "",
        *table(header, rows, right=range(1, 9)),
        "",
        f"The new gate catches +5 % in {min(caught)}–{max(caught)} of {trials} trials per case (fewest: "
        f"{worst['case']}); its model's probability of at least one false alarm in {data['suite_runs']} runs of "
        f"these {len(data['cases'])} cases is {'below 0.0001' if probability < 1e-4 else f'{probability:.4f}'}. "
        "A simulation fitted to one H100's committed runs: it guides the design and proves nothing about a GPU.",
    ]


LIVE_ROWS = {"plus3": "+3 % work", "plus5": "+5 % work", "power": "power-heavier"}


def _pct(fraction: float | None, decimals: int = 1, sign: bool = True) -> str:
    return "–" if fraction is None else fmt_pct(fraction, decimals, sign=sign)


def validation(ctx: Context, data: Any) -> list[str]:
    """The GPU proof of the gate (issue 15's form): injected slowdowns caught, false alarms, gated runs.

    A file with ``injected_units`` (benchmarks/gate_validation_live.py) gives the delivered slowdown in wall
    time with cycles beside it, per row; the older files gave it at the baseline's clock, and say so.
    """
    live = "injected_units" in data
    rows = []
    for row in data["sensitivity"]:
        intended = _pct(row.get("intended"), 0)
        if live:
            intended = LIVE_ROWS.get(str(row.get("row"))) or (intended if intended == "–" else f"{intended} work")
        delivered = [_pct(row["injected"]), *([_pct(row.get("injected_cycles"))] if live else [])]
        counts = [f"{row['detected']} of {row['trials']}", f"{row['false_alarms']} of {row['false_alarm_trials']}"]
        tolerance = _pct(row.get("tolerance"), sign=False)
        if row.get("tolerance_max"):  # verdicts at two lines (another unit is judged at the fleet's)
            tolerance = fmt_range(tolerance, _pct(row["tolerance_max"], sign=False)).replace(" %–", "–")
        rows.append([row["case"], intended, *delivered, *counts, tolerance])
    if not live:
        runs = data.get("gated_runs") or {"runs": 0}
        header = ["case", "intended", "delivered (at the baseline's clock, not wall time)", "detected", "false alarms",
                  "tolerance"]  # fmt: skip
        lines = table(header, rows, right=range(1, 6))
        if runs["runs"]:
            lines += [
                "",
                f"Gated runs of the whole suite on an unchanged build: {runs['failed']} failed of {runs['runs']}.",
            ]
        return lines
    runs = data["gated_runs"]
    cards = ""
    if data.get("recorded_on") and data.get("gated_on"):
        recorded, gated = set(data["recorded_on"]), set(data["gated_on"])
        cards = (
            ", on the card that recorded the baselines"
            if gated == recorded
            else ", on the card that recorded the baselines and on another"
            if gated & recorded
            else ", on another card than the one that recorded them"
        )
    header = ["case", "row", "delivered (wall time)", "in cycles", "detected", "false alarms (unchanged)", "tolerance"]
    return [
        *table(header, rows, right=range(2, 7)),
        "",
        f"{runs['runs']} gated runs through `pytest --attnperf`{cards}: the unchanged rows failed in {runs['failed']}.",
    ]


COST_RUNS = [(run, cache) for run in ("before", "after") for cache in ("cold", "warm")]
REST_PHASES = (  # "rest": an old report's
    *("peak_call", "timing_other", "tests_other", "outside_tests", "rest"),
    *("release", "machine_reference", "power", "out_of_memory", "test_setup", "test_teardown"),
    *("held_first_runs", "cool_down"),  # the ambiguous items' first runs, before their re-measurement
)
COST_PHASES = [  # (column, the phases_s keys it sums)
    ("start-up s", ()),
    ("compile (first call) s", ("first_call",)),
    ("warm-up s", ("warmup",)),
    ("sampling s", ("sampling",)),
    ("references + check s", ("reference", "equivalence")),
    ("fingerprint s", ("fingerprint",)),
    ("rest s", REST_PHASES),
]


def _cache_label(report: dict[str, Any]) -> str:
    """The run's compile cache; a warm one that still compiled some graphs (a changed code path) says how many."""
    block = report.get("compile_cache") or {}
    misses, hits = int(block.get("graph_misses") or 0), int(block.get("graph_hits") or 0)
    if report["cache"] == "warm" and misses:
        return f"warm ({misses} of {misses + hits} graphs compiled)"
    return str(report["cache"])


def cost_rows(ctx: Context, first: str) -> list[list[str]]:
    """One table row per cost/cost-{before,after}-{cold,warm}.json of the folder (``first`` is one of them)."""
    rows = []
    for run, cache in COST_RUNS:
        file = f"cost/cost-{run}-{cache}.json"
        if not ctx.exists(file):
            continue
        report = ctx.load(file)
        try:
            phases, wall, kernel = report["phases_s"], float(report["wall_s"]), float(report["sampled_kernel_s"])
            startup = report["startup_s"]  # None: a report from before the cost block (its start-up is in the rest)
            cells = ["–" if startup is None else f"{float(startup):.1f}"] + [
                f"{sum(float(phases.get(key, 0.0)) for key in keys):.1f}" for _, keys in COST_PHASES[1:]
            ]
            rows.append(
                [run, _cache_label(report), str(report["cases"]), f"{wall:.1f}", f"{kernel:.1f}", *cells,
                 f"{float(report.get('lead_spin_s', 0.0)):.1f}", f"{wall / kernel:.1f}×" if kernel else "-"]
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            raise ctx.error(f"not a gate_cost.py cost.json ({error!r} missing or malformed)", file) from None
    if not rows:
        raise RenderError(f"{ctx.path('cost').as_posix()}/cost-{{before,after}}-{{cold,warm}}.json do not exist")
    return rows


def gate_cost(ctx: Context, rows: list[list[str]]) -> list[str]:
    """A gated kernel-suite run's cost before and after, cold and warm compile cache."""
    header = ["code", "compile cache", "cases", "wall s", "sampled kernel s", *(c for c, _ in COST_PHASES),
              "of which lead spin s", "wall / kernel"]  # fmt: skip
    return table(header, rows, right=range(2, len(header)))


GATED_LINE = re.compile(r"^run (\d+): exit (\d+), wall ([\d.]+) s, cache (\w+), (.*)$")


def gated_suite_runs(ctx: Context, name: str) -> dict[str, Any]:
    """gated_suite/gated.txt (gpu_session.sh gated_suite): its GPU line, and its runs, each with its cost-N.json where
    it ran any test."""
    text = ctx.read(name)
    gpu = next((line.strip() for line in text.splitlines() if ", GPU-" in line), "an unnamed GPU")
    runs = []
    for line in text.splitlines():
        match = GATED_LINE.match(line)
        if not match:
            continue
        run = int(match[1])
        cost_file = f"gated_suite/cost-{run}.json"
        runs.append({
            "run": run, "exit": int(match[2]), "wall_s": float(match[3]), "cache": match[4],
            "summary": match[5].strip(" ="), "cost": ctx.load(cost_file) if ctx.exists(cost_file) else None,
        })  # fmt: skip
    if not runs:
        raise ctx.error("no 'run N: exit ...' line")
    return {"gpu": gpu, "runs": runs}


def gated_suite(ctx: Context, data: dict[str, Any]) -> list[str]:
    """Back-to-back gated runs of a suite on one card: the unit, each run's outcome, its failures and its cost."""
    header = ["run", "compile cache", "pytest", "failed", "wall s", "sampled kernel s", *(c for c, _ in COST_PHASES),
              "wall / kernel"]  # fmt: skip
    rows = []
    for run in data["runs"]:
        cost = run["cost"]
        if cost is None or not cost.get("cases"):
            said = f"cut off by the call's end: {run['summary']}" if run["exit"] == 124 else run["summary"]
            rows.append([str(run["run"]), run["cache"], said, "–", f"{run['wall_s']:.1f}", *["–"] * 9])
            continue
        try:
            phases, kernel = cost["phases_s"], float(cost["sampled_kernel_s"])
            failed = ", ".join(f"`{test_id.split('::')[-1]}`" for test_id in cost["failures"]) or "none"
            cells = [f"{float(cost['startup_s']):.1f}"] + [
                f"{sum(float(phases.get(key, 0.0)) for key in keys):.1f}" for _, keys in COST_PHASES[1:]
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise ctx.error(f"not a gate_cost.py cost.json ({error!r} missing or malformed)",
                            f"gated_suite/cost-{run['run']}.json") from None  # fmt: skip
        wall = float(cost["wall_s"])
        rows.append([str(run["run"]), run["cache"], run["summary"], failed, f"{wall:.1f}", f"{kernel:.1f}", *cells,
                     f"{wall / kernel:.1f}×" if kernel else "-"])  # fmt: skip
    return [f"On {data['gpu']}:", "", *table(header, rows, right=range(4, len(header)))]


LIVE_DRIFT_COLUMNS = (
    "case", "trials", "unchanged: raw ratio, median (range)", "machine credit, largest",
    "power-heavier: raw ratio, median (range)", "power-heavier caught", "unchanged mean power W, median (largest)",
)  # fmt: skip


def script_table(script: str, columns: tuple[str, ...], rows: list[dict[str, str]], ctx: Context) -> list[str]:
    """An experiment's first Markdown table as it printed it, its columns checked (the first one left-aligned)."""
    if not rows:
        raise ctx.error(f"{script}'s table has no rows")
    missing = [column for column in columns if column not in rows[0]]
    if missing:
        raise ctx.error(f"not {script}'s table (no column {missing[0]!r})")
    body = [[row[column] for column in columns] for row in rows]
    return table(list(columns), body, right=range(1, len(columns)))


def live_drift(ctx: Context, rows: list[dict[str, str]]) -> list[str]:
    """benchmarks/experiments/live_drift.py's table: the unchanged rows' drift, the machine's credit, the power."""
    return script_table("live_drift.py", LIVE_DRIFT_COLUMNS, rows, ctx)


STARVED_LEAD_COLUMNS = ("report", "cases with a lead", "starved", "failed", "failed and starved", "extra lead spin s")


def starved_lead(ctx: Context, rows: list[dict[str, str]]) -> list[str]:
    """benchmarks/experiments/starved_lead.py's first table: each gated run's starved cases beside its failures."""
    return script_table("starved_lead.py", STARVED_LEAD_COLUMNS, rows, ctx)
