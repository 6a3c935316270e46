"""Hostile-probe family `perf`: how fast the baseline reader is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .harness import BASELINE_FILE, Ctx, Outcome, Probe, big_baseline, kill_group, pytest_argv


def child_cpu_seconds(argv: Sequence[str], cwd: Path, timeout: float = 600.0) -> tuple[int, float, str]:
    """Run ``argv``; return its exit code, the CPU seconds it (and its children) used, and its output."""
    with tempfile.TemporaryFile() as sink:
        process = subprocess.Popen(
            argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timer = threading.Timer(timeout, lambda: kill_group(process))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        return process.returncode, usage.ru_utime + usage.ru_stime, sink.read().decode(errors="replace")


C_LOAD = (
    "import sys, time, yaml\n"
    "text = open(sys.argv[1], encoding='utf-8').read()\n"
    "start = time.process_time()\n"
    "yaml.load(text, Loader=yaml.CSafeLoader)\n"
    "print(f'{time.process_time() - start:.4f}')\n"
)
C_ROUND_TRIP = (
    "import sys, time, yaml\n"
    "text = open(sys.argv[1], encoding='utf-8').read()\n"
    "start = time.process_time()\n"
    "document = yaml.load(text, Loader=yaml.CSafeLoader)\n"
    "yaml.load(text, Loader=yaml.CSafeLoader)\n"
    "yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, width=200)\n"
    "print(f'{time.process_time() - start:.4f}')\n"
)


def c_seconds(script: str, path: Path, ctx: Ctx) -> float | None:
    rc, _, out = child_cpu_seconds([ctx.py, "-c", script, str(path)], path.parent)
    if rc != 0:
        return None
    return float(out.strip().splitlines()[-1])


def perf_show(workdir: Path, ctx: Ctx) -> tuple[int, str]:
    big, small = workdir / "big.yaml", workdir / "small.yaml"
    rc_big, cpu_big, out_big = child_cpu_seconds([ctx.attnperf, "show", str(big)], workdir)
    rc_small, cpu_small, _ = child_cpu_seconds([ctx.attnperf, "show", str(small)], workdir)
    reference = c_seconds(C_LOAD, big, ctx)
    if rc_big or rc_small or reference is None:
        return (
            1,
            f"RESULT: could not measure (show exit {rc_big}/{rc_small}; CSafeLoader {reference})\n{out_big[-2000:]}",
        )
    extra = cpu_big - cpu_small
    return 0, (
        f"RESULT: attnperf show, 5,000 entries ({big.stat().st_size / 1e6:.1f} MB): {cpu_big:.1f} s CPU, "
        f"1 entry: {cpu_small:.1f} s -> reading 4,999 entries costs {extra:.1f} s; yaml.load(CSafeLoader) "
        f"in a subprocess: {reference:.2f} s -> x{extra / reference:.1f} (goal <= x2)"
    )


def perf_pytest(update: bool) -> Callable[[Path, Ctx], tuple[int, str]]:
    def run(workdir: Path, ctx: Ctx) -> tuple[int, str]:
        argv = [ctx.expand(part, workdir) for part in pytest_argv(*(["--attnperf-update"] if update else []))]
        target = workdir / ctx.expand(BASELINE_FILE, workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workdir / "small.yaml", target)
        rc_small, cpu_small, _ = child_cpu_seconds(argv, workdir)
        shutil.copyfile(workdir / "big.yaml", target)
        rc_big, cpu_big, out_big = child_cpu_seconds(argv, workdir)
        reference = c_seconds(C_ROUND_TRIP if update else C_LOAD, workdir / "big.yaml", ctx)
        if rc_big or rc_small or reference is None:
            return 1, f"RESULT: could not measure (exit {rc_small}/{rc_big}; C loader {reference})\n{out_big[-3000:]}"
        extra = cpu_big - cpu_small
        size = (workdir / "big.yaml").read_text(encoding="utf-8").count("\n    backend: ")
        what = (
            "pytest --attnperf --attnperf-update (loads the file twice, writes it once)"
            if update
            else "pytest --attnperf (loads the file once)"
        )
        reference_what = "2 x CSafeLoader load + CSafeDumper dump" if update else "CSafeLoader load"
        return 0, (
            f"RESULT: {what}: {size:,} entries cost {extra:.1f} s CPU more than 1 entry; {reference_what}: "
            f"{reference:.2f} s -> x{extra / reference:.1f} (goal <= x2)"
        )

    return run


def fast_enough(outcome: Outcome) -> tuple[str, str]:
    match = re.search(r"-> x([\d.]+) \(goal", outcome.out)
    if outcome.rc or match is None:
        return "DEFECT", "could not be measured"
    ratio = float(match.group(1))
    if ratio <= 2.0:
        return "acceptable", ""
    return "DEFECT", f"{ratio:.1f}x the C loader (goal <= 2x)"


def perf_probes() -> list[Probe]:
    small = big_baseline(1)
    # The pytest timings use 2,000 entries: the ratio hardly depends on the size, the run time does.
    return [
        Probe(
            "perf",
            "load a 5,000-entry baseline: `attnperf show` vs yaml.load(CSafeLoader)",
            (),
            fast_enough,
            files={"big.yaml": big_baseline(5000), "small.yaml": small},
            custom=perf_show,
            weight=20,
        ),
        Probe(
            "perf",
            "load a 2,000-entry baseline at the start of `pytest --attnperf`",
            (),
            fast_enough,
            files={"big.yaml": big_baseline(2000), "small.yaml": small},
            custom=perf_pytest(update=False),
            weight=10,
        ),
        Probe(
            "perf",
            "`pytest --attnperf --attnperf-update` into a 2,000-entry baseline",
            (),
            fast_enough,
            files={"big.yaml": big_baseline(2000), "small.yaml": small},
            custom=perf_pytest(update=True),
            weight=15,
        ),
    ]
