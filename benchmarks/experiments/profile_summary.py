"""An experiment: where a profiled run's host time went, from its cProfile file (no GPU needed to read it).

The JSON report's phases say which step of a case cost what; a profile says which code inside them did. This
reads a ``python -m cProfile -o FILE -m pytest --attnperf ...`` file and prints, as markdown, the functions with the
most cumulative time (what a step costs with everything it calls) among the plugin's and torch's compile stack's,
and the functions with the most time of their own (where the host really spends it: a kernel launch, a sync, a
compile worker's wait). Paths are shortened to the package they belong to.

    python benchmarks/experiments/profile_summary.py warm.prof --top 40 > summary.md
"""

from __future__ import annotations

import argparse
import pstats
import re
import sys
from pathlib import Path

# The code a cumulative row is kept for: the plugin's steps and the compile stack's, not pytest's or pluggy's wrappers.
OWN_CODE = re.compile(r"pytest_attnperf/|torch/_dynamo/|torch/_inductor/|torch/nn/attention/|triton/|flash_attn")
SITE = re.compile(r"^.*/(site-packages|dist-packages)/|^.*/lib/python3\.\d+/")  # the longest installed prefix


def short(path: str, line: int, name: str) -> str:
    """'/x/site-packages/torch/_dynamo/eval_frame.py', 12, 'f' -> 'torch/_dynamo/eval_frame.py:12 f'."""
    if path == "~":  # a built-in: '{method 'synchronize' of ...}'
        return name
    trimmed = SITE.sub("", path, count=1)
    trimmed = re.sub(r"^/.*?/(pytest_attnperf|benchmarks|tests)/", r"\1/", trimmed)  # the checkout's own files
    return f"{trimmed}:{line} {name}"


def rows(stats: pstats.Stats) -> list[tuple[str, str, int, float, float]]:
    """(full path, short name, calls, own s, cumulative s) of every function profiled."""
    table = stats.stats  # type: ignore[attr-defined]
    return [
        (path, short(path, line, name), calls, own, cumulative)
        for (path, line, name), (_, calls, own, cumulative, _) in table.items()
    ]


def markdown(title: str, chosen: list[tuple[str, str, int, float, float]]) -> list[str]:
    lines = [f"## {title}", "", "| function | calls | own s | cumulative s |", "|---|---:|---:|---:|"]
    lines += [f"| `{name}` | {calls:,} | {own:.2f} | {cumulative:.2f} |" for _, name, calls, own, cumulative in chosen]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="a cProfile output file (python -m cProfile -o FILE ...)")
    parser.add_argument("--top", type=int, default=40, help="rows per table (default 40)")
    args = parser.parse_args(argv)
    if not args.profile.is_file():
        parser.error(f"{args.profile}: no such profile file")
    try:
        stats = pstats.Stats(str(args.profile))
        everything = rows(stats)
    except (OSError, ValueError, TypeError, EOFError, AttributeError) as error:
        parser.error(f"{args.profile}: not a cProfile file ({error})")
    total = stats.total_tt  # type: ignore[attr-defined]
    cumulative = sorted((row for row in everything if OWN_CODE.search(row[0])), key=lambda row: -row[4])
    own = sorted(everything, key=lambda row: -row[3])
    out = [
        f"# Profile of {args.profile.name}: {total:.1f} s under the profiler, {len(everything):,} functions",
        "",
        *markdown("Cumulative: the plugin's steps and the compile stack", cumulative[: args.top]),
        *markdown("Own time: where the host spent it", own[: args.top]),
    ]
    sys.stdout.write("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
