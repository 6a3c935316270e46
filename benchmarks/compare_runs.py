"""Compare two --attnperf-json reports case by case: verdicts, medians, and the GPU each case ran on."""

from __future__ import annotations

import json
import sys


def main(first_path: str, second_path: str) -> int:
    with open(first_path, encoding="utf-8") as handle:
        first = {case["test_id"]: case for case in json.load(handle)["results"]}
    with open(second_path, encoding="utf-8") as handle:
        second = {case["test_id"]: case for case in json.load(handle)["results"]}
    print(f"| test | {first_path} | {second_path} | median ratio |")
    print("|---|---|---|---|")
    differing = 0
    for test_id in sorted(set(first) | set(second)):
        a, b = first.get(test_id), second.get(test_id)
        cell_a = f"{a['verdict']} on {a.get('device_id')}" if a else "missing"
        cell_b = f"{b['verdict']} on {b.get('device_id')}" if b else "missing"
        ratio = b["median_ms"] / a["median_ms"] if a and b and a.get("median_ms") and b.get("median_ms") else None
        differing += (a or {}).get("verdict") != (b or {}).get("verdict")
        print(f"| {test_id.split('::')[-1]} | {cell_a} | {cell_b} | {'-' if ratio is None else f'x{ratio:.3f}'} |")
    print(f"\n{len(first)} and {len(second)} cases; {differing} verdicts differ")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
