"""benchmarks/hostile_probe.py in the test run: one or two probes of every family, judged by the probe's own classifier.

The whole probe (about 350 hostile inputs, minutes on two cores) writes docs/results/cpu/hostile-probe.md and is run
by hand. This subset keeps every family's machinery working and its representative inputs refused or handled: a
probe that turns into a DEFECT (a traceback, a hang, a silent wrong answer, a damaged baseline file) fails here.
Probes that run for long (signals during an update, out-of-memory at 16K tokens, the reader's speed) are marked
slow. The speed probe is a ratio of CPU seconds against libyaml's C loader with a 2x goal, not a wall time; of its
family it is the one with the widest margin (a pytest start's noise is not in it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from benchmark_scripts import load_script

probe = load_script("hostile_probe")

# (family, the probe's input word for word, slow): the input names the probe in the script and in the report.
CHOSEN = (
    ("yaml", "billion laughs: 9 levels of 9 aliases in `environment` (9^9 leaves)", False),
    ("yaml", "recursive alias `loop: &r [*r]` (via `attnperf show`)", False),
    ("paths", "--attnperf-json=/dev/full (disk full)", False),
    ("paths", "--attnperf-update with baselines/ a dangling symlink", True),
    ("options", "--attnperf-seqlens=abc", False),
    ("options", "--attnperf-update without --attnperf", True),
    ("markers", '@pytest.mark.attnperf_latency(tolerance="abc")', False),
    ("markers", "@pytest.mark.attnperf_shape(window=(1, 2, 3))", True),
    ("cli", "show a corrupt file", False),
    ("cli", "memory --model llama-2-70b | head -1 (broken pipe)", False),
    ("oom", "a registered backend raising Python's MemoryError", False),
    ("oom", "eager at 16K tokens (2 GiB of scores) under ulimit -v 2.9 GB", True),
    ("measure", "registered backend `nan`", False),
    ("measure", "registered backend `inplace` (adds 1 to v each call), then eager on the same inputs", True),
    ("signals", "SIGKILL the moment the temp file appears (update of a 1,000-entry file)", True),
    ("perf", "load a 5,000-entry baseline: `attnperf show` vs yaml.load(CSafeLoader)", True),
    ("round2", "--attnperf-json=r.json without --attnperf", False),
    ("round2", "memory --model llama-2-70b > /dev/full (standard output on a full disk)", False),
    ("round3-update", "stray ATTNPERF_RUN=1/2 in the shell of `pytest --attnperf --attnperf-update`", False),
    ("round3-update", "`attnperf update --runs 2`, SIGTERM to it during run 2", True),
    ("inputs3", "`attnperf memory --model config.json` with head_dim: 0", False),
    ("inputs3", "`attnperf show` of a FIFO", True),
)


def find(family: str, text: str) -> Any:
    """The probe of ``family`` whose input is ``text``; a renamed or removed probe is named in the failure."""
    matches = [candidate for candidate in probe.FAMILIES[family]() if candidate.input == text]
    assert len(matches) == 1, f"hostile_probe.py has {len(matches)} {family!r} probes with the input {text!r}"
    return matches[0]


@pytest.fixture(scope="module")
def ctx() -> Any:
    """The probe's context: one seed update run learns this CPU's baseline slug (as the script's main does)."""
    found = probe.discover_context()
    probe.use_context(found)
    return found


def test_every_family_has_a_fast_probe_here() -> None:
    fast = {family for family, _, slow in CHOSEN if not slow}
    assert set(probe.FAMILIES) - fast <= {"signals", "perf"}  # these two families are all long runs
    assert {family for family, _, _ in CHOSEN} == set(probe.FAMILIES)


@pytest.mark.parametrize(
    ("family", "text"),
    [
        pytest.param(family, text, id=f"{family}: {text[:60]}", marks=[pytest.mark.slow] if slow else [])
        for family, text, slow in CHOSEN
    ],
)
def test_the_probe_finds_no_defect(ctx: Any, family: str, text: str) -> None:
    row = probe.evaluate(1, find(family, text), ctx, keep=False)
    if row.verdict == probe.SKIPPED:
        pytest.skip(row.happened)
    assert row.verdict in ("clear error", "acceptable"), f"{row.verdict}: {row.happened}"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        pytest.param(["{py}", "-c", "raise RuntimeError('bad.yaml:3')"], "uncaught Python traceback", id="traceback"),
        pytest.param(["{py}", "-c", "print('bad.yaml:3')"], "accepted (exit 0)", id="silent-exit-0"),
    ],
)
def test_a_probe_calls_a_crash_or_a_silent_acceptance_a_defect(ctx: Any, command: list[str], reason: str) -> None:
    """A control: `show a corrupt file`'s own classifier, given a command that crashes or accepts, says DEFECT."""
    broken = dataclasses.replace(find("cli", "show a corrupt file"), cmd=command)
    row = probe.evaluate(1, broken, ctx, keep=False)
    assert row.verdict == "DEFECT"
    assert reason in row.happened
