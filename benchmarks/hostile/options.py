"""Hostile-probe family `options`: options and ini values."""

from __future__ import annotations

import re

from .harness import (
    BASELINE_FILE,
    PYTEST_INI,
    STANDARD_TEST,
    Classifier,
    Outcome,
    Probe,
    accepts,
    baseline_with,
    crash,
    current,
    has,
    passed_count,
    pytest_argv,
    refuses,
)
from .yaml_files import mismatched_entry


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
