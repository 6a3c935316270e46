"""A test suite nobody here wrote, with pytest-attnperf installed and with ``-p no:attnperf``: same outcomes?

The suite is the one einops ships in its source distribution (``einops/tests``; it tests numpy and torch).
The script downloads the sdist of a pinned einops version (``pip download --no-deps --no-binary :all:``)
into a cache folder, unpacks it, and runs the suite the way einops' own ``einops/tests/run_tests.py``
does: ``python -m pytest .`` in ``einops/tests`` with ``EINOPS_TEST_BACKENDS`` naming the frameworks
(here numpy and torch only), with the unpacked sdist first on ``PYTHONPATH`` so its own einops is tested.
Each run writes a JUnit XML file; the per-test outcomes of the two modes are compared id by id.

The plugin's options (``--attnperf`` and the rest) are never passed: the point is that a suite which
never asked for the plugin sees no difference. Prints a Markdown report. It downloads, so it is a
benchmark, not a unit test.

    python benchmarks/foreign_suite.py [--einops 0.8.2] [--runs 1] [--cache-dir DIR] [--check]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

EINOPS_VERSION = "0.8.2"  # the latest einops on PyPI when this benchmark was written
BACKENDS = "numpy,torch"
OUTCOMES = ("passed", "failed", "skipped", "error")
# Variables that would change which plugins load or which options apply: the runs set their own.
FOREIGN_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH")
MODES = {"plugin installed": [], "-p no:attnperf": ["-p", "no:attnperf"]}


@dataclass
class Run:
    mode: str
    wall_s: float
    cpu_s: float  # user + system time of the pytest process and its children
    pytest_s: float  # the testsuite time of the JUnit XML: collection and tests, not interpreter start-up
    exit_code: int
    outcomes: dict[str, str]
    summary: str
    plugins: str


@dataclass
class Mode:
    name: str
    runs: list[Run] = field(default_factory=list)


def fetch_sdist(version: str, cache: Path) -> Path:
    """The unpacked einops sdist (downloaded once per cache folder)."""
    root = cache / f"einops-{version}"
    if (root / "einops" / "tests").is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"einops-{version}.tar.gz"
    if not archive.exists():
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"einops=={version}",
            "--dest",
            str(cache),
        ]
        subprocess.run(command, check=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(cache, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: an sdist from PyPI, pinned by version
            tar.extractall(cache)
    if not (root / "einops" / "tests").is_dir():
        raise SystemExit(f"{archive} has no einops/tests folder")
    return root


def suite_env(root: Path, inductor_cache: Path | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
    env["EINOPS_TEST_BACKENDS"] = BACKENDS
    env["PYTHONPATH"] = str(root)
    if inductor_cache is not None:
        # The suite's torch.compile tests would reuse what an earlier run (or anyone on this machine)
        # left in the shared Inductor cache: each run starts from an empty cache of its own instead.
        env["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache)
    return env


def pytest_command(junit: Path, mode_args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", ".", "-p", "no:cacheprovider", "-rA", f"--junitxml={junit}", *mode_args]


def parse_junit(path: Path) -> tuple[dict[str, str], float]:
    """Test id (classname::name) -> passed / failed / skipped / error, and the suite's time."""
    tree = ET.parse(path)
    outcomes: dict[str, str] = {}
    suite_time = 0.0
    for suite in tree.iter("testsuite"):
        suite_time += float(suite.get("time", "0"))
    for case in tree.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("error") is not None:
            outcome = "error"
        elif case.find("failure") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        if test_id in outcomes:  # a teardown error is a second entry for a test that passed
            outcome = "error" if "error" in (outcome, outcomes[test_id]) else outcome
        outcomes[test_id] = outcome
    return outcomes, suite_time


def run_suite(root: Path, mode: str, scratch: Path, index: int) -> Run:
    junit = scratch / f"junit-{index}-{'plugin' if not MODES[mode] else 'no-plugin'}.xml"
    command = pytest_command(junit, MODES[mode])
    env = suite_env(root, scratch / junit.with_suffix(".inductor").name)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(
        command, cwd=root / "einops" / "tests", env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (scratch / junit.with_suffix(".log").name).write_text(completed.stdout + completed.stderr, encoding="utf-8")
    if not junit.exists():
        raise SystemExit(f"pytest wrote no JUnit XML ({mode}):\n{completed.stdout}\n{completed.stderr}")
    outcomes, suite_time = parse_junit(junit)
    lines = completed.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    plugins = next((line.removeprefix("plugins: ") for line in lines if line.startswith("plugins: ")), "(none)")
    return Run(mode, wall, cpu, suite_time, completed.returncode, outcomes, summary, plugins)


def einops_in_use(root: Path) -> str:
    """Which einops the suite imports under its environment (must be the unpacked sdist)."""
    probe = "import einops; print(einops.__version__, einops.__file__)"
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=root / "einops" / "tests",
        env=suite_env(root),
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def package_versions() -> str:
    from importlib import metadata

    versions = []
    for name in ("pytest", "pytest-attnperf", "torch", "numpy"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return ", ".join(versions)


def seconds(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--einops", default=EINOPS_VERSION, help=f"einops version to test (default {EINOPS_VERSION})")
    parser.add_argument("--runs", type=int, default=1, help="runs of the suite in each mode, interleaved (default 1)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "attnperf-foreign-suite",
        help="where the sdist is downloaded and unpacked (default: <tmp>/attnperf-foreign-suite)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the outcomes differ")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", args.einops):
        parser.error(f"--einops wants a version such as {EINOPS_VERSION}, not {args.einops!r}")
    missing = [name for name in ("numpy", "torch", "pytest_attnperf") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"not installed in this environment: {', '.join(missing)}")

    root = fetch_sdist(args.einops, args.cache_dir.resolve())
    in_use = einops_in_use(root)
    load_before = os.getloadavg()
    modes = {name: Mode(name) for name in MODES}
    with tempfile.TemporaryDirectory(prefix="attnperf-foreign-") as folder:
        scratch = Path(folder)
        for index in range(args.runs):
            for name in MODES:
                modes[name].runs.append(run_suite(root, name, scratch, index))

    # The outcomes must not change between runs of one mode either, or a difference proves nothing.
    differing: dict[str, dict[str, str]] = {}
    reference = modes["-p no:attnperf"].runs[0].outcomes
    for mode in modes.values():
        for number, run in enumerate(mode.runs, start=1):
            for test_id in sorted(reference.keys() | run.outcomes.keys()):
                outcome = run.outcomes.get(test_id, "absent")
                if reference.get(test_id, "absent") != outcome:
                    differing.setdefault(test_id, {})[f"{mode.name} #{number}"] = outcome
    identical = not differing
    load_after = os.getloadavg()

    shown_command = " ".join(
        [
            f"EINOPS_TEST_BACKENDS={BACKENDS}",
            f"PYTHONPATH={shlex.quote(str(root))}",
            "python -m pytest . -p no:cacheprovider -rA --junitxml=<file> [-p no:attnperf]",
        ]
    )
    print(f"# Foreign suite: einops {args.einops} tests with and without pytest-attnperf\n")
    print(
        f"- command: `python benchmarks/foreign_suite.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip()
    )
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(
        f"- machine: {platform.platform()}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); "
        f"Python {platform.python_version()}"
    )
    print(f"- packages: {package_versions()}")
    print(f"- suite: einops {args.einops} sdist from PyPI, `einops/tests`; einops imported: `{in_use}`")
    print(f"- pytest run in `einops/tests` as: `{shown_command}`")
    print(f"- runs per mode: {args.runs}, interleaved; each with an empty Inductor cache of its own")
    print("- no `--attnperf` (nor any other option of the plugin) in either mode")
    print(
        f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other work on this machine shows in the wall times; the CPU times are less affected)\n"
    )

    header = ["", *[f"`{name}`" for name in modes]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    counts = {name: Counter(mode.runs[0].outcomes.values()) for name, mode in modes.items()}
    for outcome in OUTCOMES:
        print(f"| {outcome} | " + " | ".join(str(counts[name][outcome]) for name in modes) + " |")
    print("| tests (JUnit ids) | " + " | ".join(str(len(modes[name].runs[0].outcomes)) for name in modes) + " |")
    print("| pytest exit status | " + " | ".join(str(modes[name].runs[0].exit_code) for name in modes) + " |")
    print(
        "| wall time, whole process (s) | "
        + " | ".join(seconds([run.wall_s for run in modes[name].runs]) for name in modes)
        + " |"
    )
    print(
        "| CPU time, user + system (s) | "
        + " | ".join(seconds([run.cpu_s for run in modes[name].runs]) for name in modes)
        + " |"
    )
    print(
        "| pytest's own time, JUnit (s) | "
        + " | ".join(seconds([run.pytest_s for run in modes[name].runs]) for name in modes)
        + " |"
    )
    print("| pytest summary line | " + " | ".join(f"`{modes[name].runs[0].summary}`" for name in modes) + " |")
    print("| plugins loaded | " + " | ".join(f"`{modes[name].runs[0].plugins}`" for name in modes) + " |")
    print()
    print("Each run, in the order they ran:\n")
    print("| run | mode | wall (s) | CPU (s) | pytest's own (s) | outcomes |")
    print("|---|---|---|---|---|---|")
    for index in range(args.runs):
        for name, mode in modes.items():
            run = mode.runs[index]
            tally = ", ".join(f"{count} {outcome}" for outcome, count in sorted(Counter(run.outcomes.values()).items()))
            print(f"| {index + 1} | `{name}` | {run.wall_s:.1f} | {run.cpu_s:.1f} | {run.pytest_s:.1f} | {tally} |")
    print()
    print(f"**identical outcomes: {'yes' if identical else 'no'}**", end="")
    print(f" ({len(reference)} test ids, every run of both modes)" if identical else "")
    if differing:
        print("\n| test id | " + " | ".join(["`-p no:attnperf` #1 (reference)", "differs in"]) + " |")
        print("|---|---|---|")
        for test_id, where in differing.items():
            changes = "; ".join(f"{run}: {outcome}" for run, outcome in where.items())
            print(f"| `{test_id}` | {reference.get(test_id, 'absent')} | {changes} |")
    return 1 if args.check and not identical else 0


if __name__ == "__main__":
    sys.exit(main())
