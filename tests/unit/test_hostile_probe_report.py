"""benchmarks/hostile_probe.py's report: a rerun of some families merges into the committed one (--merge)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_script

probe = load_script("hostile_probe")
CTX = probe.Ctx(py="python", attnperf="attnperf", slug="cpu-x", name="X", torch="2.13", drop_dac=(), tmpfs=True)

# A report as round 2 wrote it: one command, its date, the commit inside the machine line.
ROUND2 = """\
# Hostile probe of pytest-attnperf

- command: `python benchmarks/hostile_probe.py --jobs 2 --out r.md`
- date: 2026-12-02 01:54 UTC (10.7 min)
- machine: X, 2 cores, Python 3.11.7, torch 2.13, pytest-attnperf at commit 9dd6a8f; read-only probes: yes
- 4 probes: **2 clear error, 1 acceptable, 1 DEFECT**

| # | family | input | what happened | verdict |
|---:|---|---|---|---|
| 1 | yaml | a \\| pipe in a cell | exit 4: refused | clear error |
| 2 | paths | a read-only folder | exit 0: 1 passed | acceptable |
| 3 | signals | SIGKILL mid-write | exit -9: file damaged | **DEFECT** |
| 4 | round2 | --attnperf-mode=fwd | exit 4: unknown mode | clear error |

## Reproducing the defects

- **#3** (signals) SIGKILL mid-write
  - run: `$PYTEST --attnperf-update`
  - files: -
  - saw: exit -9: file damaged
"""


def new_run(*families: str) -> object:
    return probe.RunInfo("2026-12-07 10:40 UTC", 2.1, "abc1234", "python benchmarks/hostile_probe.py --merge", families)


def test_a_merge_replaces_the_families_that_ran_and_keeps_the_others_with_their_run() -> None:
    runs, rows, machine = probe.parse_report(ROUND2, Path("r.md"))
    assert [run.families for run in runs] == [("yaml", "paths", "signals", "round2")]
    assert runs[0].commit == "9dd6a8f"
    assert "commit" not in machine
    assert rows[0].input == "a \\| pipe in a cell"
    assert rows[2].verdict == "DEFECT"
    fresh = [
        probe.TableRow("signals", "SIGKILL mid-write", "exit -9: old file intact", "acceptable"),
        probe.TableRow("inputs3", "a FIFO", "exit 4: is a named pipe", "clear error"),
    ]

    merged_runs, merged = probe.merge(runs, rows, new_run("signals", "inputs3"), fresh)

    # The families in the script's order; the old run keeps only the families it still holds rows of.
    assert [(row.family, row.verdict) for row in merged] == [
        ("yaml", "clear error"),
        ("paths", "acceptable"),
        ("signals", "acceptable"),
        ("round2", "clear error"),
        ("inputs3", "clear error"),
    ]
    assert [run.families for run in merged_runs] == [("yaml", "paths", "round2"), ("signals", "inputs3")]
    text = probe.render(merged_runs, merged, CTX, machine, keep=False)
    assert "- 5 probes: **3 clear error, 2 acceptable, 0 DEFECT**" in text
    assert "families yaml, paths, round2 (3 probes)" in text
    assert "commit 9dd6a8f" in text
    assert "families signals, inputs3 (2 probes)" in text
    assert "commit abc1234" in text
    assert "Reproducing the defects" not in text  # the defect's row was replaced
    # What was written reads back the same, so the next merge starts from it.
    assert probe.parse_report(text, Path("r.md"))[:2] == (merged_runs, merged)


def test_a_kept_defect_keeps_its_reproduction_under_its_new_number() -> None:
    runs, rows, machine = probe.parse_report(ROUND2, Path("r.md"))
    fresh = [
        probe.TableRow("yaml", "one", "exit 4", "clear error"),
        probe.TableRow("yaml", "two", "exit 4", "clear error"),
    ]

    merged_runs, merged = probe.merge(runs, rows, new_run("yaml"), fresh)
    text = probe.render(merged_runs, merged, CTX, machine, keep=False)

    assert "| 4 | signals | SIGKILL mid-write | exit -9: file damaged | **DEFECT** |" in text
    assert "- **#4** (signals) SIGKILL mid-write\n  - run: `$PYTEST --attnperf-update`\n" in text
    assert "1 DEFECT" in text


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--out", "missing.md"], "--merge needs --out naming an existing report"),
        (["--only", "yaml"], "--merge needs --out naming an existing report"),
        (["--out", "r.md", "--match", "FIFO"], "cannot be combined with --match"),
    ],
)
def test_merge_is_refused_without_a_report_to_merge_into_or_with_part_of_a_family(
    extra: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.md").write_text(ROUND2)
    with pytest.raises(SystemExit) as stopped:
        probe.main(["--merge", *extra])
    assert stopped.value.code == 2
    assert needle in capsys.readouterr().err


def test_a_file_that_is_not_a_report_is_refused_naming_it() -> None:
    with pytest.raises(SystemExit, match=r"notes\.md: .*not a report of this script"):
        probe.parse_report("# notes\n\nsome text\n", Path("notes.md"))
