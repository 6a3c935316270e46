"""Hard to break: baseline writes survive kills and concurrent updates; faults while measuring stay in their test.

Bad files, bad markers and bad option values are covered next to the code they exercise
(test_baselines.py, test_marks.py, test_options.py, test_units.py, test_checks.py); docs/reliability.md
lists every bad input and fault tried, with the test that keeps its behaviour.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_attnperf.gate.baselines import (
    BaselineEntry,
    BaselineFile,
    baseline_path,
    load_baseline,
    merge_entries,
    parse_baseline_text,
    write_atomic,
)
from pytest_attnperf.measure.device import describe_device

CPU = describe_device(torch.device("cpu"))
DEVICE = {"name": CPU.name, "slug": CPU.slug}
POSIX_ONLY = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork, SIGKILL and flock"
)
SMALL_RUN = (
    "-p",
    "no:cacheprovider",
    "--attnperf",
    "--attnperf-device=cpu",
    "--attnperf-heads=2",
    "--attnperf-head-dim=16",
    "--attnperf-min-samples=3",
    "--attnperf-warmup=1ms",
    "--attnperf-rep=5ms",
    "--attnperf-allow-busy-cpu",  # a shared test machine is busy
)
LEFTOVER = re.compile(r"^\.gpu\.yaml\.\w+\.tmp$")  # tempfile.mkstemp(prefix=".gpu.yaml.", suffix=".tmp")


def entries(
    count: int, median_ms: float, *, prefix: str = "tests/suite/test_attention.py::test_forward"
) -> dict[str, BaselineEntry]:
    """``count`` small entries: enough of them to make a write take a while, small enough to parse quickly."""
    return {
        f"{prefix}[eager-{index}]": BaselineEntry(
            backend="eager",
            shape=None,
            mode="forward",
            latency_ms={"median": median_ms, "samples": 10},
            peak_bytes=4096 + index,
            fits=True,
            recorded_at="2026-01-01T00:00:00Z",
            environment={},
        )
        for index in range(count)
    }


def baseline_text(path: Path, count: int, median_ms: float) -> str:
    return BaselineFile(path, dict(DEVICE), {"torch": str(torch.__version__)}, entries(count, median_ms)).to_text()


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of write_atomic still in ``folder``."""
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- writes survive kills


def _write_forever(path: str, texts: tuple[str, str], ready: Event) -> None:
    """Alternate the two texts on ``path`` until killed; exit 130 on Ctrl-C (after write_atomic's cleanup)."""
    try:
        ready.set()
        for index in range(sys.maxsize):
            write_atomic(Path(path), texts[index % 2])
    except KeyboardInterrupt:
        sys.exit(130)


def _merge_forever(path: str, batches: tuple[dict[str, BaselineEntry], dict[str, BaselineEntry]], ready: Event) -> None:
    ready.set()
    for index in range(sys.maxsize):
        merge_entries(Path(path), DEVICE, {}, batches[index % 2])


@dataclass
class KillLog:
    """What the parent saw after each interruption."""

    contents: list[str]
    new_leftovers: list[int]


def interrupt_writer(
    target: Any, args: tuple[Any, ...], folder: Path, *, kills: int, signum: int, max_delay_s: float, seed: int
) -> KillLog:
    """Start ``target`` ``kills`` times, send ``signum`` at a random moment, wait for it to die."""
    rng = random.Random(seed)
    path = folder / "gpu.yaml"
    log = KillLog([], [])
    # fork: the writer starts in milliseconds with everything imported (a spawned one would import torch
    # again, about 2 s per kill). The child only writes files; it runs no torch code.
    context = multiprocessing.get_context("fork")
    for _ in range(kills):
        before = len(leftovers(folder))
        ready = context.Event()
        writer = context.Process(target=target, args=(str(path), *args, ready), daemon=True)
        writer.start()
        assert ready.wait(30), "the writer never started"
        time.sleep(rng.uniform(0.0, max_delay_s))
        assert writer.pid is not None
        os.kill(writer.pid, signum)
        writer.join(30)
        expected_exit = -signal.SIGKILL if signum == signal.SIGKILL else 130
        assert writer.exitcode == expected_exit, f"writer exit code {writer.exitcode}, expected {expected_exit}"
        log.contents.append(path.read_text(encoding="utf-8"))
        log.new_leftovers.append(len(leftovers(folder)) - before)
    return log


@pytest.mark.slow
@POSIX_ONLY
def test_sigkill_mid_write_leaves_the_old_or_the_new_file_never_a_mix(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    versions = {median: baseline_text(path, 1000, median) for median in (1.5, 2.5)}
    old, new = versions[1.5], versions[2.5]
    # Both versions are valid files with all 1000 entries. Parsing one takes about a second, so each is
    # parsed once here; after every kill the file must equal one of them byte for byte, which is stronger.
    parsed_versions = {}
    for median, text in versions.items():
        write_atomic(path, text)
        parsed = load_baseline(path)
        assert parsed is not None
        assert len(parsed.entries) == 1000
        assert {entry.median_ms for entry in parsed.entries.values()} == {median}
        parsed_versions[text] = parsed
    start = time.perf_counter()
    write_atomic(path, old)
    one_write_s = time.perf_counter() - start

    log = interrupt_writer(
        _write_forever, ((new, old),), tmp_path, kills=40, signum=signal.SIGKILL, max_delay_s=6 * one_write_s, seed=1
    )

    mixed = [index for index, text in enumerate(log.contents) if text not in (old, new)]
    assert mixed == [], f"after kills {mixed} the file was neither the old nor the new version"
    assert {text == new for text in log.contents} == {True, False}, "the kills never saw both versions: no test"
    # A SIGKILLed writer gets no chance to clean up: at most one temp file per kill, named .gpu.yaml.*.tmp.
    assert all(count in (0, 1) for count in log.new_leftovers)
    assert sum(log.new_leftovers) >= 1, "no kill landed mid-write: the test proved nothing"
    assert {p.name for p in tmp_path.iterdir() if not LEFTOVER.match(p.name)} == {"gpu.yaml"}
    # The leftovers are ignored: a merge reads only gpu.yaml and writes beside them, and they never look
    # like a baseline file (dot-prefixed, .tmp).
    extra = entries(1, 3.0, prefix="t.py::test_after_the_kills")
    merge_entries(path, DEVICE, {}, extra)
    last = parsed_versions[log.contents[-1]]
    expected = BaselineFile(path, dict(DEVICE), {}, {**last.entries, **extra})
    assert path.read_text(encoding="utf-8") == expected.to_text()
    assert sorted(tmp_path.glob("*.yaml")) == [path]


@pytest.mark.slow
@POSIX_ONLY
def test_ctrl_c_mid_write_leaves_a_whole_file_and_cleans_its_temp(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    old, new = baseline_text(path, 1000, 1.5), baseline_text(path, 1000, 2.5)
    write_atomic(path, old)
    start = time.perf_counter()
    write_atomic(path, new)
    one_write_s = time.perf_counter() - start
    log = interrupt_writer(
        _write_forever, ((old, new),), tmp_path, kills=15, signum=signal.SIGINT, max_delay_s=5 * one_write_s, seed=2
    )
    assert all(text in (old, new) for text in log.contents)
    # KeyboardInterrupt runs write_atomic's cleanup. The one exception: a Ctrl-C in the microseconds between
    # mkstemp creating the file and write_atomic's `try` can leave it, still empty.
    assert [p.name for p in leftovers(tmp_path) if p.stat().st_size] == []


@POSIX_ONLY
def test_a_killed_merge_releases_its_lock_and_leaves_a_whole_file(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "gpu.yaml"
    first, second = entries(60, 1.0, prefix="t.py::a"), entries(60, 2.0, prefix="t.py::b")
    merge_entries(path, DEVICE, {}, first)
    log = interrupt_writer(
        _merge_forever, ((first, second),), tmp_path, kills=8, signum=signal.SIGKILL, max_delay_s=0.3, seed=3
    )
    for text in log.contents:
        parsed = parse_baseline_text(text, path)
        assert set(parsed.entries) in (set(first), set(first) | set(second))
    # flock dies with its holder: the next update neither waits nor fails.
    with open(path.with_name(path.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    merge_entries(path, DEVICE, {}, entries(1, 3.0, prefix="t.py::c"))
    merged = load_baseline(path)
    assert merged is not None
    assert set(merged.entries) >= set(first) | {"t.py::c[eager-0]"}


# ---------------------------------------------------------------- concurrent updates lose nothing


def _merge_fifty(path: str, worker: int, barrier: Barrier) -> None:
    batch = entries(50, float(worker + 1), prefix=f"t.py::test_worker_{worker}")
    barrier.wait(120)  # every process merges at the same moment
    merge_entries(Path(path), DEVICE, {"worker": str(worker)}, batch)


@pytest.mark.slow
@POSIX_ONLY
def test_eight_processes_merging_at_once_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    workers = [context.Process(target=_merge_fifty, args=(str(path), index, barrier)) for index in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0] * 8
    merged = load_baseline(path)
    assert merged is not None
    assert len(merged.entries) == 400
    for index in range(8):
        mine = {k: e for k, e in merged.entries.items() if k.startswith(f"t.py::test_worker_{index}[")}
        assert len(mine) == 50
        assert {e.median_ms for e in mine.values()} == {float(index + 1)}
    assert leftovers(tmp_path) == []


XDIST_TEST = """
    import pytest

    @pytest.mark.attnperf_latency()
    @pytest.mark.attnperf_memory()
    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


@pytest.mark.slow
def test_two_xdist_update_runs_at_once_write_every_entry(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    for name in [name for name in os.environ if name.startswith("PYTEST_XDIST")]:
        monkeypatch.delenv(name)  # when this suite itself runs under xdist
    pytester.makepyfile(test_first=XDIST_TEST, test_second=XDIST_TEST)
    options = (
        *SMALL_RUN,
        "--attnperf-seqlens=64,96",
        "--attnperf-backends=eager,sdpa-math",
        "--attnperf-update",
        "-n",
        "2",
    )
    runs = [
        pytester.popen([sys.executable, "-m", "pytest", *options, f"test_{name}.py"], stdin=subprocess.DEVNULL)
        for name in ("first", "second")
    ]
    outputs = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        outputs.append((run.returncode, stdout.decode(), stderr.decode()))
    for returncode, stdout, stderr in outputs:
        assert "INTERNALERROR" not in stdout + stderr, stdout + stderr
        assert returncode == 0, stdout + stderr
        assert "created: 2/2 workers" in stdout
        assert "4 passed" in stdout
        assert "wrote 4 entries to" in stdout  # the controller writes, once; workers send results through reports
    written = load_baseline(baseline_path(pytester.path / "baselines", CPU.slug))
    assert written is not None
    assert sorted(written.entries) == sorted(
        f"test_{name}.py::test_forward[{backend}-{length}]"
        for name in ("first", "second")
        for backend in ("eager", "sdpa-math")
        for length in (64, 96)
    )
    assert all(entry.median_ms for entry in written.entries.values())
    assert leftovers(pytester.path / "baselines") == []


UPDATE_RUN = (*SMALL_RUN, "--attnperf-seqlens=64", "--attnperf-backends=eager", "--attnperf-update")


def test_an_update_that_cannot_write_is_reported_and_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=XDIST_TEST)
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    # A directory where the lock file goes stands in for an unwritable folder (as root, chmod stops nothing).
    path.with_name(path.name + ".lock").mkdir(parents=True)
    result = pytester.runpytest_inprocess(*UPDATE_RUN)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "INTERNALERROR" not in output + result.stderr.str()
    result.stdout.fnmatch_lines([f"baseline update failed: [[]Errno 21[]] Is a directory: *{path.name}.lock*"])
    assert not path.exists()


INTERRUPTED_RUN = """
    import pytest

    @pytest.mark.attnperf_latency()
    def test_first(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)

    def test_second():
        raise KeyboardInterrupt  # Ctrl-C while the suite runs

    @pytest.mark.attnperf_latency()
    def test_third(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


def test_ctrl_c_during_an_update_run_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_interrupted=INTERRUPTED_RUN)
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    kept = entries(1, 5.0, prefix="other.py::test_kept")
    merge_entries(path, DEVICE, {}, kept)
    result = pytester.runpytest_inprocess(*UPDATE_RUN, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    written = load_baseline(path)
    assert written is not None
    assert sorted(written.entries) == sorted(kept)  # a cancelled run changes no baseline, not even its finished cases
    assert "interrupted: no baseline was written" in result.stdout.str()
    assert leftovers(path.parent) == []


# ---------------------------------------------------------------- faults while measuring


FAULTS_CONFTEST = """
import gc
import weakref

import torch

from pytest_attnperf import register_backend
from pytest_attnperf.backends.registry import Unsupported
from pytest_attnperf.measure.reference import eager_attention


def _correct(q, k, v, shape):
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)


@register_backend("boom", description="raises a plain error")
def boom(q, k, v, shape):
    raise RuntimeError("boom")


@register_backend("two-nans", description="correct but for two NaNs")
def two_nans(q, k, v, shape):
    output = _correct(q, k, v, shape)
    output[0, 0, 0, 0] = float("nan")
    output[0, 1, 5, 3] = float("nan")
    return output


def _out_of_memory(q, k, v, shape):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB (injected by the test)")


register_backend("oom")(_out_of_memory)
register_backend("oom-used-to-fit")(_out_of_memory)
register_backend("tiny-heads", max_head_dim=8)(_correct)
register_backend("not-installed", requires=("no_such_module",), install_hint="pip install no-such-module")(_correct)


@register_backend("wrong-shape", description="drops half of head_dim")
def wrong_shape(q, k, v, shape):
    return _correct(q, k, v, shape)[..., : shape.head_dim // 2]


@register_backend("returns-none", description="forgets to return its output")
def returns_none(q, k, v, shape):
    _correct(q, k, v, shape)


@register_backend("refuses", description="refuses at run time, as a pinned SDPA kernel does")
def refuses(q, k, v, shape):
    raise Unsupported("refuses: this case is not for me (raised at run time)")
"""
FAULTS_TEST = """
import pytest

@pytest.mark.attnperf_equivalence()
@pytest.mark.attnperf_latency()
def test_forward(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)
"""
# In run order: the exception and the NaNs are each followed by a backend that must still pass.
FAULT_BACKENDS = (
    "boom,eager,two-nans,sdpa-math,oom,oom-used-to-fit,tiny-heads,not-installed,refuses,wrong-shape,returns-none"
)
ELEMENTS = 2 * 64 * 16  # heads * seqlen * head_dim


@dataclass(frozen=True)
class FaultRun:
    returncode: int
    output: str
    outcomes: dict[str, tuple[str, str]]  # test name -> (outcome, failure message or skip reason)
    markdown: str


def _junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = child.get("message", "")  # the exception line or skip reason, not the traceback
        outcomes[case.get("name", "")] = (outcome, message)
    return outcomes


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    """One pytest run (a subprocess: the conftest registers backends) over a suite of faulty backends."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (folder / "conftest.py").write_text(FAULTS_CONFTEST, encoding="utf-8")
    (folder / "test_faults.py").write_text(FAULTS_TEST, encoding="utf-8")
    # The baseline says the second out-of-memory case used to fit: it must fail, not skip.
    path = baseline_path(folder / "baselines", CPU.slug)
    recorded = BaselineEntry(
        backend="oom-used-to-fit",
        shape=None,
        mode="forward",
        latency_ms={"median": 0.05, "samples": 10},
        peak_bytes=1 << 20,
        fits=True,
        recorded_at="2026-01-01T00:00:00Z",
        environment={},
    )
    write_atomic(
        path,
        BaselineFile(path, dict(DEVICE), {}, {"test_faults.py::test_forward[oom-used-to-fit-64]": recorded}).to_text(),
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PY_COLORS"))}
    command = [
        sys.executable,
        "-m",
        "pytest",
        *SMALL_RUN,
        "--attnperf-seqlens=64",
        f"--attnperf-backends={FAULT_BACKENDS}",
        "--junitxml=report.xml",
        "--attnperf-markdown=summary.md",
        "-rA",
    ]
    completed = subprocess.run(
        command, cwd=folder, env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    output = completed.stdout + completed.stderr
    assert (folder / "report.xml").exists(), output
    markdown = (folder / "summary.md").read_text(encoding="utf-8")
    return FaultRun(completed.returncode, output, _junit_outcomes(folder / "report.xml"), markdown)


def test_faults_stay_inside_their_tests(fault_run: FaultRun) -> None:
    assert "INTERNALERROR" not in fault_run.output
    assert fault_run.returncode == pytest.ExitCode.TESTS_FAILED
    assert [name for name in fault_run.outcomes] == [
        f"test_forward[{backend}-64]" for backend in FAULT_BACKENDS.split(",")
    ]
    # The session goes on to its summary after the faults.
    assert f"attnperf: {CPU.name} (cpu)" in fault_run.output


@pytest.mark.parametrize(
    ("backend", "outcome", "message"),
    [
        pytest.param("boom", "failed", "RuntimeError: boom", id="exception"),
        pytest.param("eager", "passed", "", id="after-exception"),
        pytest.param(
            "two-nans",
            "failed",
            f"numerical mismatch in test_faults.py::test_forward[two-nans-64]: 2 of {ELEMENTS} output elements are "
            "NaN or Inf (first at index (0, 0, 0, 0))",
            id="nan",
        ),
        pytest.param("sdpa-math", "passed", "", id="after-nan"),
        pytest.param(
            "oom",
            "skipped",
            f"does not fit on {CPU.name}: OutOfMemoryError: CUDA out of memory. Tried to allocate 64.00 GiB "
            "(injected by the test)",
            id="oom-without-baseline",
        ),
        pytest.param(
            "oom-used-to-fit",
            "failed",
            "test_faults.py::test_forward[oom-used-to-fit-64] no longer fits in memory, even after freeing everything "
            "the plugin holds (OutOfMemoryError: CUDA out "
            "of memory. Tried to allocate 64.00 GiB (injected by the test)); its baseline ran with a peak of 1048576 "
            f"bytes on {CPU.name}, baseline file baselines/{CPU.slug}.yaml",
            id="oom-that-used-to-fit",
        ),
        pytest.param("tiny-heads", "skipped", "tiny-heads takes head_dim up to 8, not 16", id="head-dim-too-large"),
        pytest.param(
            "not-installed",
            "skipped",
            "not-installed needs the Python module 'no_such_module', which is not installed "
            "(pip install no-such-module)",
            id="package-missing",
        ),
        pytest.param("refuses", "skipped", "refuses: this case is not for me (raised at run time)", id="unsupported"),
        pytest.param(
            "wrong-shape",
            "failed",
            "ValueError: output shape (1, 2, 64, 8) differs from the reference's (1, 2, 64, 16)",
            id="wrong-output-shape",
        ),
        pytest.param(
            "returns-none",
            "failed",
            "TypeError: attention backend 'returns-none' returned NoneType, expected a torch.Tensor",
            id="returns-none",
        ),
    ],
)
def test_each_fault_has_its_own_clear_outcome(fault_run: FaultRun, backend: str, outcome: str, message: str) -> None:
    seen_outcome, seen_message = fault_run.outcomes[f"test_forward[{backend}-64]"]
    assert (seen_outcome, message in seen_message) == (outcome, True), seen_message


def test_every_recorded_failure_counts_as_a_regression_in_the_summary(fault_run: FaultRun) -> None:
    rows = [line.split(" | ")[0].removeprefix("| ") for line in fault_run.markdown.splitlines()]
    recorded = [name for name in rows if name.startswith("test_forward[")]
    failed = [name for name in recorded if fault_run.outcomes[name][0] == "failed"]
    assert "test_forward[oom-used-to-fit-64]" in failed
    assert f"{len(recorded)} cases, **{len(failed)} regression(s)**" in fault_run.markdown


def test_contradictory_budget_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.attnperf_latency(baseline=False, tolerance=0.1)
        def test_marked(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
    """
    )
    result = pytester.runpytest_inprocess(*SMALL_RUN, "--attnperf-seqlens=64", "--attnperf-backends=eager")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    assert (
        "test_bad.py::test_marked[eager-64]: @pytest.mark.attnperf_latency(baseline=False, tolerance=0.1): "
        "tolerance compares with the baseline, but baseline=False: drop one of them"
    ) in output


LEAK_CONFTEST = """
import weakref
from pathlib import Path

import torch

from pytest_attnperf import register_backend
from pytest_attnperf.measure.reference import eager_attention

SCRATCH = []


@register_backend("fails-after-allocating")
def fails_after_allocating(q, k, v, shape):
    scores = torch.ones(1 << 20)  # what a kernel holds when it fails: its workspace, the score matrix
    SCRATCH.append(weakref.ref(scores))
    raise RuntimeError("kernel failed")


@register_backend("probe")
def probe(q, k, v, shape):
    with open(Path(__file__).with_name("probe.txt"), "a") as log:
        log.write(f"{sum(ref() is not None for ref in SCRATCH)}\\n")
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)
"""


@pytest.mark.slow
def test_a_failed_case_frees_its_memory_before_the_next_case_runs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(test_leak=FAULTS_TEST)
    result = pytester.runpytest_subprocess(
        *SMALL_RUN, "--attnperf-seqlens=64", "--attnperf-backends=fails-after-allocating,probe"
    )
    result.assert_outcomes(passed=1, failed=1)
    calls = (pytester.path / "probe.txt").read_text(encoding="utf-8").split()
    assert calls[0] == "0", f"the failed case's tensor was still alive at the next case's first call: {calls}"
