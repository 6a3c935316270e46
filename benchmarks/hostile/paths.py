"""Hostile-probe family `paths`: paths the run writes to."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from .harness import (
    BASELINE_FILE,
    Classifier,
    Ctx,
    Outcome,
    Probe,
    accepts,
    baseline_with,
    big_baseline,
    crash,
    current,
    either,
    has,
    pytest_argv,
    refuses,
    shell,
)


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
