"""Hostile-input probe of pytest-attnperf, as a black box.

Every probe is a small declarative record: the files of a throw-away test project, one command
(``python -m pytest --attnperf ...`` or ``attnperf ...``, run as a subprocess in that project) and a
classifier that turns the exit code and the output into a verdict:

- ``clear error``: the input was refused, and the message names what is wrong (file and line, option, test);
- ``acceptable``: the input was handled sensibly (accepted when harmless, refused with a vaguer message);
- ``DEFECT``: a Python traceback or INTERNALERROR, a hang, a silent wrong answer (exit 0 where it should
  have refused), a damaged baseline file.

Nothing of the plugin is imported here (its package layout changes under refactoring): only its two
commands are run. Standard library only.

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
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import stat
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------- the test project every probe starts from

TEST_ID = "test_a.py::test_fwd[eager-64]"
STANDARD_TEST = """\
import pytest


@pytest.mark.attnperf_equivalence
@pytest.mark.attnperf_latency(tolerance="10%")
@pytest.mark.attnperf_memory()
def test_fwd(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)
"""
PYTEST_INI = "[pytest]\n"
# The options of tests/unit/fast_run.py: one tiny eager case on the CPU in a few seconds.
FAST = (
    "--attnperf-device=cpu",
    "--attnperf-seqlens=64",
    "--attnperf-heads=2",
    "--attnperf-head-dim=16",
    "--attnperf-backends=eager",
    "--attnperf-min-samples=3",
    "--attnperf-warmup=1ms",
    "--attnperf-rep=5ms",
    "--attnperf-allow-busy-cpu",  # a shared machine is busy; the busy-CPU probes leave this out
)
# Plugins of the dev environment that this probe does not need (hypothesis alone costs 1.4 s per start).
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:xdist")
DROP_DAC = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--")
VERDICTS = ("clear error", "acceptable", "DEFECT")
SKIPPED = "skipped"
HARNESS_ERROR = "harness error"  # a bug of this script, not a verdict on the plugin


def pytest_argv(*extra: str, attnperf: bool = True, drop: Sequence[str] = ()) -> list[str]:
    """``python -m pytest --attnperf <FAST> <extra>``; an option in ``extra`` replaces FAST's one of the same flag.

    ``drop`` removes FAST options by flag (to let an ini key take effect).
    """
    given = {item.split("=", 1)[0] for item in extra if item.startswith("--attnperf-")} | set(drop)
    base = [item for item in FAST if item.split("=", 1)[0] not in given]
    return ["{py}", "-m", "pytest", *QUIET_PLUGINS, "-rfEs", *(["--attnperf"] if attnperf else []), *base, *extra]


def shell(argv: Sequence[str]) -> str:
    return shlex.join(argv)


# ---------------------------------------------------------------- probe, outcome, context


@dataclass(frozen=True)
class Ctx:
    """What the probes need to know about this machine, found by running the plugin once."""

    py: str
    attnperf: str
    slug: str
    name: str
    torch: str
    drop_dac: tuple[str, ...] | None  # prefix that makes root obey file permissions; () when not root
    tmpfs: bool  # `unshare -m` + `mount -t tmpfs` work (a full disk can be simulated)

    def expand(self, text: str, workdir: Path) -> str:
        for token, value in (
            ("{py}", self.py),
            ("{attnperf}", self.attnperf),
            ("{dir}", str(workdir)),
            ("{slug}", self.slug),
        ):
            text = text.replace(token, value)
        return text


@dataclass
class Outcome:
    rc: int | None
    out: str
    seconds: float
    workdir: Path
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)


Classifier = Callable[[Outcome], tuple[str, str]]
FileContent = str | bytes | Callable[["Ctx"], str | bytes]


@dataclass(frozen=True)
class SignalPlan:
    """Send ``signum`` once ``trigger`` (a regex over the output, or ``glob:<pattern>`` in the project) shows."""

    signum: int
    trigger: str
    delay_s: float = 0.0


@dataclass(frozen=True)
class Probe:
    family: str
    input: str
    cmd: Sequence[str] | str  # argv, or a bash script; {py} {attnperf} {dir} {slug} are replaced
    check: Classifier
    files: Mapping[str, FileContent] = field(default_factory=dict)
    setup: Callable[[Path, Ctx], None] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    timeout: float = 90.0
    needs: str | None = None  # "drop-dac" or "tmpfs"
    project: bool = True  # write pytest.ini and test_a.py first
    signal_plan: SignalPlan | None = None
    custom: Callable[[Path, Ctx], tuple[int, str]] | None = None  # a measurement instead of one command
    show: str | None = None  # regex of the output line to show in the table
    weight: int = 1  # expected cost: heavy probes are started first


# ---------------------------------------------------------------- reading outputs

TRACEBACK = "Traceback (most recent call last)"
_EXCEPTION_LINE = re.compile(
    r"^(?:INTERNALERROR> )?(?:E\s+)?([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))(?::\s*(.*))?$"
)
_INTERESTING = (
    r"^.{0,60}: error: .+",
    r"^ERROR: (?!usage:).+",
    r"^attnperf(?: memory)?: (?:baseline file|no baseline file|unknown|refus|cannot|error).*",
    r"^E\s{3}\S.*",
    r"baseline update failed.*",
    r"^SKIPPED \[.*",
    r"^FAILED .*",
    r"^ERROR .*",
    r"^RESULT: .*",
)


def _exception_after_traceback(out: str, marker: str) -> str | None:
    tail = out[out.rfind(marker) :]
    found = None
    for line in tail.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match and not line.strip().startswith("During handling"):
            found = line.strip()
    return found


def relevant_line(out: str, prefer: str | None = None) -> str:
    """The one line of ``out`` that says what happened."""
    if prefer:
        match = re.search(prefer, out, re.MULTILINE)
        if match:
            return match.group(0).strip()
    if "INTERNALERROR>" in out:
        line = _exception_after_traceback(out, "INTERNALERROR>")
        if line:
            return line
    if TRACEBACK in out:
        line = _exception_after_traceback(out, TRACEBACK)
        if line:
            return line
    for pattern in _INTERESTING:
        match = re.search(pattern, out, re.MULTILINE)
        if match:
            line = match.group(0).strip()
            if line.endswith(":"):  # 'ERROR: invalid attnperf marker arguments:' -- the next line says which
                following = [rest.strip() for rest in out[match.end() :].splitlines() if rest.strip()]
                line += " " + following[0] if following else ""
            return line
    summary = re.findall(r"^=+ (.* in [\d.]+s.*?) =+$", out, re.MULTILINE)
    if summary:
        return summary[-1]
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def shorten(line: str, workdir: Path, ctx: Ctx) -> str:
    """The project folder as '.', the CPU's slug as <slug>, the test id as <id>: the line's point fits in a cell."""
    for long, short in ((str(workdir) + "/", ""), (str(workdir), "."), (ctx.slug, "<slug>"), (TEST_ID, "<id>")):
        line = line.replace(long, short)
    return line


def trim(text: str, width: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(text: str) -> str:
    return trim(text).replace("|", "\\|")


def has(out: str, *patterns: str) -> bool:
    return all(re.search(pattern, out, re.IGNORECASE | re.MULTILINE) for pattern in patterns)


def crash(outcome: Outcome) -> str | None:
    """A hang, INTERNALERROR or uncaught traceback: always a defect."""
    if outcome.timed_out:
        return f"hung: killed after {outcome.seconds:.0f} s"
    if "INTERNALERROR>" in outcome.out:
        return "INTERNALERROR: pytest crashed instead of reporting the problem"
    if TRACEBACK in outcome.out:
        return "uncaught Python traceback instead of an error message"
    return None


def passed_count(out: str) -> int:
    match = re.search(r"(\d+) passed", out)
    return int(match.group(1)) if match else 0


# ---------------------------------------------------------------- classifiers


def refuses(*needles: str, codes: Sequence[int] = (1, 2, 4), why: str = "") -> Classifier:
    """Must refuse: a non-zero exit in ``codes`` and every regex in ``needles`` -> clear error."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem
        if outcome.rc == 0:
            return "DEFECT", "accepted (exit 0) where it should have refused" + (f": {why}" if why else "")
        missing = [needle for needle in needles if not has(outcome.out, needle)]
        if outcome.rc in codes and not missing:
            return "clear error", ""
        if missing:
            return "acceptable", f"refused, but the message lacks /{missing[0]}/"
        return "acceptable", f"refused with exit {outcome.rc}"

    return classify


def accepts(*needles: str, codes: Sequence[int] = (0,), why: str = "") -> Classifier:
    """Should work: an exit in ``codes``, no crash, every regex in ``needles`` -> acceptable."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem
        missing = [needle for needle in needles if not has(outcome.out, needle)]
        if outcome.rc in codes and not missing:
            return "acceptable", why
        if outcome.rc not in (0, 1) and not missing and has(outcome.out, r"error"):
            return "clear error", "refused it with a message (also fine)"
        return "DEFECT", f"expected it to work ({why or 'exit ' + '/'.join(map(str, codes))}); " + (
            f"output lacks /{missing[0]}/" if missing else f"exit {outcome.rc}"
        )

    return classify


def either(*needles: str) -> Classifier:
    """Refusing (naming ``needles``) and accepting are both fine; a crash is not."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem
        if outcome.rc == 0:
            return "acceptable", "accepted"
        if all(has(outcome.out, needle) for needle in needles):
            return "clear error", ""
        return "acceptable", f"refused with exit {outcome.rc}"

    return classify


def bad_baseline(*keys: str, line: bool = True) -> Classifier:
    """A bad baseline file: usage error (exit 4) naming the file (and line) and the key."""
    needles = [r"\{slug\}\.yaml:\d+" if line else r"\{slug\}\.yaml", *keys]
    return _deferred_refusal(needles, codes=(4,))


def _deferred_refusal(needles: Sequence[str], codes: Sequence[int]) -> Classifier:
    # {slug} is known only once the context is (see discover_context).
    def classify(outcome: Outcome) -> tuple[str, str]:
        slug = re.escape(current().slug)
        return refuses(*(needle.replace(r"\{slug\}", slug) for needle in needles), codes=codes)(outcome)

    return classify


_CONTEXT: list[Ctx] = []


def current() -> Ctx:
    """The context of this run (classifiers that run commands of their own need it)."""
    return _CONTEXT[0]


def use_context(ctx: Ctx) -> None:
    """Make ``ctx`` the context of this run (before any probe is evaluated)."""
    _CONTEXT[:] = [ctx]


def silent_when(predicate: Callable[[Outcome], bool], defect: str, ok: str = "") -> Classifier:
    """Exit 0 with ``predicate`` true is a silent wrong answer."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem
        if predicate(outcome):
            return "DEFECT", defect
        return ("clear error" if outcome.rc else "acceptable"), ok

    return classify


def fails_test_with(*needles: str, defect_if: str | None = None, why: str = "") -> Classifier:
    """The test must fail (exit 1) with ``needles`` in the output; ``defect_if`` in the output is a defect."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem
        if defect_if and has(outcome.out, defect_if):
            return "DEFECT", why or f"output shows /{defect_if}/"
        if outcome.rc == 0:
            return "DEFECT", "the test passed" + (f": {why}" if why else "")
        if all(has(outcome.out, needle) for needle in needles):
            return "clear error", ""
        return "DEFECT", f"failed, but not with /{next(n for n in needles if not has(outcome.out, n))}/" + (
            f": {why}" if why else ""
        )

    return classify


def does_not_fit(outcome: Outcome) -> tuple[str, str]:
    """An allocation that fails must become a 'does not fit' result, not a raw RuntimeError."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    # (robustness branch) `attnperf report`'s study.json says "status": "does_not_fit".
    if has(outcome.out, r"does not fit|no longer fits|\"status\": \"does_not_fit\""):
        return ("clear error" if outcome.rc in (0, 1) else "acceptable"), ""
    if has(outcome.out, r"can't allocate memory|Cannot allocate memory|MemoryError|out of memory"):
        return "DEFECT", "raw allocation error instead of a 'does not fit' result"
    return "DEFECT", f"exit {outcome.rc} without a 'does not fit' result"


# ---------------------------------------------------------------- running one probe


def _write_files(workdir: Path, probe: Probe, ctx: Ctx) -> None:
    files: dict[str, FileContent] = {}
    if probe.project:
        files.update({"pytest.ini": PYTEST_INI, "test_a.py": STANDARD_TEST})
    files.update(probe.files)
    for name, content in files.items():
        path = workdir / ctx.expand(name, workdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        value = content(ctx) if callable(content) else content
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value, encoding="utf-8")


def _make_writable(root: Path) -> None:
    """Undo a probe's chmod so the folder can be removed (matters when not root)."""
    for folder, directories, files in os.walk(root):
        for name in directories + files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, stat.S_IRWXU)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _signal_when_triggered(process: subprocess.Popen[bytes], plan: SignalPlan, workdir: Path, log: Path) -> str:
    """Wait for the trigger, then send the signal; returns what was done."""
    while process.poll() is None:
        if plan.trigger.startswith("glob:"):
            hit = any(workdir.glob(plan.trigger[5:]))
        else:
            hit = bool(re.search(plan.trigger, log.read_text(errors="replace"), re.MULTILINE))
        if hit:
            if plan.delay_s:
                time.sleep(plan.delay_s)
            if process.poll() is not None:
                return "the process ended before the signal"
            os.kill(process.pid, plan.signum)
            return f"sent {signal.Signals(plan.signum).name} {plan.delay_s:g} s after /{plan.trigger}/"
        time.sleep(0.0005 if plan.trigger.startswith("glob:") else 0.05)
    return "the process ended before the trigger appeared: signal never sent"


def run_probe(probe: Probe, ctx: Ctx, workdir: Path) -> Outcome:
    """Write the project into ``workdir``, run the command there; the folder is left for the classifier."""
    _write_files(workdir, probe, ctx)
    if probe.setup is not None:
        probe.setup(workdir, ctx)
    started = time.perf_counter()
    if probe.custom is not None:
        rc, out = probe.custom(workdir, ctx)
        return Outcome(rc, out, time.perf_counter() - started, workdir)
    if isinstance(probe.cmd, str):
        argv = ["bash", "-c", ctx.expand(probe.cmd, workdir)]
    else:
        argv = [ctx.expand(part, workdir) for part in probe.cmd]
    if probe.needs == "drop-dac" and ctx.drop_dac:
        argv = [*ctx.drop_dac, *argv]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    for name in ("GITHUB_STEP_SUMMARY", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(name, None)
    env.update({key: ctx.expand(value, workdir) for key, value in probe.env.items()})
    log = workdir / "_probe_output.txt"
    notes: list[str] = []
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            argv,
            cwd=workdir / probe.cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        if probe.signal_plan is not None:
            notes.append(_signal_when_triggered(process, probe.signal_plan, workdir, log))
        try:
            rc: int | None = process.wait(timeout=probe.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            rc, timed_out = None, True
    out = log.read_text(encoding="utf-8", errors="replace")
    return Outcome(rc, out, time.perf_counter() - started, workdir, timed_out, notes)


@dataclass
class Row:
    number: int
    probe: Probe
    verdict: str
    happened: str
    seconds: float


def evaluate(number: int, probe: Probe, ctx: Ctx, keep: bool) -> Row:
    if probe.needs == "drop-dac" and ctx.drop_dac is None:
        return Row(number, probe, SKIPPED, "skipped: root cannot be made to obey file permissions here (no setpriv)", 0)
    if probe.needs == "tmpfs" and not ctx.tmpfs:
        return Row(number, probe, SKIPPED, "skipped: no private mount namespace for a tiny tmpfs (needs root)", 0)
    workdir = Path(tempfile.mkdtemp(prefix="attnperf-probe-"))
    try:
        outcome = run_probe(probe, ctx, workdir)
        verdict, note = probe.check(outcome)
    except Exception as error:  # a bug of the harness itself must not hide the other probes
        return Row(number, probe, HARNESS_ERROR, f"{type(error).__name__}: {error}", 0)
    finally:
        if not keep:
            _make_writable(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
    code = "timeout" if outcome.timed_out else f"exit {outcome.rc}"
    line = shorten(relevant_line(outcome.out, probe.show), workdir, ctx)
    extra = "; ".join([*outcome.notes, note] if note else outcome.notes)
    happened = f"{code}: {trim(line, 200)}" + (f" — {extra}" if extra else "")
    return Row(number, probe, verdict, happened, outcome.seconds)


# ---------------------------------------------------------------- baseline files

BASELINE = string.Template(
    """\
# written by benchmarks/hostile_probe.py
schema_version: $schema
device:
  name: $name
  slug: $slug
environment:
  torch: '$torch'
$environment
entries:
  '$test_id':
    backend: $backend
    mode: $mode
    shape: {batch: 1, causal: true, dtype: $dtype, head_dim: 16, heads: $heads, k_len: 64, kv_heads: $heads, q_len: 64, scale: null, window: [-1, -1]}
    fits: $fits
    latency_ms:
      median: $median
      iqr: $iqr
      mean: $mean
      stdev: $stdev
      min: $min
      max: $max
      samples: $samples
      quantiles: $quantiles
    peak_bytes: $peak
    recorded_at: '2026-01-01T00:00:00Z'
$extra_entries
$tail
"""
)
QUANTILES = "[" + ", ".join(f"{99.0 + index * 2.0 / 24:.4g}" for index in range(25)) + "]"
DEFAULTS = {
    "schema": "1",
    "environment": "",
    "test_id": TEST_ID,
    "backend": "eager",
    "mode": "forward",
    "dtype": "float32",
    "heads": "2",
    "fits": "true",
    "median": "100.0",
    "iqr": "0.5",
    "mean": "100.0",
    "stdev": "0.3",
    "min": "99.0",
    "max": "101.0",
    "samples": "10",
    "quantiles": QUANTILES,
    "peak": "1000000000",
    "extra_entries": "",
    "tail": "",
}
BASELINE_FILE = "baselines/{slug}.yaml"


def yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def baseline(ctx: Ctx, **fields: str) -> str:
    """A valid baseline file for this machine's CPU with one entry for TEST_ID, fields replaced."""
    values = {**DEFAULTS, "name": yaml_quote(ctx.name), "slug": ctx.slug, "torch": ctx.torch, **fields}
    return BASELINE.substitute(values)


def baseline_with(**fields: str) -> Callable[[Ctx], str]:
    return lambda ctx: baseline(ctx, **fields)


def baseline_then(transform: Callable[[str], str | bytes], **fields: str) -> Callable[[Ctx], str | bytes]:
    return lambda ctx: transform(baseline(ctx, **fields))


BACKENDS = ("eager", "sdpa-math", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "flash-attn", "flex")
LENGTHS = (1024, 4096, 16384, 32768)


def realistic_entry(index: int) -> str:
    """One entry shaped like those of baselines/nvidia-h200.yaml (25 quantiles, shape, environment)."""
    backend = BACKENDS[index % len(BACKENDS)]
    length = LENGTHS[(index // len(BACKENDS)) % len(LENGTHS)]
    median = 0.05 + (index % 997) * 0.173
    quantiles = ", ".join(f"{median * (0.97 + 0.0025 * step):.4g}" for step in range(25))
    return f"""\
  tests/suite/test_attention.py::test_forward_{index // 28}[{backend}-{length // 1024}K]:
    backend: {backend}
    mode: forward
    shape:
      batch: 1
      causal: true
      dtype: float16
      head_dim: 128
      heads: 32
      k_len: {length}
      kv_heads: 32
      q_len: {length}
      scale: null
      window: [-1, -1]
    fits: true
    latency_ms:
      median: {median:.4g}
      iqr: {median * 0.013:.4g}
      mean: {median * 1.001:.4g}
      stdev: {median * 0.011:.4g}
      min: {median * 0.97:.4g}
      max: {median * 1.05:.4g}
      samples: {100 + index % 400}
      quantiles: [{quantiles}]
    peak_bytes: {143654912 + index * 4096}
    recorded_at: '2026-11-21T03:13:24Z'
    environment:
      cuda: '13.0'
      cudnn: '91900'
      driver: 580.159.04
      flash_attn: 2.8.3.post2
      flash_attn_3: null
      torch: 2.11.0+cu130
      transformers: 5.17.0
      triton: 3.6.0
"""


def big_baseline(count: int) -> Callable[[Ctx], str]:
    """This CPU's valid baseline file: TEST_ID plus ``count - 1`` realistic entries."""
    return lambda ctx: baseline(ctx, extra_entries="".join(realistic_entry(index) for index in range(count - 1)))


# ---------------------------------------------------------------- family: YAML that attacks the parser


def yaml_probes() -> list[Probe]:
    probes: list[Probe] = []

    def add(what: str, content: FileContent, check: Classifier, *, via: str = "pytest", timeout: float = 90.0) -> None:
        cmd: Sequence[str] | str = pytest_argv() if via == "pytest" else ["{attnperf}", "show", BASELINE_FILE]
        if via == "show-capped":  # a memory cap, in case a fix makes the expansion itself succeed
            cmd = "ulimit -v 4000000; exec {attnperf} show baselines/{slug}.yaml"
        probes.append(
            Probe(
                "yaml",
                what + ("" if via == "pytest" else " (via `attnperf show`)"),
                cmd,
                check,
                files={BASELINE_FILE: content},
                timeout=timeout,
            )
        )

    # -- aliases, recursion, size
    laughs = "\n".join(
        [f"  lol0: &a0 [{', '.join(['lol'] * 9)}]"]
        + [f"  lol{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 10)]
    )
    add(
        "billion laughs: 9 levels of 9 aliases in `environment` (9^9 leaves)",
        baseline_with(environment=laughs),
        either(),
        timeout=40,
    )
    add("billion laughs in `environment`", baseline_with(environment=laughs), either(), via="show-capped", timeout=40)
    add("recursive alias `loop: &r [*r]` in `environment`", baseline_with(environment="  loop: &r [*r]"), either())
    add("recursive alias `loop: &r [*r]`", baseline_with(environment="  loop: &r [*r]"), either(), via="show")
    add(
        "recursive mapping alias `loop: &r {self: *r}` in an entry's `shape`",
        baseline_then(lambda text: text.replace("    shape: {", "    shape: &r {self: *r, ", 1)),
        either(),
    )
    add(
        "5,000 nested lists `[[[…]]]` in `environment`",
        baseline_with(environment="  deep: " + "[" * 5000 + "]" * 5000),
        either("nest|deep|recurs"),
    )
    add("5,000 nested lists", baseline_with(environment="  deep: " + "[" * 5000 + "]" * 5000), either(), via="show")
    add(
        "5,000 nested flow mappings `{a: {a: …}}` in `environment`",
        baseline_with(environment="  deep: " + "{a: " * 5000 + "1" + "}" * 5000),
        either(),
    )
    add(
        "100 nested block mappings in `environment`",
        baseline_with(environment="\n".join("  " + "  " * depth + f"k{depth}:" for depth in range(100)) + " 1"),
        accepts(r"1 passed"),
    )
    add(
        "a 5 MB quoted scalar as the device name",
        baseline_with(name=yaml_quote("x" * 5_000_000)),
        accepts(r"1 passed"),
        timeout=180,
    )
    add(
        "a 50 MB file (valid entry + 50 MB of comment lines)",
        baseline_then(lambda text: text + ("# " + "x" * 97 + "\n") * (50 * 1024 * 1024 // 100)),
        either(),
        timeout=300,
    )
    add(
        "samples as a 5,000-digit integer (over Python's int-string limit)",
        baseline_with(samples="7" * 5000),
        bad_baseline("samples"),
    )
    add("samples as a 5,000-digit integer", baseline_with(samples="7" * 5000), bad_baseline("samples"), via="show")
    # -- tags
    add(
        "`!!python/object/apply:os.system [touch PWNED]` in `environment`",
        baseline_with(environment="  x: !!python/object/apply:os.system ['touch PWNED']"),
        nothing_ran(bad_baseline("constructor|python/object")),
    )
    add(
        "`!!python/name:os.system` as the device name",
        baseline_with(name="!!python/name:os.system ''"),
        bad_baseline("constructor|python/name"),
    )
    add("an unknown local tag `!foo` on the median", baseline_with(median="!foo 1.0"), bad_baseline("constructor|foo"))
    add("`!!binary` bytes as the device name", baseline_with(name="!!binary aGVsbG8="), bad_baseline("name", "string"))
    add(
        "an unquoted timestamp as `recorded_at` (YAML makes it a datetime)",
        baseline_then(
            lambda text: text.replace("recorded_at: '2026-01-01T00:00:00Z'", "recorded_at: 2026-01-01T00:00:00Z")
        ),
        bad_baseline("recorded_at"),
    )
    # -- encodings and characters
    add(
        "a Latin-1 byte (0xE9) in the device name",
        baseline_then(lambda text: text.encode("utf-8").replace(b"# written", b"# wr\xe9tten", 1)),
        bad_baseline("UTF-8"),
    )
    add(
        "the whole file in UTF-16 with a BOM",
        baseline_then(lambda text: text.encode("utf-16")),
        bad_baseline("UTF-8", line=False),
    )
    add(
        "a UTF-8 byte-order mark at the start",
        baseline_then(lambda text: b"\xef\xbb\xbf" + text.encode()),
        accepts(r"1 passed"),
    )
    add(
        "a NUL byte inside a comment",
        baseline_then(lambda text: text.replace("# written", "# wr\x00tten", 1)),
        bad_baseline("not valid YAML|special characters", line=False),
    )
    add("random binary (4 KiB of bytes 0..255)", lambda ctx: bytes(range(256)) * 16, bad_baseline("UTF-8", line=False))
    add("CRLF line endings", baseline_then(lambda text: text.replace("\n", "\r\n")), accepts(r"1 passed"))
    add("old-Mac CR-only line endings", baseline_then(lambda text: text.replace("\n", "\r")), either())
    add(
        "tab-indented entry keys",
        baseline_then(lambda text: text.replace("    backend: eager", "\tbackend: eager", 1)),
        bad_baseline("valid YAML|tab"),
    )
    add("a tab after `median:`", baseline_with(median="\t100.0"), either())
    # -- keys
    add("`entries:` twice at the top level", baseline_with(tail="entries: {}"), bad_baseline("duplicate", "entries"))
    add(
        "the same test id twice",
        lambda ctx: baseline(ctx) + baseline(ctx).split("entries:\n", 1)[1],
        bad_baseline("duplicate"),
    )
    add("`median` twice in one entry", baseline_with(median="100.0\n      median: 0.001"), bad_baseline("duplicate"))
    add(
        "a duplicate key in a flow mapping (`shape: {batch: 1, batch: 2}`)",
        baseline_then(lambda text: text.replace("shape: {batch: 1,", "shape: {batch: 1, batch: 2,", 1)),
        bad_baseline("duplicate"),
    )
    add(
        "merge key `<<: *stats` filling latency_ms from an anchor",
        baseline_then(
            lambda text: text.replace("    latency_ms:\n", "    latency_ms:\n      <<: *stats\n", 1).replace(
                "      median: 100.0\n", "", 1
            ),
            environment="  stats: &stats {median: 100.0}",
        ),
        # Aliases and merge keys are refused by design (no billion laughs, no recursion): a clear refusal is right.
        bad_baseline("merge keys"),
    )
    add(
        "merge key `<<: 5` (not a mapping)",
        baseline_then(lambda text: text.replace("    latency_ms:\n", "    latency_ms:\n      <<: 5\n", 1)),
        bad_baseline("valid YAML|merge|mapping"),
    )
    add(
        "merge key pulling an unknown statistic `p99` into latency_ms",
        baseline_then(
            lambda text: text.replace("    latency_ms:\n", "    latency_ms:\n      <<: *extra\n", 1),
            environment="  extra: &extra {p99: 3.0}",
        ),
        bad_baseline("p99"),
    )
    add(
        "merge key overriding the median with 0 (`<<` after the median)",
        baseline_then(
            lambda text: text.replace("      median: 100.0\n", "      median: 100.0\n      <<: {median: 0}\n", 1)
        ),
        either("median"),
    )
    add(
        "two YAML documents (`---` between two valid files)",
        lambda ctx: baseline(ctx) + "---\n" + baseline(ctx),
        bad_baseline("single document"),
    )
    add("`%YAML 2.0` directive", baseline_then(lambda text: "%YAML 2.0\n---\n" + text), bad_baseline("valid YAML"))
    add("an integer key at the top level (`1: x`)", baseline_with(tail="1: x"), bad_baseline("string|1"))
    add(
        "a boolean key (`yes: 1`) in latency_ms",
        baseline_with(median="100.0\n      yes: 1"),
        bad_baseline("True|string"),
    )
    add("a null key (`~: 1`) in an entry", baseline_with(peak="1000000000\n    ~: 1"), bad_baseline("None|string"))
    add(
        "an unhashable key (`? [a, b]`) in environment",
        baseline_with(environment="  ? [a, b]\n  : 1"),
        bad_baseline("hashable|valid YAML"),
    )
    add(
        "a duplicate anchor name (`&a` twice)",
        baseline_with(environment="  x: &a 1\n  y: &a 2"),
        bad_baseline("anchor"),
    )
    add("an alias to an undefined anchor (`*nope`)", baseline_with(median="*nope"), bad_baseline("nope|anchor"))
    add("a scalar document (`42`)", lambda ctx: "42\n", bad_baseline("mapping", line=False))
    add("an empty file (0 bytes)", lambda ctx: "", bad_baseline("empty", line=False))
    # -- schema_version
    for value, what in (
        ("0", "0"),
        ("2", "2 (a newer plugin)"),
        ("'1'", "the string '1'"),
        ("true", "true"),
        ("1.0", "1.0"),
        ("1" + "0" * 30, "a 31-digit integer"),
    ):
        add(f"schema_version: {what}", baseline_with(schema=value), bad_baseline("schema_version"))
    add(
        "schema_version missing",
        baseline_then(lambda text: text.replace("schema_version: 1\n", "", 1)),
        bad_baseline("schema_version"),
    )
    # -- numbers in every numeric field
    values = (
        (".nan", "NaN"),
        (".inf", "+inf"),
        ("-0.0", "-0.0"),
        ("1e400", "1e400 (a string to YAML 1.1)"),
        ("-1", "-1"),
        ("0", "0"),
        ("true", "true (a bool as a number)"),
        ("1" + "0" * 400, "10**400 (an int beyond float)"),
    )
    for field_name, key in (
        ("median", "median"),
        ("quantiles", "quantiles"),
        ("peak", "peak_bytes"),
        ("samples", "samples"),
    ):
        for value, what in values:
            text = f"[99.0, {value}, 101.0]" if field_name == "quantiles" else value
            check = peak_zero if (key, value) == ("peak_bytes", "0") else bad_baseline(key)
            add(
                f"{key}: {what}" + (" inside the list" if field_name == "quantiles" else ""),
                baseline_with(**{field_name: text}),
                check,
            )
    add("median: 1.0e+400 (overflows to inf)", baseline_with(median="1.0e+400"), bad_baseline("median"))
    add("median: -.inf", baseline_with(median="-.inf"), bad_baseline("median"))
    add("samples: a 30-digit int", baseline_with(samples="123456789012345678901234567890"), either("samples"))
    add("iqr: .nan (a statistic the gate does not use)", baseline_with(iqr=".nan"), bad_baseline("iqr"))
    # -- contents that parse but contradict the run or themselves
    add("median: 0.0", baseline_with(median="0.0"), bad_baseline("median"))
    add("empty quantiles `[]`", baseline_with(quantiles="[]"), bad_baseline("quantiles"))
    add(
        "quantiles contradicting the median (median 0.001 ms, every quantile 1000 ms; the run takes ~0.1 ms)",
        baseline_with(
            median="0.001", min="0.001", max="0.001", mean="0.001", quantiles="[" + ", ".join(["1000.0"] * 25) + "]"
        ),
        fails_test_with(
            r"regression|quantile|contradict",
            why="a 100x slower run passes: the stored quantiles are "
            "used for the significance test without checking them against the median",
        ),
    )
    add("a single quantile", baseline_with(quantiles="[100.0]"), accepts(r"1 passed"))
    add("unsorted quantiles", baseline_with(quantiles="[101.0, 99.0, 100.0]"), either())
    add("min 200 > median 100 > max 1", baseline_with(min="200.0", max="1.0"), either("min|max"))
    add("`fits: false` with a median", baseline_with(fits="false"), either())
    add(
        "`latency_ms: null` with `fits: true`",
        baseline_then(lambda text: re.sub(r"    latency_ms:\n(      .*\n)+", "    latency_ms: null\n", text)),
        accepts(r"1 passed"),
    )
    add(
        "entry recorded in mode backward (median 1000 ms) for this forward test",
        baseline_with(mode="backward", median="1000.0"),
        mismatched_entry,
    )
    add(
        "entry recorded with heads 32 and float16 for this heads-2 float32 test",
        baseline_with(heads="32", dtype="float16", median="1000.0"),
        mismatched_entry,
    )
    add(
        "entry recorded for backend flash-attn under this eager test's id",
        baseline_with(backend="flash-attn", median="1000.0"),
        mismatched_entry,
    )
    add(
        "only entries of other tests",
        baseline_then(lambda text: text.replace(TEST_ID, "test_b.py::test_other[x]")),
        accepts(r"1 passed"),
    )
    return probes


def nothing_ran(inner: Classifier) -> Classifier:
    """``inner``, and the file PWNED must not exist (a tag must never run code)."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        if (outcome.workdir / "PWNED").exists():
            return "DEFECT", "the YAML tag ran a shell command"
        return inner(outcome)

    return classify


def peak_zero(outcome: Outcome) -> tuple[str, str]:
    """peak_bytes: 0 is accepted; the next run must not fail with an infinite ratio."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"x ?inf|\+inf %"):
        return "DEFECT", "a recorded peak of 0 B makes every later peak an infinite ratio"
    return ("clear error" if outcome.rc else "acceptable"), ""


def mismatched_entry(outcome: Outcome) -> tuple[str, str]:
    """A baseline entry recorded for another mode/shape/backend must not gate this test silently."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(
        outcome.out,
        r"(mode|shape|backend|dtype|heads).{0,80}(differ|mismatch|recorded (for|with)|not the same)"
        r"|recorded for another problem \((mode|shape|backend|dtype|heads)",
    ):
        return ("clear error" if outcome.rc else "acceptable"), ""
    return "DEFECT", (
        "compared with a baseline recorded for another mode/shape/backend without a word "
        f"(exit {outcome.rc}); a real regression up to x10,000 would pass"
    )


# ---------------------------------------------------------------- family: paths the run writes to


def symlink_loop(name: str) -> Callable[[Path, Ctx], None]:
    def setup(workdir: Path, ctx: Ctx) -> None:
        target = workdir / ctx.expand(name, workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.name, target)

    return setup


def read_only_dir(name: str, *, keep_files: bool = True) -> Callable[[Path, Ctx], None]:
    def setup(workdir: Path, ctx: Ctx) -> None:
        folder = workdir / ctx.expand(name, workdir)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)

    return setup


def chmod(name: str, mode: int) -> Callable[[Path, Ctx], None]:
    def setup(workdir: Path, ctx: Ctx) -> None:
        (workdir / ctx.expand(name, workdir)).chmod(mode)

    return setup


def both(*setups: Callable[[Path, Ctx], None]) -> Callable[[Path, Ctx], None]:
    def setup(workdir: Path, ctx: Ctx) -> None:
        for step in setups:
            step(workdir, ctx)

    return setup


def output_path(*needles: str) -> Classifier:
    """A report that cannot be written: a message naming the path; exit non-zero (or 0 with a clear warning)."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem + " (the tests passed; writing the report crashed the run)"
        named = all(has(outcome.out, needle) for needle in needles)
        if outcome.rc == 0:
            if named and has(outcome.out, r"cannot|could not|failed|error|warn"):
                return "acceptable", "warned, exit 0"
            return "DEFECT", "exit 0 and no word about the report that was not written"
        return ("clear error", "") if named else ("acceptable", "refused, without naming the path")

    return classify


def pytest_own(outcome: Outcome) -> tuple[str, str]:
    """--junitxml is pytest's own: a crash there is pytest's, unless the plugin's frames are in it."""
    problem = crash(outcome)
    if problem and "pytest_attnperf" in outcome.out:
        return "DEFECT", problem + " (in pytest-attnperf's code)"
    if problem and "junitxml" in outcome.out:
        return "acceptable", "pytest's own junitxml plugin crashes here (not pytest-attnperf)"
    return output_path()(outcome)


def baseline_write_failed(outcome: Outcome) -> tuple[str, str]:
    """An update that cannot write: 'baseline update failed', exit 1, the old file unchanged."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if "OLD-FILE-CHANGED" in outcome.out:
        return "DEFECT", "the old baseline file was changed"
    if outcome.rc == 0:
        return "DEFECT", "exit 0 although the baseline could not be written"
    if has(outcome.out, r"baseline update failed|cannot|baseline file"):
        return "clear error", ""
    return "acceptable", f"exit {outcome.rc} without naming the baseline file"


def keep_copy(source: str, copy: str) -> Callable[[Path, Ctx], None]:
    def setup(workdir: Path, ctx: Ctx) -> None:
        shutil.copyfile(workdir / ctx.expand(source, workdir), workdir / copy)

    return setup


COMPARE_OLD = "; rc=$?; if cmp -s baselines/{slug}.yaml old.yaml; then echo OLD-FILE-INTACT; else echo OLD-FILE-CHANGED; fi; exit $rc"


def path_probes() -> list[Probe]:
    probes: list[Probe] = []
    long_name = "a" * 300
    ok = {BASELINE_FILE: baseline_with()}
    for option, label in (("--attnperf-json", "json"), ("--attnperf-markdown", "markdown")):
        probes += [
            Probe("paths", f"{option}=. (a directory)", pytest_argv(f"{option}=."), output_path(r"\."), files=ok),
            Probe(
                "paths",
                f"{option}=test_a.py/out (under a file)",
                pytest_argv(f"{option}=test_a.py/out.{label}"),
                output_path(r"test_a\.py"),
                files=ok,
            ),
            Probe(
                "paths",
                f"{option}=ro/out (read-only folder)",
                pytest_argv(f"{option}=ro/out.{label}"),
                output_path(r"ro/out"),
                files=ok,
                setup=read_only_dir("ro"),
                needs="drop-dac",
            ),
            Probe(
                "paths",
                f"{option}=/dev/full (disk full)",
                pytest_argv(f"{option}=/dev/full"),
                output_path(r"/dev/full"),
                files=ok,
            ),
            Probe(
                "paths",
                f"{option}=<300-character name>",
                pytest_argv(f"{option}={long_name}"),
                output_path(r"aaaaaaaa"),
                files=ok,
            ),
            Probe(
                "paths",
                f"{option}=loop (a symlink loop)",
                pytest_argv(f"{option}=loop"),
                output_path(r"loop"),
                files=ok,
                setup=symlink_loop("loop"),
            ),
        ]
    probes.append(
        Probe(
            "paths",
            "--attnperf-json=a/b/c/out.json (missing folders)",
            pytest_argv("--attnperf-json=a/b/c/out.json"),
            accepts(r"1 passed"),
            files=ok,
        )
    )
    probes.append(Probe("paths", "--attnperf-json= (empty)", pytest_argv("--attnperf-json="), either(), files=ok))
    for value, label, setup, needs in (
        (".", "a directory", None, None),
        ("test_a.py/summary.md", "under a file", None, None),
        ("/dev/full", "/dev/full (disk full)", None, None),
        (
            "summary.md",
            "a read-only file",
            both(lambda w, c: (w / "summary.md").write_text("x"), chmod("summary.md", 0o444)),
            "drop-dac",
        ),
    ):
        probes.append(
            Probe(
                "paths",
                f"GITHUB_STEP_SUMMARY={value} ({label})",
                pytest_argv(),
                output_path(re.escape(value)),
                files=ok,
                env={"GITHUB_STEP_SUMMARY": value},
                setup=setup,
                needs=needs,
            )
        )
    probes.append(
        Probe(
            "paths",
            "GITHUB_STEP_SUMMARY= (empty)",
            pytest_argv(),
            accepts(r"1 passed"),
            files=ok,
            env={"GITHUB_STEP_SUMMARY": ""},
        )
    )
    report_fast = ("--attnperf-min-samples=3",)
    probes += [
        Probe(
            "paths",
            "--attnperf-report=test_a.py/study (under a file)",
            pytest_argv("--attnperf-report=test_a.py/study", *report_fast),
            output_path(r"test_a\.py"),
            files=ok,
            weight=2,
        ),
        Probe(
            "paths",
            "--attnperf-report=ro/study (read-only folder)",
            pytest_argv("--attnperf-report=ro/study"),
            output_path(r"ro/study"),
            files=ok,
            setup=read_only_dir("ro"),
            needs="drop-dac",
            weight=2,
        ),
        Probe(
            "paths",
            "--attnperf-report=<300-character name>",
            pytest_argv(f"--attnperf-report={long_name}"),
            output_path(r"aaaaaaaa"),
            files=ok,
            weight=2,
        ),
        Probe(
            "paths",
            "--junitxml=test_a.py/j.xml (under a file)",
            pytest_argv("--junitxml=test_a.py/j.xml"),
            pytest_own,
            files=ok,
        ),
        Probe("paths", "--junitxml=/dev/full (disk full)", pytest_argv("--junitxml=/dev/full"), pytest_own, files=ok),
    ]
    # -- the baselines folder
    old = {BASELINE_FILE: baseline_with()}
    probes += [
        Probe(
            "paths",
            "--attnperf-update into a read-only baselines folder",
            shell(pytest_argv("--attnperf-update")) + COMPARE_OLD,
            baseline_write_failed,
            files=old,
            setup=both(keep_copy(BASELINE_FILE, "old.yaml"), read_only_dir("baselines")),
            needs="drop-dac",
        ),
        Probe(
            "paths",
            "--attnperf-baselines=test_a.py (a file where the folder should be)",
            pytest_argv("--attnperf-baselines=test_a.py"),
            refuses(r"test_a\.py", "directory|cannot", codes=(4,)),
        ),
        Probe(
            "paths",
            "--attnperf-baselines=test_a.py/sub --attnperf-update (a path under a file)",
            pytest_argv("--attnperf-baselines=test_a.py/sub", "--attnperf-update"),
            refuses(r"test_a\.py", "directory|cannot"),
        ),
        Probe(
            "paths",
            "ini attnperf_baselines = a<NUL>b",
            pytest_argv(),
            refuses("attnperf_baselines", codes=(4,)),
            files={"pytest.ini": "[pytest]\nattnperf_baselines = a\x00b\n"},
        ),
        Probe(
            "paths",
            "--attnperf-baselines=<300-character name>",
            pytest_argv(f"--attnperf-baselines={long_name}"),
            refuses("too long|cannot", codes=(4,)),
        ),
        Probe(
            "paths",
            "--attnperf-baselines=<300-character name> --attnperf-update",
            pytest_argv(f"--attnperf-baselines={long_name}", "--attnperf-update"),
            refuses("too long|cannot"),
        ),
        Probe(
            "paths",
            "--attnperf-baselines=loop (a symlink loop)",
            pytest_argv("--attnperf-baselines=loop"),
            refuses("loop|symbolic|cannot", codes=(4,)),
            setup=symlink_loop("loop"),
        ),
        Probe(
            "paths",
            "baselines/<slug>.yaml is a symlink to itself",
            pytest_argv(),
            refuses("loop|symbolic|cannot", codes=(4,)),
            setup=symlink_loop(BASELINE_FILE),
        ),
        Probe(
            "paths",
            "baselines/<slug>.yaml is a directory",
            pytest_argv(),
            refuses(r"\{slug\}\.yaml".replace(r"\{slug\}", ".*"), "directory|cannot", codes=(4,)),
            setup=lambda w, c: (w / c.expand(BASELINE_FILE, w)).mkdir(parents=True),
        ),
        Probe(
            "paths",
            "baselines/<slug>.yaml unreadable (mode 000)",
            pytest_argv(),
            refuses("Permission denied|cannot be read", codes=(4,)),
            files=old,
            setup=chmod(BASELINE_FILE, 0),
            needs="drop-dac",
        ),
        Probe(
            "paths",
            "--attnperf-update over a read-only (0444) baseline file in a writable folder",
            pytest_argv("--attnperf-update"),
            either(),
            files=old,
            setup=chmod(BASELINE_FILE, 0o444),
            needs="drop-dac",
        ),
        Probe(
            "paths",
            "--attnperf-update with baselines/<slug>.yaml a symlink to ../shared/<slug>.yaml",
            pytest_argv("--attnperf-update"),
            symlink_kept,
            files={"shared/{slug}.yaml": baseline_with()},
            setup=lambda w, c: (
                (w / "baselines").mkdir() or os.symlink(f"../shared/{c.slug}.yaml", w / c.expand(BASELINE_FILE, w))
            ),
        ),
        Probe(
            "paths",
            "--attnperf-update with baselines/ a dangling symlink",
            pytest_argv("--attnperf-update"),
            baseline_write_failed,
            setup=lambda w, c: os.symlink("nowhere", w / "baselines"),
        ),
        Probe(
            "paths",
            "--attnperf-update onto a full disk (baselines/ on a 64 KiB tmpfs holding a 40-entry file)",
            "mkdir -p baselines && unshare -m bash -c 'mount -t tmpfs -o size=64k tmpfs baselines && "
            "cp old.yaml baselines/{slug}.yaml && "
            + shell(pytest_argv("--attnperf-update")).replace("'", "'\\''")
            + COMPARE_OLD.replace("'", "'\\''")
            + "; ls -a baselines'",
            baseline_write_failed,
            files={"old.yaml": big_baseline(40)},
            needs="tmpfs",
        ),
    ]
    return probes


def symlink_kept(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, "refusing baseline name"):
        return "DEFECT", (
            "a baseline file that is a symlink (a common way to share one file) is refused outright, "
            "with a message that blames the GPU's name instead of the link"
        )
    link = outcome.workdir / current().expand(BASELINE_FILE, outcome.workdir)
    if not link.is_symlink():
        return "DEFECT", (
            "the update replaced the symlink by a regular file: the shared file it pointed to keeps the old entries"
        )
    return "acceptable", "wrote through the link"


# ---------------------------------------------------------------- family: options and ini values


def written_to(relative: str, *, expected: bool, defect: str, elsewhere: str | None = None) -> Classifier:
    """Where did --attnperf-update write? ``expected``: whether ``relative`` should exist afterwards."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        problem = crash(outcome)
        if problem:
            return "DEFECT", problem
        path = outcome.workdir / current().expand(relative, outcome.workdir)
        if path.exists() != expected:
            found = elsewhere and (outcome.workdir / current().expand(elsewhere, outcome.workdir)).exists()
            return "DEFECT", defect + (f" (it is at ./{elsewhere.replace('{slug}', '<slug>')})" if found else "")
        return ("clear error" if outcome.rc else "acceptable"), ""

    return classify


def duplicate_cases(outcome: Outcome) -> tuple[str, str]:
    """A backend or length listed twice: run once (deduplicated) or refuse; never two cases with mangled ids."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    ids = re.findall(r"test_\w+\[[^\]\s]*\]", outcome.out)
    mangled = sorted({test_id for test_id in ids if re.search(r"_[0-9](?:-|\])", test_id)})
    if passed_count(outcome.out) > 1 or mangled:
        return "DEFECT", (
            "ran the same case twice, under ids pytest made unique ("
            + ", ".join(mangled)
            + "), which match no baseline entry"
        )
    return ("clear error" if outcome.rc else "acceptable"), ""


def nothing_measured(outcome: Outcome) -> tuple[str, str]:
    """An empty backend list must be refused, not turned into a green run that measured nothing."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if outcome.rc == 0 or outcome.rc == 5:
        return "DEFECT", "a green run that measured nothing (empty parameter set); expected a usage error"
    return refuses("backend")(outcome)


def option_probes() -> list[Probe]:
    ok = {BASELINE_FILE: baseline_with()}
    probes = [
        Probe(
            "options", "--attnperf-backends= (empty)", pytest_argv("--attnperf-backends="), nothing_measured, files=ok
        ),
        Probe(
            "options",
            "--attnperf-backends=, (a lone comma)",
            pytest_argv("--attnperf-backends=,"),
            nothing_measured,
            files=ok,
        ),
        Probe(
            "options",
            "ini `attnperf_backends = ,`",
            pytest_argv(drop=("--attnperf-backends",)),
            nothing_measured,
            files={**ok, "pytest.ini": "[pytest]\nattnperf_backends = ,\n"},
        ),
        Probe(
            "options",
            "--attnperf-backends=nope",
            pytest_argv("--attnperf-backends=nope"),
            refuses("unknown attention backend 'nope'", "expected one of"),
        ),
        Probe(
            "options",
            "--attnperf-backends=eager,eager",
            pytest_argv("--attnperf-backends=eager,eager", "-v"),
            duplicate_cases,
            files=ok,
        ),
        Probe(
            "options",
            "--attnperf-seqlens=64,64",
            pytest_argv("--attnperf-seqlens=64,64", "-v"),
            duplicate_cases,
            files=ok,
        ),
        Probe(
            "options",
            "ini `attnperf_backends = eager,nope`",
            pytest_argv(drop=("--attnperf-backends",)),
            refuses("nope"),
            files={"pytest.ini": "[pytest]\nattnperf_backends = eager,nope\n"},
        ),
    ]
    for value in ("0", "-1", "1e9", "abc", ""):
        probes.append(
            Probe(
                "options",
                f"--attnperf-seqlens={value}" + (" (empty)" if not value else ""),
                pytest_argv(f"--attnperf-seqlens={value}"),
                refuses("attnperf-seqlens", "context length|empty|integer", codes=(4,)),
            )
        )
    probes += [
        Probe(
            "options",
            "--attnperf-heads=2 --attnperf-kv-heads=4 (kv-heads > heads)",
            pytest_argv("--attnperf-kv-heads=4"),
            refuses("kv.heads", why="kv-heads 4 > heads 2 is impossible; the run silently used 2 KV heads"),
            files=ok,
        ),
        Probe(
            "options",
            "--attnperf-heads=3 --attnperf-kv-heads=2 (not a multiple)",
            pytest_argv("--attnperf-heads=3", "--attnperf-kv-heads=2"),
            refuses("multiple of kv_heads"),
        ),
        Probe(
            "options",
            "--attnperf-latency-tolerance=-1",
            pytest_argv("--attnperf-latency-tolerance=-1"),
            refuses("latency-tolerance", "out of range|expected", codes=(4,)),
        ),
        Probe(
            "options",
            "--attnperf-latency-tolerance=abc",
            pytest_argv("--attnperf-latency-tolerance=abc"),
            refuses("latency-tolerance", "abc", codes=(4,)),
        ),
        Probe(
            "options",
            "--attnperf-latency-tolerance=1000% (the documented upper end)",
            pytest_argv("--attnperf-latency-tolerance=1000%"),
            accepts(r"1 passed"),
            files=ok,
        ),
        Probe(
            "options",
            "--attnperf-latency-tolerance=1001%",
            pytest_argv("--attnperf-latency-tolerance=1001%"),
            refuses("latency-tolerance", codes=(4,)),
        ),
        Probe(
            "options",
            "--attnperf-memory-tolerance=nan",
            pytest_argv("--attnperf-memory-tolerance=nan"),
            refuses("memory-tolerance", codes=(4,)),
        ),
        Probe(
            "options",
            "--attnperf-baselines mybl (space, not =)",
            pytest_argv("--attnperf-baselines", "mybl"),
            accepts(r"baselines mybl/\S+\.yaml \(1 entries"),
            files={"mybl/{slug}.yaml": baseline_with()},
        ),
        Probe(
            "options",
            "--attnperf-baselines=mybl",
            pytest_argv("--attnperf-baselines=mybl"),
            accepts(r"baselines mybl/\S+\.yaml \(1 entries"),
            files={"mybl/{slug}.yaml": baseline_with()},
        ),
        Probe(
            "options",
            "--attnperf-baselines= (empty) --attnperf-update",
            pytest_argv("--attnperf-baselines=", "--attnperf-update"),
            written_to(
                "{slug}.yaml",
                expected=False,
                defect="an empty folder name "
                "silently became the rootdir: the baseline file was written next to pytest.ini",
            ),
            files=ok,
        ),
        Probe(
            "options",
            "--attnperf-baselines=../x --attnperf-update, run from proj/sub (rootdir proj)",
            [*pytest_argv("--attnperf-baselines=../x", "--attnperf-update")],
            written_to(
                "proj/x/{slug}.yaml",
                expected=True,
                defect="a relative command-line path was taken from the rootdir, not the working "
                "folder, so the file did not land in proj/x but outside the project",
                elsewhere="x/{slug}.yaml",
            ),
            project=False,
            cwd="proj/sub",
            files={"proj/pytest.ini": PYTEST_INI, "proj/sub/test_a.py": STANDARD_TEST},
        ),
        Probe(
            "options",
            "--attnperf-update without --attnperf",
            pytest_argv("--attnperf-update", attnperf=False),
            update_without_attnperf,
            files=ok,
        ),
        Probe(
            "options",
            "--attnperf-mode=forward+backward against a forward baseline",
            pytest_argv("--attnperf-mode=forward+backward"),
            mismatched_entry,
            files=ok,
        ),
        Probe(
            "options",
            "--attnperf-heads=1 --attnperf-dtype=bfloat16 against a heads-2 float32 baseline",
            pytest_argv("--attnperf-heads=1", "--attnperf-dtype=bfloat16"),
            mismatched_entry,
            files=ok,
        ),
        Probe(
            "options",
            "ini `attnperf_seqlens = 0`",
            pytest_argv(drop=("--attnperf-seqlens",)),
            refuses("attnperf_seqlens", "pytest.ini", codes=(4,)),
            files={"pytest.ini": "[pytest]\nattnperf_seqlens = 0\n"},
        ),
        Probe(
            "options",
            "ini `attnperf_device = cuda` (no GPU)",
            pytest_argv(drop=("--attnperf-device",)),
            refuses("cuda", "GPU", codes=(4,)),
            files={"pytest.ini": "[pytest]\nattnperf_device = cuda\n"},
        ),
        Probe(
            "options",
            "--attnperf-device=cuda (no GPU)",
            pytest_argv("--attnperf-device=cuda"),
            refuses("cuda", "GPU", codes=(4,)),
        ),
        Probe(
            "options",
            "--attnperf-device=cuda:99",
            pytest_argv("--attnperf-device=cuda:99"),
            refuses("cuda", codes=(4,)),
        ),
        Probe(
            "options", "--attnperf-device= (empty)", pytest_argv("--attnperf-device="), refuses("device", codes=(4,))
        ),
        Probe("options", "--attnperf-device=meta", pytest_argv("--attnperf-device=meta"), refuses("meta", codes=(4,))),
        Probe(
            "options",
            "--attnperf-seed=99999999999999999999999 (beyond int64)",
            pytest_argv("--attnperf-seed=99999999999999999999999"),
            seed_overflow,
            files=ok,
        ),
        Probe(
            "options", "--attnperf-dtype=float64", pytest_argv("--attnperf-dtype=float64"), refuses("dtype", codes=(4,))
        ),
        Probe(
            "options",
            "--attnperf-min-samples=0",
            pytest_argv("--attnperf-min-samples=0"),
            refuses("min-samples", codes=(4,)),
        ),
        Probe("options", "--attnperf-rep=0ms", pytest_argv("--attnperf-rep=0ms"), refuses("rep", codes=(4,))),
        Probe("options", "--attnperf-warmup=inf", pytest_argv("--attnperf-warmup=inf"), refuses("warmup", codes=(4,))),
        Probe("options", "--attnperf-batch=1.5", pytest_argv("--attnperf-batch=1.5"), refuses("batch", codes=(4,))),
        Probe(
            "options",
            "--attnperf-missing=fail with no baseline file",
            pytest_argv("--attnperf-missing=fail"),
            refuses("no latency baseline", "attnperf update", codes=(1,)),
        ),
        Probe(
            "options",
            "--attnperf-guard=refuse on a CPU",
            pytest_argv("--attnperf-guard=refuse"),
            accepts(r"1 passed"),
            files=ok,
        ),
    ]
    return probes


def update_without_attnperf(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"--attnperf-update.{0,80}(needs|requires|without|only with)"):
        return "clear error", ""
    if outcome.rc == 0:
        return "DEFECT", (
            "exit 0, no baseline written and no word why: --attnperf-update without --attnperf is silently a no-op"
        )
    return "acceptable", ""


def seed_overflow(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if outcome.rc == 4 and has(outcome.out, "seed"):
        return "clear error", ""
    if outcome.rc == 0:
        return "acceptable", "accepted (the seed was reduced somehow)"
    if has(outcome.out, r"Overflow|RuntimeError|OverflowError"):
        return "DEFECT", "raw overflow error inside the qkv fixture instead of a usage error naming --attnperf-seed"
    return "acceptable", f"exit {outcome.rc}"


# ---------------------------------------------------------------- family: marker arguments

MARKED_TEST = """\
import pytest


{decorators}
def test_m(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)
"""


def marker_probe(
    decorators: str,
    check: Classifier,
    *,
    body: str | None = None,
    extra: Sequence[str] = (),
    family: str = "markers",
    label: str | None = None,
    cmd: str | None = None,
) -> Probe:
    text = MARKED_TEST.format(decorators=decorators)
    if body is not None:
        text = "import math\n\nimport pytest\n\n\n" + decorators + "\n" + body
    return Probe(
        family,
        label or decorators.replace("\n", " "),
        cmd or pytest_argv("test_m.py", *extra),
        check,
        files={"test_m.py": text},
    )


def bad_marker(*needles: str) -> Classifier:
    return refuses(r"test_m\.py::test_m", *needles, codes=(2, 4))


def marker_probes() -> list[Probe]:
    lat, mem, eq, be, sh = (
        f"@pytest.mark.attnperf_{name}" for name in ("latency", "memory", "equivalence", "backends", "shape")
    )
    probes = [
        marker_probe(f'{lat}(tolerance="abc")', bad_marker("attnperf_latency", "tolerance")),
        marker_probe(f"{lat}(tolerance=[0.1])", bad_marker("attnperf_latency", "tolerance")),
        marker_probe(f"{lat}(budget=-1)", bad_marker("attnperf_latency", "budget|duration")),
        marker_probe(f"{lat}(0.1)", bad_marker("attnperf_latency", "positional")),
        marker_probe(f"{lat}(tolerence=0.1)", bad_marker("attnperf_latency", "tolerence")),
        marker_probe(f'{lat}(cuda_graph="yes")', bad_marker("cuda_graph")),
        marker_probe(f"{lat}(baseline=False)", bad_marker("nothing would be checked")),
        marker_probe(f'{mem}(ceiling="1 parsec")', bad_marker("attnperf_memory", "parsec")),
        marker_probe(f"{mem}(ceiling=1.5)", bad_marker("attnperf_memory", "size")),
        marker_probe(f"{mem}(ceiling=2**70)", accepts(r"1 passed")),
        marker_probe(f'{eq}(rule="fa4")', bad_marker("attnperf_equivalence", "fa4")),
        marker_probe(f'{eq}(factor=float("inf"))', bad_marker("attnperf_equivalence", "factor")),
        marker_probe(f'{eq}(factor="2")', bad_marker("attnperf_equivalence", "factor")),
        marker_probe(f'{eq}("fa2")', bad_marker("attnperf_equivalence", "positional")),
        marker_probe(f"{be}()", bad_marker("attnperf_backends", "at least one")),
        marker_probe(f'{be}(["eager"])', bad_marker("attnperf_backends", "string")),
        marker_probe(f'{be}("eager", "eager")', duplicate_cases, extra=("-v",)),
        marker_probe(f'{be}("nope")', bad_marker("nope")),
        marker_probe(f"{sh}(window=(-5, 0))", bad_marker("attnperf_shape", "window")),
        marker_probe(f"{sh}(window=(1, 2, 3))", bad_marker("attnperf_shape", "window")),
        marker_probe(f"{sh}(window=(0.5, 0))", bad_marker("attnperf_shape", "window")),
        marker_probe(f"{sh}(window=[])", bad_marker("attnperf_shape", "empty")),
        marker_probe(f"{sh}(heads=3, kv_heads=2)", refuses(r"test_m", "multiple of kv_heads")),
        marker_probe(f"{sh}(kv_heads=4)", refuses(r"test_m", "multiple of kv_heads|kv_heads")),
        marker_probe(f"{sh}(heads=0)", bad_marker("attnperf_shape", "heads")),
        marker_probe(f'{sh}(dtype="float64")', bad_marker("attnperf_shape", "dtype")),
        marker_probe(f"{sh}(seqlens=[])", bad_marker("attnperf_shape", "empty")),
        marker_probe(f'{sh}(seqlens="0")', bad_marker("attnperf_shape", "context length")),
        marker_probe(f"{sh}(seqlens=[64, 64])", duplicate_cases, extra=("-v",)),
        marker_probe(f"{sh}(heads=[2, 2])", duplicate_cases, extra=("-v",)),
        marker_probe(f"{sh}(scale=0)", bad_marker("attnperf_shape", "scale")),
        marker_probe(f'{sh}(mode="fwd")', bad_marker("attnperf_shape", "mode")),
        marker_probe(f'{sh}(causal="yes")', bad_marker("attnperf_shape", "causal")),
        marker_probe(f"{sh}(unknown=1)", bad_marker("attnperf_shape", "unknown")),
        marker_probe(
            f"{lat}()",
            refuses(r"test_m", "measured nothing"),
            body="def test_m():\n    pass\n",
            label=f"{lat}() on a test that measures nothing",
        ),
    ]
    return probes


# ---------------------------------------------------------------- family: the attnperf command

BROKEN_PIPE = "; rc=${PIPESTATUS[0]}; echo ATTNPERF-EXIT=$rc; exit $rc"


def quiet_pipe(outcome: Outcome) -> tuple[str, str]:
    """A closed pipe: exit quietly (no traceback, no 'Exception ignored')."""
    if outcome.timed_out:
        return "DEFECT", "hung"
    if TRACEBACK in outcome.out or "Exception ignored" in outcome.out or "BrokenPipeError" in outcome.out:
        return "DEFECT", "a BrokenPipeError traceback when the reader goes away (expected a quiet exit)"
    return "acceptable", ""


def readme_untouched(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if (outcome.workdir / "README.md").read_text() != "ORIGINAL README\n":
        return "DEFECT", "an empty --out became the working folder: the project's README.md was overwritten"
    return ("clear error" if outcome.rc else "acceptable"), ""


def cli_probes() -> list[Probe]:
    quick = ("--quick", "--attnperf-seqlens=64", "--attnperf-backends=eager", "--attnperf-min-samples=3")
    corrupt = {"bad.yaml": "schema_version: 1\ndevice: [\n"}
    big = {"big.yaml": big_baseline(2000)}
    probes = [
        Probe("cli", "`attnperf` (no subcommand)", ["{attnperf}"], refuses("usage", "required", codes=(2,))),
        Probe("cli", "`attnperf nope`", ["{attnperf}", "nope"], refuses("invalid choice", codes=(2,))),
        Probe(
            "cli",
            "env --attnperf-device=cuda (no GPU)",
            ["{attnperf}", "env", "--attnperf-device=cuda"],
            refuses("cuda", "GPU"),
        ),
        Probe("cli", "env --attnperf-device=nope", ["{attnperf}", "env", "--attnperf-device=nope"], refuses("nope")),
        Probe(
            "cli",
            "env --attnperf-baselines=. with a corrupt baselines/<slug>.yaml",
            ["{attnperf}", "env", "--attnperf-baselines=baselines"],
            refuses(r"ERROR: baseline file", codes=(2,)),
            files={BASELINE_FILE: "schema_version: 1\ndevice: [\n"},
            timeout=240,
            weight=5,
        ),
        Probe(
            "cli",
            "report --attnperf-backends=nope",
            ["{attnperf}", "report", "--attnperf-backends=nope", "--quick"],
            refuses("nope"),
        ),
        Probe(
            "cli",
            "report --out test_a.py/r (under a file)",
            ["{attnperf}", "report", *quick, "--out", "test_a.py/r"],
            refuses(r"test_a\.py"),
        ),
        Probe(
            "cli",
            "report --attnperf-device=cuda (no GPU)",
            ["{attnperf}", "report", "--quick", "--attnperf-device=cuda"],
            refuses("cuda", "GPU"),
        ),
        Probe(
            "cli",
            "report --attnperf-seqlens=0",
            ["{attnperf}", "report", "--attnperf-seqlens=0"],
            refuses("seqlens", codes=(2,)),
        ),
        Probe(
            "cli",
            'report --out "" (empty) in a folder with a README.md',
            ["{attnperf}", "report", *quick, "--out", ""],
            readme_untouched,
            files={"README.md": "ORIGINAL README\n"},
        ),
        Probe(
            "cli",
            "memory --model nope",
            ["{attnperf}", "memory", "--model", "nope"],
            refuses("unknown model preset 'nope'"),
        ),
        Probe(
            "cli",
            "memory --model llama-2-70b --context 0",
            ["{attnperf}", "memory", "--model", "llama-2-70b", "--context", "0"],
            refuses("context", codes=(2,)),
        ),
        Probe(
            "cli",
            "memory --model llama-2-70b --context 1e9",
            ["{attnperf}", "memory", "--model", "llama-2-70b", "--context", "1e9"],
            refuses("context", codes=(2,)),
        ),
        Probe(
            "cli",
            "memory --model llama-2-70b --context 10**30",
            ["{attnperf}", "memory", "--model", "llama-2-70b", "--context", "1" + "0" * 30],
            either(),
        ),
        Probe(
            "cli",
            "memory --model llama-2-70b --batch 0",
            ["{attnperf}", "memory", "--model", "llama-2-70b", "--batch", "0"],
            refuses("batch", codes=(2,)),
        ),
        Probe(
            "cli",
            "memory --model llama-2-70b --dtype float64",
            ["{attnperf}", "memory", "--model", "llama-2-70b", "--dtype", "float64"],
            either("dtype"),
        ),
        Probe(
            "cli",
            "memory --layers 1 --heads 3 --kv-heads 2 --head-dim 64",
            ["{attnperf}", "memory", "--layers", "1", "--heads", "3", "--kv-heads", "2", "--head-dim", "64"],
            refuses("multiple"),
        ),
        Probe("cli", "memory (neither a model nor a shape)", ["{attnperf}", "memory"], refuses("preset|layers")),
        Probe(
            "cli",
            "memory --model llama-2-70b | head -1 (broken pipe)",
            "{attnperf} memory --model llama-2-70b | head -1" + BROKEN_PIPE,
            quiet_pipe,
        ),
        Probe(
            "cli",
            "memory --model llama-2-70b | (reader gone at once)",
            "{attnperf} memory --model llama-2-70b | true" + BROKEN_PIPE,
            quiet_pipe,
        ),
        Probe(
            "cli",
            "show <2,000-entry file> | head -1 (broken pipe)",
            "{attnperf} show big.yaml | head -1" + BROKEN_PIPE,
            quiet_pipe,
            files=big,
            timeout=300,
            weight=4,
        ),
        Probe("cli", "show missing.yaml", ["{attnperf}", "show", "missing.yaml"], refuses("no baseline file at")),
        Probe("cli", "show . (a directory)", ["{attnperf}", "show", "."], refuses("directory|cannot")),
        Probe(
            "cli", "show a corrupt file", ["{attnperf}", "show", "bad.yaml"], refuses(r"bad\.yaml:\d+"), files=corrupt
        ),
        Probe("cli", "show /dev/null", ["{attnperf}", "show", "/dev/null"], refuses("empty")),
        Probe(
            "cli",
            "show with 10**400 as the median",
            ["{attnperf}", "show", BASELINE_FILE],
            refuses(r"\.yaml:\d+", "median"),
            files={BASELINE_FILE: baseline_with(median="1" + "0" * 400)},
        ),
        Probe(
            "cli",
            "diff missing.yaml bad.yaml",
            ["{attnperf}", "diff", "missing.yaml", "bad.yaml"],
            refuses("missing.yaml|bad.yaml"),
            files=corrupt,
        ),
        Probe("cli", "diff . .", ["{attnperf}", "diff", ".", "."], refuses("directory|cannot")),
        Probe("cli", "diff with one argument", ["{attnperf}", "diff", "a.yaml"], refuses("required|new", codes=(2,))),
        Probe(
            "cli",
            "diff of two valid files, one entry's latency_ms null",
            ["{attnperf}", "diff", "a.yaml", "b.yaml"],
            accepts(r"->"),
            files={
                "a.yaml": baseline_with(),
                "b.yaml": baseline_then(
                    lambda text: re.sub(r"    latency_ms:\n(      .*\n)+", "    latency_ms: null\n", text)
                ),
            },
        ),
        Probe(
            "cli",
            "update --nope (an unknown pytest option)",
            ["{attnperf}", "update", "--nope"],
            refuses("unrecognized|nope", codes=(4,)),
        ),
        Probe(
            "cli",
            "update --attnperf-seqlens=abc",
            ["{attnperf}", "update", "--attnperf-seqlens=abc"],
            refuses("seqlens", codes=(2,)),
        ),
        Probe(
            "cli",
            "update no/such/dir",
            ["{attnperf}", "update", "no/such/dir"],
            refuses("not found|no/such", codes=(4,)),
        ),
        Probe(
            "cli",
            "update -p no:attnperf",
            ["{attnperf}", "update", "-p", "no:attnperf"],
            refuses("attnperf", codes=(4,)),
        ),
        Probe(
            "cli",
            "update --attnperf-backends=nope",
            ["{attnperf}", "update", "--attnperf-backends=nope", "--attnperf-seqlens=64", "-p", "no:cacheprovider"],
            refuses("nope"),
        ),
        Probe(
            "cli",
            "update -k 'syntax error ('",
            ["{attnperf}", "update", "-k", "syntax error ("],
            refuses("Wrong expression|-k", codes=(4,)),
        ),
        Probe(
            "cli",
            "update with valid fast options (control)",
            [
                "{attnperf}",
                "update",
                "--attnperf-seqlens=64",
                "--attnperf-backends=eager",
                "--attnperf-min-samples=3",
                "--attnperf-device=cpu",
                "--attnperf-heads=2",
                "--attnperf-head-dim=16",
                "--attnperf-warmup=1ms",
                "--attnperf-rep=5ms",
                "--attnperf-allow-busy-cpu",  # a shared machine is busy (round3-update probes the guard)
                "-p",
                "no:cacheprovider",
            ],
            accepts(r"1 passed", r"wrote 1 entries"),
        ),
    ]
    return probes


# ---------------------------------------------------------------- family: CPU out of memory

ADDRESS_SPACE_KIB = 3_000_000  # ulimit -v: allocations past ~2.9 GB fail, the machine is never at risk


def capped(argv: Sequence[str]) -> str:
    return f"ulimit -v {ADDRESS_SPACE_KIB}; exec " + shell(argv)


def oom_probes() -> list[Probe]:
    fit = {  # the entry of this very problem (16K tokens): a baseline of another problem would not gate it
        BASELINE_FILE: baseline_then(
            lambda text: text.replace(TEST_ID, "test_a.py::test_fwd[eager-16K]").replace("_len: 64", "_len: 16384")
        )
    }
    return [
        Probe(
            "oom",
            "eager at 16K tokens (2 GiB of scores) under ulimit -v 2.9 GB",
            capped(pytest_argv("--attnperf-seqlens=16384")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "sdpa-math at 16K tokens under ulimit -v 2.9 GB",
            capped(pytest_argv("--attnperf-seqlens=16384", "--attnperf-backends=sdpa-math")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "eager at 16K, --attnperf-mode=backward, under ulimit -v 2.9 GB",
            capped(pytest_argv("--attnperf-seqlens=16384", "--attnperf-mode=backward")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "eager at 16K whose baseline says it fit (must fail: 'no longer fits')",
            capped(pytest_argv("--attnperf-seqlens=16384")),
            fails_no_longer_fits,
            files=fit,
        ),
        # Since round 3 every size has an upper bound (spec/bounds.py): these three are refused before anything is
        # allocated; the two after them reach the allocation within the bounds.
        Probe(
            "oom",
            "--attnperf-seqlens=1000000000 (inputs of 128 GB) under ulimit -v",
            capped(pytest_argv("--attnperf-seqlens=1000000000")),
            refuses(r"--attnperf-seqlens", r"1,000,000,000 is larger than", codes=(4,)),
        ),
        Probe(
            "oom",
            "attnperf_shape(batch=2**20): 8.6 GB of inputs under ulimit -v",
            capped(pytest_argv("test_m.py")),
            refuses(r"test_m", r"batch 1,048,576 is larger than", codes=(2,)),
            files={"test_m.py": MARKED_TEST.format(decorators="@pytest.mark.attnperf_shape(batch=2**20)")},
        ),
        Probe(
            "oom",
            "attnperf_shape(head_dim=2**31): an impossible shape",
            capped(pytest_argv("test_m.py")),
            refuses(r"test_m", r"head_dim 2,147,483,648 is larger than", codes=(2,)),
            files={"test_m.py": MARKED_TEST.format(decorators="@pytest.mark.attnperf_shape(head_dim=2**31)")},
        ),
        Probe(
            "oom",
            "--attnperf-seqlens=33554432 (the bound: inputs of 12 GB) under ulimit -v",
            capped(pytest_argv("--attnperf-seqlens=33554432")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "attnperf_shape(batch=65536, heads=4096, kv_heads=4096, head_dim=4096): every size at its bound",
            capped(pytest_argv("test_m.py")),
            does_not_fit,
            files={
                "test_m.py": MARKED_TEST.format(
                    decorators="@pytest.mark.attnperf_shape(batch=65536, heads=4096, kv_heads=4096, head_dim=4096)"
                )
            },
        ),
        Probe(
            "oom",
            "a registered backend raising Python's MemoryError",
            pytest_argv("--attnperf-backends=memory-error"),
            does_not_fit,
            files={"conftest.py": CONFTEST},
        ),
        Probe(
            "oom",
            "a registered backend raising torch.OutOfMemoryError (control)",
            pytest_argv("--attnperf-backends=torch-oom"),
            does_not_fit,
            files={"conftest.py": CONFTEST},
        ),
        Probe(
            "oom",
            "attnperf report --quick at 16K (eager) under ulimit -v",
            capped(
                [
                    "{attnperf}",
                    "report",
                    "--quick",
                    "--attnperf-seqlens=16384",
                    "--attnperf-backends=eager",
                    "--attnperf-min-samples=3",
                    "--out",
                    "r",
                ]
            ).replace("exec ", "")
            + "; rc=$?; grep -E '\"(status|reason)\"' r/study.json; exit $rc",
            does_not_fit,
            # --quick also runs the decode section (added after round 2): about 110 s on a shared 2-core machine.
            timeout=300,
            weight=6,
            show=r'"reason": .*',
        ),
    ]


def fails_no_longer_fits(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if outcome.rc == 1 and has(outcome.out, "no longer fits"):
        return "clear error", ""
    if has(outcome.out, r"can't allocate memory|Cannot allocate memory"):
        return "DEFECT", "raw allocation error instead of 'no longer fits in memory' against the baseline"
    return "DEFECT", f"exit {outcome.rc} without 'no longer fits'"


# ---------------------------------------------------------------- family: measurement oddities

CONFTEST = """\
import torch
import torch.nn.functional as F

from pytest_attnperf import register_backend


def _sdpa(q, k, v, shape):
    return F.scaled_dot_product_attention(q, k, v, is_causal=shape.causal)


@register_backend("inplace")
def inplace(q, k, v, shape):
    v.add_(1.0)  # modifies its input on every call
    return _sdpa(q, k, v, shape)


@register_backend("returns-none")
def returns_none(q, k, v, shape):
    _sdpa(q, k, v, shape)


@register_backend("wrong-shape")
def wrong_shape(q, k, v, shape):
    return _sdpa(q, k, v, shape)[..., :8]


@register_backend("nan")
def nan(q, k, v, shape):
    out = _sdpa(q, k, v, shape).clone()
    out[0, 0, 0, 0] = float("nan")
    return out


@register_backend("raises")
def raises(q, k, v, shape):
    raise RuntimeError("boom from the user's backend")


@register_backend("returns-tuple")
def returns_tuple(q, k, v, shape):
    out = _sdpa(q, k, v, shape)
    return out, out


@register_backend("memory-error")
def memory_error(q, k, v, shape):
    raise MemoryError()


@register_backend("torch-oom")
def torch_oom(q, k, v, shape):
    raise torch.OutOfMemoryError("out of memory (simulated)")

"""
# Its own conftest (robustness branch): a registration the plugin refuses stops the whole conftest, which
# would take every other probe of this family with it.
BAD_LAYOUT_CONFTEST = (
    CONFTEST
    + """

@register_backend("bad-layout", layout="bsdh")
def bad_layout(q, k, v, shape):
    return _sdpa(q, k, v, shape)
"""
)


def inplace_detected(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"inplace.{0,120}(modif|in place|in-place|changed its input)"):
        return "clear error", ""
    if outcome.rc == 0:
        return "DEFECT", (
            "both tests passed: a backend that adds 1 to v on every call passes its own equivalence "
            "check (the reference is computed from the already-modified v) and leaves the cached "
            "inputs of the next backend modified"
        )
    return "acceptable", f"exit {outcome.rc}, without saying the inputs were modified"


def measurement_probes() -> list[Probe]:
    conftest = {"conftest.py": CONFTEST}

    def backend_run(name: str, check: Classifier, *extra: str) -> Probe:
        return Probe(
            "measure",
            f"registered backend `{name}`" + (f" with {' '.join(extra)}" if extra else ""),
            pytest_argv(f"--attnperf-backends={name}", *extra),
            check,
            files=conftest,
        )

    body = "def test_m(attnperf, attn_backend, qkv):\n    {call}\n"
    return [
        Probe(
            "measure",
            "registered backend `inplace` (adds 1 to v each call), then eager on the same inputs",
            pytest_argv("--attnperf-backends=inplace,eager"),
            inplace_detected,
            files=conftest,
        ),
        backend_run("returns-none", fails_test_with("returns-none", "NoneType")),
        backend_run(
            "returns-none",
            fails_test_with(
                "returns-none",
                "NoneType",
                defect_if=r"AttributeError",
                why="AttributeError: 'NoneType' object has no attribute 'shape' from the plugin's workload "
                "builder, naming neither the backend nor what it returned",
            ),
            "--attnperf-mode=backward",
        ),
        backend_run("wrong-shape", fails_test_with(r"output shape \(1, 2, 64, 8\) differs")),
        backend_run("nan", fails_test_with(r"NaN or Inf")),
        Probe(
            "measure",
            "registered backend `raises`, then eager",
            pytest_argv("--attnperf-backends=raises,eager"),
            fails_test_with("boom from the user's backend", r"1 passed"),
            files=conftest,
        ),
        backend_run("returns-tuple", fails_test_with("returns-tuple", "tuple")),
        Probe(
            "measure",
            "registered backend `bad-layout`",
            pytest_argv("--attnperf-backends=bad-layout"),
            fails_test_with(
                r"layout '?bsdh|unknown layout|layout must",
                why="register_backend accepted layout='bsdh'; the test "
                "then fails on an output shape, never naming the layout",
            ),
            files={"conftest.py": BAD_LAYOUT_CONFTEST},
        ),
        marker_probe(
            "@pytest.mark.attnperf_equivalence",
            fails_test_with(
                r"mode 'fwd'|'fwd' is not one of|mode",
                defect_if=r"KeyError",
                why="measure(mode='fwd') ran a forward+backward workload, then died "
                "with a raw KeyError: 'fwd' from the FLOP count",
            ),
            body=body.format(call='attnperf.measure(attn_backend, qkv, mode="fwd")'),
            family="measure",
            label='attnperf.measure(attn_backend, qkv, mode="fwd")',
        ),
        marker_probe(
            "@pytest.mark.attnperf_equivalence",
            fails_test_with("measured twice"),
            body=body.format(call="attnperf.measure(attn_backend, qkv)\n    attnperf.measure(attn_backend, qkv)"),
            family="measure",
            label="attnperf.measure called twice in one test",
        ),
        marker_probe(
            "@pytest.mark.attnperf_latency()",
            fails_test_with(
                "flops",
                defect_if="JSON compliant",
                why="flops=nan reaches the strict-JSON record: ValueError 'Out of range float values are not "
                "JSON compliant' naming neither flops nor the test's call",
            ),
            body="def test_m(attnperf):\n    attnperf.measure_workload(lambda: None, name='w', flops=math.nan)\n",
            family="measure",
            label="attnperf.measure_workload(fn, name='w', flops=math.nan)",
        ),
        Probe(
            "measure",
            "conftest registers a second backend named `eager`",
            pytest_argv(),
            refuses("duplicate attention backend 'eager'", codes=(1, 2, 3, 4)),
            files={
                "conftest.py": "from pytest_attnperf import register_backend\n\n\n"
                "@register_backend('eager')\ndef mine(q, k, v, shape):\n    return q\n"
            },
        ),
        Probe(
            "measure",
            "conftest registers a backend named `my attn` (a space)",
            pytest_argv(),
            refuses("invalid backend name", codes=(1, 2, 3, 4)),
            files={
                "conftest.py": "from pytest_attnperf import register_backend\n\n\n"
                "@register_backend('my attn')\ndef mine(q, k, v, shape):\n    return q\n"
            },
        ),
    ]


# ---------------------------------------------------------------- family: signals during --attnperf-update

KILL_ENTRIES = 1000


def whole_after_signal(outcome: Outcome) -> tuple[str, str]:
    """The baseline file must be the old bytes, or a new file that loads; never truncated or mixed."""
    if outcome.timed_out:
        return "DEFECT", "hung after the signal"
    ctx = current()
    path = outcome.workdir / ctx.expand(BASELINE_FILE, outcome.workdir)
    old = (outcome.workdir / "old.yaml").read_bytes()
    leftovers = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp"))
    left = f"; temp files left: {', '.join(leftovers)}" if leftovers else ""
    if not path.exists():
        return "DEFECT", "the baseline file is gone" + left
    if path.read_bytes() == old:
        state = "old file intact, byte for byte" + left
    else:
        check = subprocess.run([ctx.attnperf, "show", str(path)], capture_output=True, text=True, timeout=300)
        if check.returncode != 0:
            return "DEFECT", "the baseline file is damaged: " + trim(check.stderr or check.stdout, 120)
        state = "replaced by a complete new file" + left
    never = any("never sent" in note or "before the signal" in note for note in outcome.notes)
    if never:
        return "acceptable", "inconclusive: " + state
    noisy = " (printed a traceback)" if TRACEBACK in outcome.out or "INTERNALERROR" in outcome.out else ""
    return "acceptable", state + noisy


def kill_probes() -> list[Probe]:
    files = {BASELINE_FILE: big_baseline(KILL_ENTRIES)}
    copy = keep_copy(BASELINE_FILE, "old.yaml")
    update = pytest_argv("--attnperf-update")
    return [
        Probe(
            "signals",
            f"SIGKILL the moment the temp file appears (update of a {KILL_ENTRIES:,}-entry file)",
            update,
            whole_after_signal,
            files=files,
            setup=copy,
            timeout=300,
            weight=6,
            signal_plan=SignalPlan(signal.SIGKILL, "glob:baselines/.*.tmp"),
        ),
        Probe(
            "signals",
            "SIGINT 2 s after the test passed (while the update loads the old file to merge)",
            update,
            whole_after_signal,
            files=files,
            setup=copy,
            timeout=300,
            weight=6,
            signal_plan=SignalPlan(signal.SIGINT, r"test_a\.py \.", 2.0),
        ),
        Probe(
            "signals",
            "SIGTERM the moment the temp file appears",
            update,
            whole_after_signal,
            files=files,
            setup=copy,
            timeout=300,
            weight=6,
            signal_plan=SignalPlan(signal.SIGTERM, "glob:baselines/.*.tmp"),
        ),
    ]


# ---------------------------------------------------------------- family: how fast the baseline reader is


def child_cpu_seconds(argv: Sequence[str], cwd: Path, timeout: float = 600.0) -> tuple[int, float, str]:
    """Run ``argv``; return its exit code, the CPU seconds it (and its children) used, and its output."""
    with tempfile.TemporaryFile() as sink:
        process = subprocess.Popen(
            argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timer = threading.Timer(timeout, lambda: _kill_group(process))
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


# ---------------------------------------------------------------- family: round 2 (issue 12), added in the robustness branch

ROUND2_CONFTEST = """\
from pytest_attnperf import register_backend
from pytest_attnperf.measure.reference import eager_attention


def _eager(q, k, v, shape):
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)


@register_backend("raw-write")
def raw_write(q, k, v, shape):
    q.data[0, 0, 0, 0] += 1.0  # through .data: no version bump, as a kernel writing through a pointer
    return _eager(q, k, v, shape)


@register_backend("returns-tuple")
def returns_tuple(q, k, v, shape):
    out = _eager(q, k, v, shape)
    return out, out
"""


def round2_probes() -> list[Probe]:
    ok = {BASELINE_FILE: baseline_with()}
    no_ini = {"proj/test_a.py": STANDARD_TEST, "shared/keep": ""}
    spaced = refuses("written with a space", r"--attnperf-baselines=\.\./shared", codes=(4,))
    return [
        Probe("round2", "--attnperf-baselines ../shared (space), no ini file: the rootdir would move",
              pytest_argv("--attnperf-baselines", "../shared", "test_a.py"), spaced, project=False, cwd="proj",
              files=no_ini),
        Probe("round2", "PYTEST_ADDOPTS='--attnperf-baselines ../shared' (space), no ini file",
              pytest_argv("test_a.py"), spaced, project=False, cwd="proj", files=no_ini,
              env={"PYTEST_ADDOPTS": "--attnperf-baselines ../shared"}),
        Probe("round2", "--attnperf-baselines ../shared (space) with pytest.ini in the project: rootdir unchanged",
              pytest_argv("--attnperf-baselines", "../shared", "test_a.py"), accepts(r"1 passed"), project=False,
              cwd="proj", files={**no_ini, "proj/pytest.ini": PYTEST_INI}),
        Probe("round2", "`attnperf update --attnperf-baselines bl` (space: forwarded as --attnperf-baselines=bl)",
              ["{attnperf}", "update", "--attnperf-baselines", "bl", *FAST, "-p", "no:cacheprovider"],
              written_to("bl/{slug}.yaml", expected=True, defect="the update did not write into bl/")),
        Probe("round2", "ini `attnperf_baselines = ../bl` in cfg/pytest.ini, run with -c cfg/pytest.ini --rootdir=.",
              pytest_argv("-c", "cfg/pytest.ini", "--rootdir=.", "test_a.py", "--attnperf-update"),
              written_to("bl/{slug}.yaml", expected=True, defect="an ini path was not taken from the ini file's folder"),
              files={"cfg/pytest.ini": "[pytest]\nattnperf_baselines = ../bl\n"}),
        Probe("round2", "--attnperf-json=r.json without --attnperf", pytest_argv("--attnperf-json=r.json", attnperf=False),
              refuses("--attnperf-json needs --attnperf", codes=(4,))),
        Probe("round2", "--attnperf-report=study without --attnperf",
              pytest_argv("--attnperf-report=study", attnperf=False), refuses("--attnperf-report needs --attnperf", codes=(4,))),
        Probe("round2", "--attnperf-markdown= (empty)", pytest_argv("--attnperf-markdown="),
              refuses("attnperf-markdown", "empty", codes=(4,))),
        Probe("round2", "--attnperf-report= (empty)", pytest_argv("--attnperf-report="),
              refuses("attnperf-report", "empty", codes=(4,))),
        Probe("round2", "--attnperf-kv-heads=16 with the CPU's default 8 heads",
              pytest_argv("--attnperf-kv-heads=16", drop=("--attnperf-heads",)),
              refuses("kv-heads=16", "multiple of kv_heads", codes=(4,))),
        marker_probe("@pytest.mark.attnperf_shape(heads=1)", refuses(r"test_m", "--attnperf-kv-heads"),
                     extra=("--attnperf-kv-heads=2",), family="round2",
                     label="attnperf_shape(heads=1) with --attnperf-kv-heads=2 (used to be lowered to 1)"),
        Probe("round2", "--attnperf-mode=fwd", pytest_argv("--attnperf-mode=fwd"), refuses("mode", "fwd", codes=(4,))),
        Probe("round2", "registered backend writing to q through .data (no version bump), then eager",
              pytest_argv("--attnperf-backends=raw-write,eager"), fails_test_with("raw-write", "modified its input", "1 passed"),
              files={"conftest.py": ROUND2_CONFTEST}),
        Probe("round2", "registered backend returning a tuple, --attnperf-mode=backward",
              pytest_argv("--attnperf-backends=returns-tuple", "--attnperf-mode=backward"),
              fails_test_with("returns-tuple", "tuple", defect_if="AttributeError"), files={"conftest.py": ROUND2_CONFTEST}),
        Probe("round2", "--attnperf-json=/proc/version (a file the kernel will not let anyone write)",
              pytest_argv("--attnperf-json=/proc/version"), output_path(r"/proc/version"), files=ok),
        Probe("round2", "--attnperf-report=/dev/null (a device where a folder should be)",
              pytest_argv("--attnperf-report=/dev/null"), output_path(r"/dev/null"), files=ok),
        Probe("round2", "--attnperf-markdown=/dev/stdout, stdout a pipe (a special file that works: control)",
              shell(pytest_argv("--attnperf-markdown=/dev/stdout")) + " | cat; exit ${PIPESTATUS[0]}",
              accepts(r"1 passed", r"## attnperf on"), files=ok),
        Probe("round2", "report --out test_a.py (a file where the folder should be)",
              ["{attnperf}", "report", "--quick", "--attnperf-seqlens=64", "--out", "test_a.py"], refuses(r"test_a\.py", codes=(2,))),
        Probe("round2", "memory --model llama-2-70b > /dev/full (standard output on a full disk)",
              "{attnperf} memory --model llama-2-70b > /dev/full", refuses(r"standard output", "No space", codes=(1,))),
        Probe("round2", "show <2,000-entry file> > /dev/full", "{attnperf} show big.yaml > /dev/full",
              refuses(r"standard output", "No space", codes=(1,)), files={"big.yaml": big_baseline(2000)}, timeout=300,
              weight=4),
    ]


# ---------------------------------------------------------------- family: round 3, the update process and the machine

# In the last run of an update (or a plain --attnperf-update run), after the measured test: say who runs, then wait
# long enough to be cancelled in; a run that outlived its cancel would merge after the wait.
WAIT_TEST = """\
import json, os, time


def test_wait():
    index, _, total = os.environ.get("ATTNPERF_RUN", "1/1").partition("/")
    if index == total:
        with open("marker.json.tmp", "w") as handle:
            json.dump({"pid": os.getpid(), "folder": os.environ.get("ATTNPERF_RUNS_DIR", "")}, handle)
        os.replace("marker.json.tmp", "marker.json")
        time.sleep(20)
"""
UPDATE_RUNS = ["{attnperf}", "update", "--runs", "2", *FAST, *QUIET_PLUGINS]
HOLD_LOCK = (
    "{py} -c 'import fcntl, sys, time; h = open(sys.argv[1], \"a+b\"); fcntl.flock(h, fcntl.LOCK_EX); "
    "open(\"held\", \"w\").close(); time.sleep(900)' baselines/{slug}.yaml.lock & holder=$!; "
    "while [ ! -e held ]; do sleep 0.1; done; "
)
SPIN = "for i in $(seq $(( $(nproc) + 1 ))); do {py} -c 'while True: pass' & done; sleep 1; "


def _processes_in(folder: Path) -> list[int]:
    """Processes still working in ``folder`` (their current directory): orphans of a cancelled run."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == str(folder):
                    found.append(int(entry.name))
    return found


def cancelled_cleanly(outcome: Outcome) -> tuple[str, str]:
    """After a signal: no process of the run left, its runs folder gone, the baseline file byte for byte the old."""
    if outcome.timed_out:
        return "DEFECT", "hung after the signal"
    if any("never sent" in note or "before the signal" in note for note in outcome.notes):
        return "acceptable", "inconclusive: the signal was never sent"
    marker = outcome.workdir / "marker.json"
    run = json.loads(marker.read_text()) if marker.exists() else {}
    deadline = time.monotonic() + 30
    while _processes_in(outcome.workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _processes_in(outcome.workdir)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        return "DEFECT", f"process(es) {', '.join(map(str, left))} of the cancelled run still running (orphans)"
    folder = Path(run.get("folder") or "/nonexistent")
    if run.get("folder") and folder.exists():
        kept = ", ".join(sorted(path.name for path in folder.iterdir())) or "empty"
        shutil.rmtree(folder, ignore_errors=True)
        return "DEFECT", f"the update's runs folder was left behind ({kept})"
    path = outcome.workdir / current().expand(BASELINE_FILE, outcome.workdir)
    if path.read_bytes() != (outcome.workdir / "old.yaml").read_bytes():
        return "DEFECT", "the baseline file changed after the cancel"
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    return "acceptable", "no process left, runs folder removed, baseline file unchanged byte for byte"


def unchanged_refusal(*needles: str, codes: Sequence[int]) -> Classifier:
    """Refused (naming ``needles``) and the baseline file is the old one, byte for byte."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        verdict, note = _deferred_refusal(needles, codes=codes)(outcome)
        path = outcome.workdir / current().expand(BASELINE_FILE, outcome.workdir)
        if path.read_bytes() != (outcome.workdir / "old.yaml").read_bytes():
            return "DEFECT", "the baseline file was rewritten"
        strays = sorted(p.name for p in outcome.workdir.glob("run-*.json") if p.name != "run-1.json")
        if strays:
            return "DEFECT", f"wrote {', '.join(strays)} into the project"
        return verdict, note

    return classify


def round3_update_probes() -> list[Probe]:
    files: dict[str, FileContent] = {BASELINE_FILE: baseline_with(), "test_b.py": WAIT_TEST}
    copy = keep_copy(BASELINE_FILE, "old.yaml")
    update_one = pytest_argv("--attnperf-update")
    stale_run = '[{"test_id": "' + TEST_ID + '", "latency_ms": {"median": 100000.0}}]'
    unbusy = pytest_argv("--attnperf-update", drop=("--attnperf-allow-busy-cpu",))
    return [
        *(
            Probe("round3-update", f"`attnperf update --runs 2`, {signal.Signals(signum).name} to it during run 2",
                  UPDATE_RUNS, cancelled_cleanly, files=files, setup=copy, timeout=300, weight=6,
                  signal_plan=SignalPlan(signum, "glob:marker.json"))
            for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP)
        ),
        Probe("round3-update", "Ctrl-C (SIGINT) during `pytest --attnperf --attnperf-update`, after the measured test",
              update_one, cancelled_cleanly, files=files, setup=copy, timeout=300, weight=4,
              signal_plan=SignalPlan(signal.SIGINT, "glob:marker.json")),
        Probe("round3-update", "stray ATTNPERF_RUN=1/2 in the shell of `pytest --attnperf --attnperf-update`",
              pytest_argv("--attnperf-update", "test_a.py"),
              unchanged_refusal("ATTNPERF_RUN=1/2", "not started by `attnperf update`", codes=(4,)),
              files=files, setup=copy, env={"ATTNPERF_RUN": "1/2"}),
        Probe("round3-update", "stray ATTNPERF_RUN=2/2 ATTNPERF_RUNS_DIR=. with a stale run-1.json (1000x medians)",
              pytest_argv("--attnperf-update", "test_a.py"),
              unchanged_refusal("ATTNPERF_RUN=2/2", "not started by `attnperf update`", codes=(4,)),
              files={**files, "run-1.json": stale_run}, setup=copy, env={"ATTNPERF_RUN": "2/2", "ATTNPERF_RUNS_DIR": "."}),
        Probe("round3-update", "the baseline's lock held by another process (a hung update) during an update",
              HOLD_LOCK + shell([*update_one, "test_a.py"]) + "; rc=$?; kill $holder; exit $rc",
              unchanged_refusal(r"waiting for the lock .*\.lock \(held by", r"gave up after \d+ s", "delete",
                                codes=(1,)),
              files=files, setup=copy, timeout=400, weight=8),
        Probe("round3-update", "`pytest --attnperf --attnperf-update` with nproc+1 busy loops on the CPU",
              SPIN + shell([*unbusy, "test_a.py"]) + "; rc=$?; kill $(jobs -p); exit $rc",
              unchanged_refusal("CPU busy", "not recording baselines measured on a busy CPU",
                                "--attnperf-allow-busy-cpu", codes=(1,)),
              files=files, setup=copy, timeout=300, weight=4),
        Probe("round3-update", "`attnperf update --runs 2 --runs-dir runs` SIGTERMed in run 2 (a job's time limit), then again",
              shell([*UPDATE_RUNS, "--runs-dir", "runs"]) + " & pid=$!; while [ ! -e marker.json ]; do sleep 0.2; done; "
              "kill -TERM $pid; wait $pid; echo \"first call: exit $?\"; rm marker.json; "
              + shell([*UPDATE_RUNS, "--runs-dir", "runs"]),
              accepts(r"first call: exit 143", r"run 1 of 2: kept in .*runs by an earlier call", r"wrote 1 entries"),
              files=files, timeout=400, weight=6, show=r"run 1 of 2: kept in .*"),
        Probe("round3-update", "the same with --attnperf-allow-busy-cpu (recorded, with the warning)",
              SPIN + shell([*unbusy, "--attnperf-allow-busy-cpu", "test_a.py"]) + "; rc=$?; kill $(jobs -p); exit $rc",
              accepts("CPU busy", "1 passed", "wrote 1 entries"), files=files, timeout=300, weight=4),
    ]


# ---------------------------------------------------------------- family: round 3 (issue 23), inputs, files and comparisons


def special_file(name: str, kind: str) -> Callable[[Path, Ctx], None]:
    """Make ``name`` (tokens expanded) a FIFO, a folder or a link to /dev/zero where a baseline file should be."""

    def setup(workdir: Path, ctx: Ctx) -> None:
        target = workdir / ctx.expand(name, workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "folder":
            target.mkdir()
        else:
            os.symlink("/dev/zero", target)

    return setup


def never_hangs(*needles: str, codes: Sequence[int]) -> Classifier:
    """A hang (the probe's timeout) is the defect this family looks for; otherwise a refusal naming ``needles``."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        if outcome.timed_out:
            return "DEFECT", "hung until the probe's timeout"
        return refuses(*needles, codes=codes)(outcome)

    return classify


def no_ratio_between_problems(outcome: Outcome) -> tuple[str, str]:
    """`attnperf diff` of two entries of different problems: named as not compared, never given a ratio."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"x\d+\.\d{3}"):
        return "DEFECT", "printed a ratio between entries that measured different problems"
    if outcome.rc == 0 and has(outcome.out, r"not compared: another problem \(.*heads 2 -> 8"):
        return "clear error", ""
    return "DEFECT", f"exit {outcome.rc} without naming the entry as not compared"


ROUND3_MODEL = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
BROKEN_FA4_FILES: dict[str, FileContent] = {
    "flash_attn/__init__.py": "",
    "flash_attn/cute/__init__.py": "from cutlass.cute.runtime import from_dlpack  # a CuTe DSL of another version\n",
    "cutlass/__init__.py": "",
    # FlashAttention-4 needs a GPU: let it past the device check, so the broken import decides on this CPU.
    "conftest.py": "import dataclasses\n\nfrom pytest_attnperf.backends.registry import REGISTRY\n\n"
    'fa4 = REGISTRY.get("flash-attn-4")\nREGISTRY.unregister("flash-attn-4")\n'
    'REGISTRY.register(dataclasses.replace(fa4, devices=frozenset({"cuda", "cpu"})))\n',
}


def model_config(**changes: object) -> str:
    import json

    return json.dumps({**ROUND3_MODEL, **changes})


def round3_input_probes() -> list[Probe]:
    h200 = baseline_with(name="NVIDIA H200", slug="nvidia-h200")
    memory = ["{attnperf}", "memory", "--model", "cfg/config.json"]
    probes = [
        Probe("inputs3", "baselines/<slug>.yaml is a FIFO (named pipe)", pytest_argv(),
              never_hangs(r"named pipe", codes=(4,)), setup=special_file(BASELINE_FILE, "fifo"), timeout=120),
        Probe("inputs3", "`attnperf show` of a FIFO", ["{attnperf}", "show", BASELINE_FILE],
              never_hangs(r"named pipe", codes=(1,)), setup=special_file(BASELINE_FILE, "fifo"), timeout=60),
        Probe("inputs3", "`attnperf env` with baselines/<slug>.yaml a FIFO", ["{attnperf}", "env"],
              never_hangs(r"named pipe", codes=(2,)), setup=special_file(BASELINE_FILE, "fifo"), timeout=300,
              weight=5),
        Probe("inputs3", "baselines/<slug>.yaml a link to /dev/zero", pytest_argv(),
              never_hangs(r"character device", codes=(4,)), setup=special_file(BASELINE_FILE, "zero"), timeout=120),
        Probe("inputs3", "baselines/<slug>.yaml a folder", ["{attnperf}", "show", BASELINE_FILE],
              refuses(r"is a folder", codes=(1,)), setup=special_file(BASELINE_FILE, "folder")),
        Probe("inputs3", "`attnperf diff` of this CPU's file against an H200 file",
              ["{attnperf}", "diff", BASELINE_FILE, "h200.yaml"], refuses(r"two GPU models", r"--any-gpu", codes=(2,)),
              files={BASELINE_FILE: baseline_with(), "h200.yaml": h200}),
        Probe("inputs3", "`attnperf diff --any-gpu` of this CPU's file against an H200 file",
              ["{attnperf}", "diff", BASELINE_FILE, "h200.yaml", "--any-gpu"],
              accepts(r"two GPU models \(--any-gpu\)"), files={BASELINE_FILE: baseline_with(), "h200.yaml": h200}),
        Probe("inputs3", "`attnperf diff` of one entry recorded with 2 heads, then 8 (median x10)",
              ["{attnperf}", "diff", "old.yaml", "new.yaml"], no_ratio_between_problems,
              files={"old.yaml": baseline_with(), "new.yaml": baseline_with(heads="8", median="1000.0", mean="1000.0",
                                                                              min="990.0", max="1010.0")}),
        Probe("inputs3", "`attnperf diff` of a file with itself", ["{attnperf}", "diff", BASELINE_FILE, BASELINE_FILE],
              accepts(r"^no differences"), files={BASELINE_FILE: baseline_with()}),
        Probe("inputs3", "--attnperf-workloads=varlen --attnperf-q-len=1000 (context 64)",
              pytest_argv("--attnperf-workloads=varlen", "--attnperf-q-len=1000"),
              refuses(r"q_len must not exceed the context length", codes=(1,))),
        Probe("inputs3", "--attnperf-workloads=, (an empty list)", pytest_argv("--attnperf-workloads=,"),
              refuses(r"attnperf-workloads", r"names no workload", codes=(4,))),
        Probe("inputs3", "ini `attnperf_dtype =` (empty: the default)", pytest_argv(),
              accepts(r"1 passed"), files={"pytest.ini": "[pytest]\nattnperf_dtype =\n"}),
        Probe("inputs3", "`attnperf env --attnperf-device=` (empty)", ["{attnperf}", "env", "--attnperf-device="],
              refuses(r"attnperf-device", codes=(2,))),
        Probe("inputs3", "`attnperf show ''`", ["{attnperf}", "show", ""], refuses(r"file name is empty", codes=(2,))),
        Probe("inputs3", "`attnperf memory --context ''`", ["{attnperf}", "memory", "--context", ""],
              refuses(r"--context", codes=(2,))),
        Probe("inputs3", "`attnperf memory --model Llama-3-8B --context 10**30`",
              ["{attnperf}", "memory", "--model", "Llama-3-8B", "--context", "1" + "0" * 30],
              refuses(r"--context", r"larger than", codes=(2,))),
        Probe("inputs3", "`attnperf memory --model Llama-3-8B --batch 10**9`",
              ["{attnperf}", "memory", "--model", "Llama-3-8B", "--batch", "1000000000"],
              refuses(r"--batch", r"larger than", codes=(2,))),
        Probe("inputs3", "--attnperf-heads=100000", pytest_argv("--attnperf-heads=100000"),
              refuses(r"heads", r"larger than", codes=(4,))),
        Probe("inputs3", "@pytest.mark.attnperf_shape(head_dim=10**6)", pytest_argv(),
              refuses(r"head_dim", r"larger than", codes=(2, 4)),
              files={"test_a.py": "import pytest\n\n\n@pytest.mark.attnperf_shape(head_dim=10**6)\n"
                                  "def test_fwd(attnperf, attn_backend, qkv):\n    attnperf.measure(attn_backend, qkv)\n"}),
        Probe("inputs3", "PYTHONIOENCODING=ascii, `attnperf show` of a file whose GPU name is 'GPU \u00e9\u2122'",
              ["{attnperf}", "show", "gpu.yaml"], accepts(r"GPU \\xe9\\u2122"),
              files={"gpu.yaml": baseline_with(name="'GPU \u00e9\u2122'")}, env={"PYTHONIOENCODING": "ascii"},
              show=r"^gpu\.yaml: .*"),
        Probe("inputs3", "PYTHONIOENCODING=ascii, --attnperf-update into the folder 'b\u00e1sicas'",
              pytest_argv("--attnperf-update", "--attnperf-baselines=b\u00e1sicas"), accepts(r"1 passed"),
              env={"PYTHONIOENCODING": "ascii"}),
        Probe("inputs3", "FlashAttention-4 installed but broken (flash_attn.cute fails to import its CuTe DSL)",
              pytest_argv("--attnperf-backends=flash-attn-4,eager"),
              accepts(r"1 passed, 1 skipped", r"installed but cannot be imported"), files=BROKEN_FA4_FILES),
        Probe("inputs3", "a 20,000-entry baseline file (`attnperf show`)", ["{attnperf}", "show", "big.yaml"],
              accepts(r"20,000 entries|20000 entries"), files={"big.yaml": big_baseline(20_000)}, timeout=900,
              weight=30, show=r"^big\.yaml: .*"),
    ]
    bad_configs: list[tuple[str, FileContent, str]] = [
        ("head_dim: 0", model_config(head_dim=0), r"head_dim must be a positive integer"),
        ("num_key_value_heads: 0", model_config(num_key_value_heads=0), r"num_key_value_heads must be"),
        ('num_attention_heads: "32" (a string)', model_config(num_attention_heads="32"), r"num_attention_heads"),
        ("hidden_size: 4096.0 (a float)", model_config(hidden_size=4096.0), r"hidden_size must be a positive integer"),
        ("vocab_size: 10**30", model_config(vocab_size=10**30), r"vocab_size .*up to"),
        ("num_hidden_layers: null", model_config(num_hidden_layers=None), r"missing 'num_hidden_layers'"),
        ("hidden_size 4097 (not a multiple of the heads), no head_dim", model_config(hidden_size=4097),
         r"not a multiple of num_attention_heads"),
        ('tie_word_embeddings: "false" (a string)', model_config(tie_word_embeddings="false"), r"true or false"),
        ("a JSON list, not an object", "[1, 2]", r"JSON object"),
        ("invalid JSON", "{", r"not valid JSON"),
        ("Latin-1 bytes (not UTF-8)", b'{"model_type": "\xe9"}', r"not UTF-8"),
    ]
    for what, content, needle in bad_configs:
        probes.append(Probe("inputs3", f"`attnperf memory --model config.json` with {what}", memory,
                            refuses(r"config\.json", needle, codes=(1,)), files={"cfg/config.json": content}))
    return probes


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
        "project folder. Baseline files are the valid one-entry template `BASELINE` of benchmarks/hostile_probe.py "
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
    run = RunInfo(
        started.strftime("%Y-%m-%d %H:%M UTC"), (time.perf_counter() - clock) / 60, commit, command, families
    )
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
