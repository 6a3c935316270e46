"""Hostile-probe family `cli`: the attnperf command."""

from __future__ import annotations

import re

from .harness import (
    BASELINE_FILE,
    TRACEBACK,
    Outcome,
    Probe,
    accepts,
    baseline_then,
    baseline_with,
    big_baseline,
    crash,
    either,
    refuses,
)

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
