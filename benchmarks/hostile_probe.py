"""Hostile-input probe of pytest-attnperf, as a black box.

Every probe is a small declarative record: the files of a throw-away test project, one command
(``python -m pytest --attnperf ...`` or ``attnperf ...``, run as a subprocess in that project) and a
classifier that turns the exit code and the output into a verdict:

- ``clear error``: the input was refused, and the message names what is wrong (file and line, option, test);
- ``acceptable``: the input was handled sensibly (accepted when harmless, refused with a vaguer message);
- ``DEFECT``: a Python traceback or INTERNALERROR, a hang, a silent wrong answer (exit 0 where it should
  have refused), a damaged baseline file.

Nothing of the plugin is imported here (its package layout changes under refactoring): only its two
commands are run. Standard library only. This script runs the probes and writes the report; the probes are in
benchmarks/hostile/ (``harness.py``: the project, ``Probe``, the classifiers, running one probe; one module per
family, named in ``FAMILIES`` below).

    python benchmarks/hostile_probe.py                  # every probe, 2 at a time, Markdown on stdout
    python benchmarks/hostile_probe.py --only yaml      # one family (see --list)
    python benchmarks/hostile_probe.py --jobs 4 --out docs/results/hostile-probe-before.md
    python benchmarks/hostile_probe.py --only inputs3 --merge --out docs/results/cpu/hostile-probe.md
                                                        # rerun one family, keep the other families' rows

Run it with the Python of the environment that has pytest-attnperf installed (its ``attnperf`` script is
looked up next to that Python first). Some probes need to drop root's permission override (read-only
folders, as root) or a private mount namespace (a tiny tmpfs for a full disk); where that is impossible
they are listed as ``skipped`` with the reason.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the probes: benchmarks/hostile/
from hostile.cli import cli_probes
from hostile.harness import (
    DROP_DAC,
    FAST,
    HARNESS_ERROR,
    PYTEST_INI,
    SKIPPED,
    STANDARD_TEST,
    TEST_ID,
    VERDICTS,
    Ctx,
    Probe,
    Row,
    cell,
    evaluate,
    pytest_argv,
    trim,
    use_context,
)
from hostile.inputs3 import round3_input_probes
from hostile.markers import marker_probes
from hostile.measure import measurement_probes
from hostile.oom import oom_probes
from hostile.options import option_probes
from hostile.paths import path_probes
from hostile.perf import perf_probes
from hostile.round2 import round2_probes
from hostile.round3_update import round3_update_probes
from hostile.signals import kill_probes
from hostile.yaml_files import yaml_probes

# ---------------------------------------------------------------- the run

FAMILIES: dict[str, Callable[[], list[Probe]]] = {
    "yaml": yaml_probes,
    "paths": path_probes,
    "options": option_probes,
    "markers": marker_probes,
    "cli": cli_probes,
    "oom": oom_probes,
    "measure": measurement_probes,
    "signals": kill_probes,
    "perf": perf_probes,
    "round2": round2_probes,
    "round3-update": round3_update_probes,
    "inputs3": round3_input_probes,
}


def _can_drop_dac() -> tuple[str, ...] | None:
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder, "ro")
        locked.mkdir(mode=0o555)
        result = subprocess.run([*DROP_DAC, "touch", str(locked / "x")], capture_output=True)
        locked.chmod(0o755)
        return DROP_DAC if result.returncode != 0 else None


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [
                "unshare",
                "-m",
                "bash",
                "-c",
                f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(folder)} && touch {folder}/x",
            ],
            capture_output=True,
        )
        return result.returncode == 0


def discover_context() -> Ctx:
    """Run the plugin once (an update in a scratch project) to learn this CPU's slug and name."""
    python = sys.executable
    script = Path(python).parent / "attnperf"
    attnperf = str(script) if script.exists() else shutil.which("attnperf")
    if attnperf is None:
        raise SystemExit(
            "hostile_probe: no `attnperf` command next to this Python or on PATH; install the project first"
        )
    with tempfile.TemporaryDirectory(prefix="attnperf-probe-seed-") as folder:
        workdir = Path(folder)
        (workdir / "pytest.ini").write_text(PYTEST_INI)
        (workdir / "test_a.py").write_text(STANDARD_TEST)
        argv = [part.replace("{py}", python) for part in pytest_argv("--attnperf-update")]
        result = subprocess.run(argv, cwd=workdir, capture_output=True, text=True)
        files = sorted((workdir / "baselines").glob("*.yaml"))
        if result.returncode != 0 or len(files) != 1:
            raise SystemExit(f"hostile_probe: the seed run failed (exit {result.returncode}):\n{result.stdout[-3000:]}")
        text = files[0].read_text(encoding="utf-8")
    name = re.search(r"^device:\n  name: (.*)$", text, re.MULTILINE)
    torch_version = re.search(r"^  torch: (.*)$", text, re.MULTILINE)
    if name is None or torch_version is None:
        raise SystemExit("hostile_probe: cannot read the device name and torch version of the seed baseline")
    return Ctx(
        py=python,
        attnperf=attnperf,
        slug=files[0].stem,
        name=name.group(1).strip().strip("'\""),
        torch=torch_version.group(1).strip().strip("'\""),
        drop_dac=_can_drop_dac(),
        tmpfs=_can_mount_tmpfs(),
    )


def all_probes() -> list[Probe]:
    return [probe for build in FAMILIES.values() for probe in build()]


def readable(command: Sequence[str] | str, ctx: Ctx, *, abbreviate: bool = False) -> str:
    text = command if isinstance(command, str) else shlex.join(command)
    if abbreviate and not isinstance(command, str):
        prefix = pytest_argv()[: -len(FAST)]
        parts = list(command)
        if parts[: len(prefix)] == prefix:
            rest = parts[len(prefix) :]
            other = [part for part in rest if part not in FAST]
            given = {part.split("=", 1)[0] for part in other}
            if all(item in rest for item in FAST if item.split("=", 1)[0] not in given):
                text = "$PYTEST " + shlex.join(other)
    for token, value in (("{py}", "python"), ("{attnperf}", "attnperf"), ("{dir}", "$PROJECT"), ("{slug}", ctx.slug)):
        text = text.replace(token, value)
    return text.replace("'python'", "python").replace("'attnperf'", "attnperf")


def describe_files(probe: Probe, ctx: Ctx) -> str:
    parts = ["pytest.ini (`[pytest]`), test_a.py (the standard marked test)"] if probe.project else []
    for name, content in probe.files.items():
        value = content(ctx) if callable(content) else content
        size = len(value)
        shown = ctx.expand(name, Path("$PROJECT"))
        if isinstance(value, str) and size <= 160:
            parts.append(f"{shown} = {value!r}")
        else:
            parts.append(f"{shown} ({size:,} {'bytes' if isinstance(value, bytes) else 'characters'})")
    if probe.setup is not None:
        parts.append("plus the probe's setup step (symlink / chmod / copy)")
    return "; ".join(parts) or "-"


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        commit = ""
    return commit or "?"


def machine_line(ctx: Ctx) -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{ctx.name}, {os.cpu_count()} cores (load average {load} at the end: the machine is shared), "
        f"{memory:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {ctx.torch}; "
        f"read-only probes: {'yes' if ctx.drop_dac is not None else 'no'}, tmpfs probe: {'yes' if ctx.tmpfs else 'no'}"
    )


# ---------------------------------------------------------------- the report, and merging a run into an earlier one


@dataclass(frozen=True)
class RunInfo:
    """One run of this script whose rows the report holds: when, on which commit, with which command."""

    date: str  # '2026-12-02 01:54 UTC'
    minutes: float
    commit: str
    command: str
    families: tuple[str, ...]

    def line(self, probes: int) -> str:
        return (
            f"  - {self.date} ({self.minutes:.1f} min), pytest-attnperf at commit {self.commit}: `{self.command}`; "
            f"families {', '.join(self.families)} ({probes} probes)"
        )


@dataclass(frozen=True)
class TableRow:
    """A row of the report's table as written (cells escaped); a merge keeps those of the families that did not run."""

    family: str
    input: str
    happened: str
    verdict: str
    reproduce: tuple[str, ...] = ()  # the '  - run/files/saw' lines of its defect entry


RUN_LINE = re.compile(
    r"^  - (?P<date>.+?) \((?P<minutes>[\d.]+) min\), pytest-attnperf at commit (?P<commit>\S+): `(?P<command>.+)`; "
    r"families (?P<families>.+) \(\d+ probes\)$"
)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def table_rows(rows: list[Row], ctx: Ctx) -> list[TableRow]:
    made = []
    for row in rows:
        reproduce: tuple[str, ...] = ()
        if row.verdict in ("DEFECT", HARNESS_ERROR):
            command = readable(row.probe.cmd, ctx, abbreviate=True) if row.probe.custom is None else "(a timing)"
            reproduce = (
                f"  - run: `{command}`"
                + (f" in `{row.probe.cwd}`" if row.probe.cwd != "." else "")
                + (f", env {dict(row.probe.env)}" if row.probe.env else ""),
                f"  - files: {describe_files(row.probe, ctx)}",
                f"  - saw: {trim(row.happened, 400)}",
            )
        made.append(TableRow(row.probe.family, cell(row.probe.input), cell(row.happened), row.verdict, reproduce))
    return made


def render(runs: Sequence[RunInfo], rows: Sequence[TableRow], ctx: Ctx, machine: str, keep: bool) -> str:
    """The report: each run's command, date and commit, the verdict counts, the table, how to reproduce a defect."""
    counts = {verdict: sum(row.verdict == verdict for row in rows) for verdict in (*VERDICTS, SKIPPED, HARNESS_ERROR)}
    lines = [
        "# Hostile probe of pytest-attnperf",
        "",
        "- runs (the rows of a family come from the latest run of it):",
        *(run.line(sum(row.family in run.families for row in rows)) for run in runs),
        f"- machine: {machine}",
        f"- {len(rows)} probes: **{counts['clear error']} clear error, {counts['acceptable']} acceptable, "
        f"{counts['DEFECT']} DEFECT**"
        + (f", {counts[SKIPPED]} skipped" if counts[SKIPPED] else "")
        + (f", {counts[HARNESS_ERROR]} harness errors" if counts[HARNESS_ERROR] else ""),
        "",
        "Each probe runs in a fresh temporary project (pytest.ini, test_a.py with one equivalence + latency + memory "
        f"marked test, run with `{' '.join(FAST)}`); `<slug>` is `{ctx.slug}`, `<id>` is `{TEST_ID}`, `.` the "
        "project folder. Baseline files are the valid one-entry template `BASELINE` of benchmarks/hostile/harness.py "
        "with the change the input column names. `$PYTEST` below stands for "
        f"`{readable(pytest_argv(), ctx)}`. The verdict is decided by the probe's classifier in the script.",
        "",
        "| # | family | input | what happened | verdict |",
        "|---:|---|---|---|---|",
    ]
    for number, row in enumerate(rows, 1):
        verdict = f"**{row.verdict}**" if row.verdict == "DEFECT" else row.verdict
        lines.append(f"| {number} | {row.family} | {row.input} | {row.happened} | {verdict} |")
    defects = [(number, row) for number, row in enumerate(rows, 1) if row.reproduce]
    if defects:
        lines += ["", "## Reproducing the defects", ""]
        for number, row in defects:
            lines += [f"- **#{number}** ({row.family}) {row.input}", *row.reproduce]
    if keep:
        lines += ["", "(--keep: the project folders were left under the system's temporary folder)"]
    return "\n".join(lines) + "\n"


def parse_report(text: str, source: Path) -> tuple[list[RunInfo], list[TableRow], str]:
    """The runs, rows and machine line of a report this script wrote (also the one-command header of round 2)."""
    rows: list[TableRow] = []
    reproduce: dict[int, list[str]] = {}
    current_defect: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| # "):
            cells = [part.strip() for part in _CELL_SPLIT.split(line)[1:-1]]
            if len(cells) != 5 or not cells[0].isdigit():
                raise SystemExit(f"hostile_probe: {source}: not a row of the probe's table: {line[:120]}")
            rows.append(TableRow(cells[1], cells[2], cells[3], cells[4].strip("*")))
        head = re.match(r"^- \*\*#(\d+)\*\* ", line)
        if head:
            current_defect = reproduce.setdefault(int(head.group(1)), [])
        elif current_defect is not None and line.startswith("  - "):
            current_defect.append(line)
        else:
            current_defect = None
    rows = [
        TableRow(row.family, row.input, row.happened, row.verdict, tuple(reproduce.get(number, ())))
        for number, row in enumerate(rows, 1)
    ]
    machine = re.search(r"^- machine: (.*)$", text, re.MULTILINE)
    runs = [
        RunInfo(m["date"], float(m["minutes"]), m["commit"], m["command"], tuple(m["families"].split(", ")))
        for m in map(RUN_LINE.match, text.splitlines())
        if m
    ]
    if not runs:  # a report of one run (round 2's): command, date, and the commit inside the machine line
        command = re.search(r"^- command: `(.*)`$", text, re.MULTILINE)
        date = re.search(r"^- date: (.*) \(([\d.]+) min\)$", text, re.MULTILINE)
        commit = re.search(r"pytest-attnperf at commit (\w+)", text)
        if command and date and commit:
            families = tuple(dict.fromkeys(row.family for row in rows))
            runs = [RunInfo(date[1], float(date[2]), commit[1], command[1], families)]
    if not rows or not runs or machine is None:
        raise SystemExit(f"hostile_probe: {source}: no runs, machine line or table: not a report of this script")
    return runs, rows, re.sub(r", pytest-attnperf at commit \w+", "", machine[1])


def merge(
    old_runs: Sequence[RunInfo], old_rows: Sequence[TableRow], run: RunInfo, new_rows: Sequence[TableRow]
) -> tuple[list[RunInfo], list[TableRow]]:
    """The old report with the rows of ``run``'s families replaced by its rows; families in the script's order."""
    order = {family: index for index, family in enumerate(FAMILIES)}
    kept = [row for row in old_rows if row.family not in run.families]
    rows = sorted([*kept, *new_rows], key=lambda row: order.get(row.family, len(order)))  # stable: rows keep order
    runs = []
    for old in old_runs:
        families = tuple(family for family in old.families if family not in run.families)
        if families:
            runs.append(dataclasses.replace(old, families=families))
    return [*runs, run], rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(FAMILIES), help="run only this family (repeatable)")
    parser.add_argument("--match", help="run only probes whose input matches this regex")
    parser.add_argument("--jobs", type=int, default=2, help="probes run at once (default 2)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--keep", action="store_true", help="keep each probe's project folder")
    parser.add_argument("--list", action="store_true", help="list the probes and exit")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the rows of the families that run in the --out report, keep the others (with their run)",
    )
    arguments = parser.parse_args(argv)
    if arguments.merge and (arguments.out is None or not arguments.out.is_file()):
        parser.error("--merge needs --out naming an existing report of this script to merge into")
    if arguments.merge and arguments.match:
        parser.error("--merge replaces whole families: it cannot be combined with --match")
    earlier = parse_report(arguments.out.read_text(encoding="utf-8"), arguments.out) if arguments.merge else None
    probes = [
        probe
        for probe in all_probes()
        if (not arguments.only or probe.family in arguments.only)
        and (not arguments.match or re.search(arguments.match, probe.input))
    ]
    if arguments.list:
        for number, probe in enumerate(probes, 1):
            print(f"{number:4} {probe.family:8} {probe.input}")
        return 0
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a non-interactive shell: SIGINT is ignored and every probe would inherit
        # that, so the Ctrl-C probe would test nothing. A handled signal is reset to the default on exec.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = git_commit()  # the code the probes run against, before anyone commits during the run
    clock = time.perf_counter()
    ctx = discover_context()
    use_context(ctx)
    print(f"hostile_probe: {len(probes)} probes, {arguments.jobs} at a time, on {ctx.slug}", file=sys.stderr)
    numbered = list(enumerate(probes, 1))
    order = sorted(numbered, key=lambda pair: -pair[1].weight)
    rows: dict[int, Row] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, arguments.jobs)) as pool:
        futures = {pool.submit(evaluate, number, probe, ctx, arguments.keep): number for number, probe in order}
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            rows[row.number] = row
            print(
                f"  [{len(rows):3}/{len(probes)}] #{row.number} {row.verdict:11} {row.seconds:5.1f}s "
                f"{trim(row.probe.input, 70)}",
                file=sys.stderr,
            )
    ordered = table_rows([rows[number] for number in sorted(rows)], ctx)
    command = "python benchmarks/hostile_probe.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    families = tuple(dict.fromkeys(probe.family for probe in probes))
    run = RunInfo(started.strftime("%Y-%m-%d %H:%M UTC"), (time.perf_counter() - clock) / 60, commit, command, families)
    runs, table = [run], ordered
    if earlier is not None:
        runs, table = merge(earlier[0], earlier[1], run, ordered)
    text = render(runs, table, ctx, machine_line(ctx), arguments.keep)
    print(text)
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
