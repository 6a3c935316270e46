"""Kernel share of a gated run: the sampled kernel time in each JSON report, summed."""

from __future__ import annotations

import json
import sys


def main(paths: list[str]) -> int:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        kernel_ms = sum(
            (case.get("latency") or {}).get("mean", 0.0) * (case.get("latency") or {}).get("samples", 0)
            for case in document["results"]
        )
        failures = [case["test_id"] for case in document["results"] if case["verdict"] in ("REGRESSION", "MISMATCH")]
        print(
            f"{path}: {len(document['results'])} cases, sampled kernel time {kernel_ms / 1e3:.1f} s, failures {failures}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
