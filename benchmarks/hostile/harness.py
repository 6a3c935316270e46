"""What every probe shares: the throw-away test project, ``Probe`` and its ``Outcome``, reading the output, the
classifiers (clear error / acceptable / DEFECT), running one probe, and the valid baseline file the probes change.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import string
import subprocess
import tempfile
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
    return deferred_refusal(needles, codes=(4,))


def deferred_refusal(needles: Sequence[str], codes: Sequence[int]) -> Classifier:
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


def kill_group(process: subprocess.Popen[bytes]) -> None:
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
            kill_group(process)
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
