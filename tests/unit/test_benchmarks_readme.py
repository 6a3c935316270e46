"""benchmarks/README.md lists every script where it lies: the tools in benchmarks/, the experiments in experiments/."""

from __future__ import annotations

import re

from benchmark_scripts import BENCHMARKS


def listed(section: str) -> set[str]:
    """The first column of the README's table under ``## section``."""
    text = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", body, re.MULTILINE))


def test_every_tool_in_benchmarks_is_in_the_tools_table() -> None:
    tools = listed("Tools")
    assert {path.name for path in BENCHMARKS.glob("*.py")} | {"gpu_session.sh"} <= tools
    assert [name for name in sorted(tools) if not (BENCHMARKS / name).exists()] == []  # also the folders it names


def test_every_experiment_in_experiments_is_in_the_experiments_table() -> None:
    experiments = {path.name for path in (BENCHMARKS / "experiments").glob("*.py")}
    assert experiments
    assert listed("Experiments") == experiments
