"""The load tax of pytest-attnperf: what every pytest run in an environment with the plugin installed pays.

A one-test suite (``def test_ok(): assert True`` in a temporary folder with its own empty ``pytest.ini``,
so no conftest or ini file of this repository applies) runs as whole processes, ``python -m pytest -q
-p no:cacheprovider``, with the plugin loaded by its entry point and with ``-p no:attnperf``, each
``--runs`` times, interleaved. The goal: the median with the plugin within 10 % of the median without.

Also timed, against ``python -c pass``: ``attnperf --help`` and ``attnperf show <baseline file>``.
And a probe, in a fresh interpreter per mode, says whether loading pytest (with and without the plugin)
imported torch, and through which chain of imports.

Only the standard library: the script must not itself import what it measures.

    python benchmarks/load_tax.py [--runs 7] [--check] [--baseline baselines/nvidia-h200.yaml]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOAL_RATIO = 1.10
REPO = Path(__file__).resolve().parent.parent
# Variables that would change which plugins load or which options apply: the measurement sets its own.
FOREIGN_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH")

TEST_FILE = "def test_ok():\n    assert True\n"
# An ini file of its own makes the temp folder the rootdir: pytest looks no further up for configuration.
INI_FILE = "[pytest]\n"

PROBE = """
import json, sys, traceback

first_import = []

class WatchTorch:
    # Asked before the real finders for every import not yet in sys.modules: notes who asked for torch.
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not first_import:
            # This probe runs as python -c (file "<string>") and the import system is frozen: both left out.
            frames = [f for f in traceback.extract_stack() if not f.filename.startswith("<")]
            start = max((i for i, f in enumerate(frames) if "/_pytest/" in f.filename or "/pluggy/" in f.filename),
                        default=0)
            first_import.extend("/".join(f.filename.split("/")[-2:]) + ":" + str(f.lineno) for f in frames[start:])
        return None

sys.meta_path.insert(0, WatchTorch())  # before pytest is imported: nothing gets past it
import pytest

class Probe:
    def pytest_configure(self, config):
        self.plugin_loaded = config.pluginmanager.has_plugin("attnperf")

probe = Probe()
code = pytest.main(sys.argv[1:], plugins=[probe])
print("ATTNPERF-PROBE " + json.dumps({
    "exit": int(code),
    "plugin_loaded": probe.plugin_loaded,
    "torch_imported": "torch" in sys.modules,
    "first_import": first_import,
}))
"""


@dataclass
class Timing:
    label: str
    command: list[str]
    seconds: list[float]
    cpu_seconds: list[float]  # user + system time of the process: less moved by other work on the machine

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def row(self) -> str:
        return (
            f"{self.label:<38} {min(self.seconds):>8.3f} {self.median:>8.3f} {max(self.seconds):>8.3f}"
            f" {statistics.median(self.cpu_seconds):>10.3f}   {len(self.seconds)}"
        )


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
    env.update(extra)
    return env


def run_once(command: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command`` as a whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if completed.returncode != 0:
        raise SystemExit(
            f"command failed ({completed.returncode}): {' '.join(command)}\n{completed.stdout}\n{completed.stderr}"
        )
    return elapsed, cpu


def time_interleaved(commands: dict[str, tuple[list[str], dict[str, str]]], cwd: Path, runs: int) -> dict[str, Timing]:
    """Each command ``runs`` times, round robin, after one untimed warm-up run of each."""
    timings = {label: Timing(label, command, [], []) for label, (command, _) in commands.items()}
    for command, env in commands.values():
        run_once(command, cwd, env)
    for _ in range(runs):
        for label, (command, env) in commands.items():
            wall, cpu = run_once(command, cwd, env)
            timings[label].seconds.append(wall)
            timings[label].cpu_seconds.append(cpu)
    return timings


def import_seconds(importtime_log: str, module: str) -> float | None:
    """Cumulative seconds of the first import of ``module`` in a ``python -X importtime`` log."""
    pattern = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \|\s+(\S+)\s*$")
    for line in importtime_log.splitlines():
        match = pattern.match(line)
        if match and match.group(2) == module:
            return int(match.group(1)) / 1e6
    return None


def probe_torch(workdir: Path, disable_plugin: bool) -> tuple[dict[str, Any], float | None]:
    """Run the one-test suite through pytest.main in a fresh interpreter: was torch imported, from where?"""
    args = ["-q", "-p", "no:cacheprovider", *(["-p", "no:attnperf"] if disable_plugin else []), "test_ok.py"]
    command = [sys.executable, "-X", "importtime", "-c", PROBE, *args]
    completed = subprocess.run(command, cwd=workdir, env=clean_env(), capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("ATTNPERF-PROBE ")]
    if not lines:
        raise SystemExit(f"the import probe printed no result:\n{completed.stdout}\n{completed.stderr}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("ATTNPERF-PROBE "))
    return result, import_seconds(completed.stderr, "torch")


def attnperf_command() -> list[str]:
    """The ``attnperf`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "attnperf"
    found = str(beside) if beside.exists() else shutil.which("attnperf")
    if not found:
        raise SystemExit("no `attnperf` command: install the plugin into this environment (pip install -e .)")
    return [found]


def machine_line() -> str:
    return (
        f"{platform.platform()}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); "
        f"Python {platform.python_version()}"
    )


def package_versions() -> str:
    from importlib import metadata

    versions = []
    for name in ("pytest", "pytest-attnperf", "torch", "pytest-benchmark", "pytest-xdist", "hypothesis"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return ", ".join(versions)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command (default 7)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the ratio of medians exceeds {GOAL_RATIO}")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=REPO / "baselines" / "nvidia-h200.yaml",
        help="the baseline file `attnperf show` prints (default baselines/nvidia-h200.yaml)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    print("pytest-attnperf load tax")
    print(f"command: python benchmarks/load_tax.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"machine: {machine_line()}")
    print(f"python: {sys.executable}")
    print(f"packages: {package_versions()}")
    print()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="attnperf-load-tax-") as folder:
        workdir = Path(folder)
        (workdir / "test_ok.py").write_text(TEST_FILE, encoding="utf-8")
        (workdir / "pytest.ini").write_text(INI_FILE, encoding="utf-8")
        pytest_command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        env = clean_env()

        suite = time_interleaved(
            {
                "pytest, plugin installed": ([*pytest_command, "test_ok.py"], env),
                "pytest -p no:attnperf": ([*pytest_command, "-p", "no:attnperf", "test_ok.py"], env),
                "pytest, no plugin autoload (info)": (
                    [*pytest_command, "test_ok.py"],
                    clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
                ),
                "no autoload, -p attnperf only (info)": (
                    [*pytest_command, "-p", "pytest_attnperf.plugin", "test_ok.py"],
                    clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
                ),
            },
            workdir,
            args.runs,
        )
        cli = time_interleaved(
            {
                "python -c pass": ([sys.executable, "-c", "pass"], env),
                "attnperf --help": ([*attnperf_command(), "--help"], env),
                f"attnperf show {args.baseline.name}": (
                    [*attnperf_command(), "show", str(args.baseline.resolve())],
                    env,
                ),
            },
            workdir,
            args.runs,
        )
        probes = {disabled: probe_torch(workdir, disabled) for disabled in (False, True)}
    load_after = os.getloadavg()
    print(
        f"load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other work on the machine slows wall times; CPU times are less affected)"
    )
    print()

    header = f"{'wall time of the whole process (s)':<38} {'min':>8} {'median':>8} {'max':>8} {'CPU median':>10}   runs"
    print("one-test suite: python -m pytest -q -p no:cacheprovider [-p no:attnperf] test_ok.py")
    print(header)
    for timing in suite.values():
        print(timing.row())
    with_plugin = suite["pytest, plugin installed"]
    without = suite["pytest -p no:attnperf"]
    ratio = with_plugin.median / without.median
    verdict = "MET" if ratio <= GOAL_RATIO else "MISSED"
    print(
        f"ratio of medians (plugin installed / -p no:attnperf): {ratio:.2f} "
        f"(+{with_plugin.median - without.median:.3f} s per pytest run)"
    )
    print(f"goal: within {round((GOAL_RATIO - 1) * 100)} % (ratio <= {GOAL_RATIO:.2f}): {verdict}")
    cpu_ratio = statistics.median(with_plugin.cpu_seconds) / statistics.median(without.cpu_seconds)
    print(f"ratio of CPU-time medians (information, not the goal): {cpu_ratio:.2f}")
    bare = suite["pytest, no plugin autoload (info)"]
    alone = suite["no autoload, -p attnperf only (info)"]
    print(
        "(info rows: PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 loads no third-party plugin; with -p pytest_attnperf.plugin "
        f"it loads this plugin alone: {alone.median / bare.median:.1f}x bare pytest, "
        f"+{alone.median - bare.median:.3f} s)"
    )
    print()

    print("attnperf command vs python -c pass")
    print(header)
    for timing in cli.values():
        print(timing.row())
    floor = cli["python -c pass"].median
    for label, timing in cli.items():
        if label != "python -c pass":
            print(f"{label}: +{timing.median - floor:.3f} s over python -c pass ({timing.median / floor:.1f}x)")
    print()

    print(
        "torch at plugin load: pytest.main(['-q', '-p', 'no:cacheprovider', ..., 'test_ok.py']) in a fresh interpreter"
    )
    for disabled, (result, seconds) in probes.items():
        mode = "-p no:attnperf" if disabled else "plugin installed"
        print(
            f"  {mode:<17} plugin loaded: {'yes' if result['plugin_loaded'] else 'no'}; "
            f"torch imported: {'yes' if result['torch_imported'] else 'no'}; pytest exit {result['exit']}"
        )
        if result["first_import"]:
            print(f"  {'':<17} first imported from: {' -> '.join(result['first_import'])}")
        if seconds is not None:
            print(f"  {'':<17} import torch took {seconds:.2f} s (cumulative, python -X importtime)")
    with_torch, without_torch = (bool(probes[disabled][0]["torch_imported"]) for disabled in (False, True))
    if not with_torch:
        answer = "no"
    elif not without_torch:
        answer = "yes"
    else:
        answer = "cannot tell: torch is imported even with -p no:attnperf (another plugin imports it)"
    print(f"torch imported when loading the plugin: {answer}")

    if args.check and ratio > GOAL_RATIO:
        print(f"--check: ratio {ratio:.2f} exceeds {GOAL_RATIO:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
