"""Real runs of the gate, one JSON report each: the example history of docs/ci.md and the test data.

Records one baseline in a temporary folder, then gates ``--runs`` separate pytest processes against it,
each writing its ``--attnperf-json`` report (named run-01.json, ...) into ``--out``. On the CPU: small
shapes, few samples, one thread, so the reports stay small enough to commit. On a GPU: two SDPA kernels
(built into torch) at 1K and 4K with the default shapes and timing. The commit they name is this checkout's.

    python benchmarks/history_runs.py --runs 6 --out docs/results/cpu/history
    python benchmarks/history_runs.py --device cuda --runs 6 --out "$OUT/history"
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
)
CPU_OPTIONS = (
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
GPU_OPTIONS = ("--attnperf-device=cuda", "--attnperf-backends=sdpa-flash,sdpa-efficient", "--attnperf-seqlens=1K,4K")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    if commit.returncode == 0:  # a copy of the tree without .git names no commit
        environ["GIT_COMMIT"] = commit.stdout.strip()
    if args.device == "cpu":
        # One thread: on a shared 2-core machine two OpenMP threads wait on each other whenever one is
        # descheduled, and a 0.3 ms case took 100 ms in a first try; the history would show only that.
        environ["OMP_NUM_THREADS"] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as baselines:
        options = CPU_OPTIONS if args.device == "cpu" else GPU_OPTIONS
        command = [sys.executable, "-m", "pytest", *SELECTION, *options, f"--attnperf-baselines={baselines}"]
        subprocess.run([*command, "--attnperf-update"], cwd=REPO, env=environ, check=True)
        for run in range(1, args.runs + 1):
            report = (args.out / f"run-{run:02d}.json").resolve()
            finished = subprocess.run([*command, f"--attnperf-json={report}"], cwd=REPO, env=environ, check=False)
            print(f"run {run}: exit {finished.returncode}, wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
