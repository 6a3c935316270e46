"""Real CPU runs of the gate, one JSON report each: the example history of docs/ci.md and the test data.

Records one baseline in a temporary folder, then gates ``--runs`` separate pytest processes against it,
each writing its ``--attnperf-json`` report (named run-01.json, ...) into ``--out``. Small shapes, few
samples, one CPU thread: the reports stay small enough to commit. The commit they name is this checkout's.

    python benchmarks/cpu_history.py --runs 6 --out docs/results/cpu/history
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SELECTION = (
    "tests/suite/test_attention.py",
    "-k",
    "test_forward",
    "-p",
    "no:cacheprovider",
    "-q",
    "--attnperf",
    "--attnperf-device=cpu",
    "--attnperf-backends=eager,sdpa-math",
    "--attnperf-seqlens=128,256",
    "--attnperf-heads=2",
    "--attnperf-head-dim=16",
    "--attnperf-min-samples=10",
    "--attnperf-warmup=20ms",
    "--attnperf-rep=20ms",
    "--attnperf-fingerprint=off",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    # One thread: on a shared 2-core machine two OpenMP threads wait on each other whenever one is
    # descheduled, and a 0.3 ms case takes 100 ms (seen in a first try); the history would show only that.
    environ = {**os.environ, "GIT_COMMIT": commit.stdout.strip(), "OMP_NUM_THREADS": "1"}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as baselines:
        command = [sys.executable, "-m", "pytest", *SELECTION, f"--attnperf-baselines={baselines}"]
        subprocess.run([*command, "--attnperf-update"], cwd=REPO, env=environ, check=True)
        for run in range(1, args.runs + 1):
            report = (args.out / f"run-{run:02d}.json").resolve()
            finished = subprocess.run([*command, f"--attnperf-json={report}"], cwd=REPO, env=environ, check=False)
            print(f"run {run}: exit {finished.returncode}, wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
