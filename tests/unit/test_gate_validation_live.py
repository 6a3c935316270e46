"""The live gate validation's driver, without a GPU: its run order and its summary of the plugin's JSON reports."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fast_run import FAST_OPTIONS

import pytest_attnperf.measure.case as measuring  # imported before any pytester snapshot, so the patch holds
from pytest_attnperf.measure.measurement import Measurement
from pytest_attnperf.measure.timing import Timing

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "gate_validation"))

import gate_validation_live as live  # noqa: E402
import live_cases  # noqa: E402


def test_each_trial_rotates_the_rows_of_every_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_VALIDATION_CASES", "flash-attn-32K,eager-4K")
    monkeypatch.setenv("GATE_VALIDATION_TRIAL", "1")
    order = live_cases.interleaved()
    assert order[:4] == [(1, "flash-attn-32K", row) for row in ("plus3", "plus5", "power", "unchanged")]
    assert len(order) == 8
    monkeypatch.setenv("GATE_VALIDATION_CASES", "nope")
    with pytest.raises(pytest.UsageError, match="unknown nope"):
        live_cases.selected_cases()


def test_one_session_runs_several_trials_one_after_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_VALIDATION_CASES", "flash-attn-32K,eager-4K")
    monkeypatch.setenv("GATE_VALIDATION_TRIAL", "6")
    monkeypatch.setenv("GATE_VALIDATION_TRIAL_COUNT", "3")
    order = live_cases.interleaved()
    assert [trial for trial, _, _ in order] == [6] * 8 + [7] * 8 + [8] * 8  # every case in each trial
    assert [row for _, case, row in order[8:12]] == ["power", "unchanged", "plus3", "plus5"]  # trial 7: rotated
    ids = [live_cases.item_id(case, row, trial) for trial, case, row in order]
    assert ids[0] == "flash-attn-32K-plus5-t6"
    assert len(set(ids)) == 24
    assert [live_cases.parse_item_id(f"x.py::test_gate[{i}]") for i in ids] == [(c, r, t) for t, c, r in order]
    assert live_cases.parse_item_id("x::test_gate[decode-flash-attn-16K-power]") == (
        "decode-flash-attn-16K", "power", None,
    )  # fmt: skip
    monkeypatch.setenv("GATE_VALIDATION_PHASE", "record")  # the record phase: one pass, ids without a trial
    assert {trial for trial, _, _ in live_cases.interleaved()} == {None}
    for variable, value in (("GATE_VALIDATION_TRIAL_COUNT", "0"), ("GATE_VALIDATION_TRIAL", "x")):
        monkeypatch.setenv("GATE_VALIDATION_PHASE", "gate")
        monkeypatch.setenv(variable, value)
        with pytest.raises(pytest.UsageError, match=f"{variable} must be a whole number"):
            live_cases.interleaved()
        monkeypatch.delenv(variable)
    with pytest.raises(ValueError, match="not an id of test_gate"):
        live_cases.parse_item_id("x::test_gate[nope-unchanged-t1]")


def record(
    case: str, row: str, raw: float, verdict: str, clock: float = 1500.0, tolerance: float = 0.03
) -> dict[str, Any]:
    return {
        "test_id": f"benchmarks/gate_validation/test_live_gate.py::test_gate[{case}-{row}]",
        **{"backend": "eager", "device": "GPU", "device_slug": "gpu", "mode": "forward", "shape": None, "seqlen": 4096},
        "stages": [{"raw_ratio": raw, "decided_by": "machine"}],
        "verdicts": {"latency": verdict},
        "verdict": verdict,
        "samples_ms": [raw] * 5,
        "clock_mhz": [clock] * 5,
        "clock_ref_mhz": 1500.0,
        "baseline_median_ms": 1.0,
        "tolerance": tolerance,
        "gpu": {"burst_power_w": 600.0},
    }


def test_the_summary_gives_wall_time_and_cycles_and_counts_verdicts(tmp_path: Path) -> None:
    trials = [
        {
            "trial": index,
            "device": {"name": "GPU", "uuid": "GPU-b"},
            "results": [
                record("flash-attn-32K", "unchanged", 1.0, "ok"),
                record("flash-attn-32K", "plus5", 1.05, "REGRESSION", tolerance=0.03 + 0.015 * index),
                record("flash-attn-32K", "plus3", 1.03, "ok" if index else "REGRESSION"),
                record("flash-attn-32K", "power", 1.08, "REGRESSION", clock=1500.0 / 1.08),
            ],
        }
        for index in range(2)
    ]
    summary = live.summarise(trials, ["flash-attn-32K"], tmp_path)
    rows = {row["row"]: row for row in summary["sensitivity"]}
    assert rows["plus5"]["injected"] == pytest.approx(0.05)
    assert rows["plus5"]["detected"] == 2
    assert rows["plus3"]["detected"] == 1
    assert (rows["plus5"]["tolerance"], rows["plus5"]["tolerance_max"]) == (0.03, 0.045)  # another unit's line too
    assert (rows["plus3"]["tolerance"], rows["plus3"]["tolerance_max"]) == (0.03, None)
    assert rows["power"]["injected"] == pytest.approx(0.08)  # wall time, against its own (rounded-input) baseline
    assert rows["power"]["injected_cycles"] == pytest.approx(0.0, abs=1e-9)  # the same cycles
    assert rows["power"]["false_alarms"] == 0
    assert summary["gated_runs"] == {"runs": 2, "failed": 0, "through_pytest": True, "processes": 2}
    assert summary["gated_on"] == ["GPU-b"]
    text = live.markdown(summary)
    assert "| flash-attn 32K | power | +8.0 % |" in text
    assert "recorded on (no baseline file), gated on GPU-b" in text


def test_a_process_starts_only_if_it_ends_within_the_budget() -> None:
    pace = live.Pace(["flash-attn-32K", "eager-4K"])  # before any process: the rough costs
    one_trial = live.PER_TEST_S * 2 * len(live_cases.ROWS)
    assert pace.predict_s(3) == pytest.approx(live.START_S + 3 * one_trial)
    assert pace.fitting(5, live.START_S + 2.5 * one_trial) == 2
    assert pace.fitting(5, live.START_S) == 0
    assert pace.plan(0, 20, 5, 3 * (live.START_S + 5 * one_trial) + 1) == [5, 5, 5]
    assert pace.plan(18, 20, 5, 1000) == [2]  # the last process takes what is left
    pace.learn(40.0, {"first_test_at": 100.0, "last_test_at": 130.0}, trials=3)  # then what a process took
    pace.learn(50.0, {"first_test_at": 0.0, "last_test_at": 44.0}, trials=4)
    assert (pace.starts_s, pace.trials_s) == ([10.0, 6.0], [10.0, 11.0])
    assert pace.predict_s(2) == pytest.approx(live.MARGIN * (10.0 + 2 * 11.0))  # the slowest seen
    assert Pace_with_flex().predict_s(1) == pytest.approx(live.START_S + live.FLEX_COMPILE_S + live.PER_TEST_S * 4)


def Pace_with_flex() -> Any:
    return live.Pace(["flex-16K"])


def baseline_file(folder: Path, ids: list[str], median: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = {f"benchmarks/gate_validation/test_live_gate.py::test_gate[{i}]": {"latency_ms": {"median": median}}
               for i in ids}  # fmt: skip
    path = folder / "gpu.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 3, "device": {}, "entries": entries}), encoding="utf-8")
    return path


def test_each_trial_is_gated_against_the_recorded_entry_copied_under_its_id(tmp_path: Path) -> None:
    baseline_file(tmp_path / "recorded", ["eager-4K-unchanged", "eager-4K-plus3"])
    live.trial_baselines(tmp_path / "recorded", tmp_path / "derived", [4, 5])
    entries = yaml.safe_load((tmp_path / "derived" / "gpu.yaml").read_text(encoding="utf-8"))["entries"]
    assert sorted(entry.split("[")[1] for entry in entries) == [
        "eager-4K-plus3-t4]", "eager-4K-plus3-t5]", "eager-4K-unchanged-t4]", "eager-4K-unchanged-t5]",
    ]  # fmt: skip
    assert {entry["latency_ms"]["median"] for entry in entries.values()} == {1.0}
    baseline_file(tmp_path / "odd", ["eager-4K-unchanged-t2"])
    with pytest.raises(SystemExit, match=r"names a trial; expected the record stage's \[case-row\] entries"):
        live.trial_baselines(tmp_path / "odd", tmp_path / "derived", [0])
    baseline_file(tmp_path / "suite", ["eager-1K"])  # another suite's baselines
    with pytest.raises(SystemExit, match=r"is not an id of test_gate\[case-row\].*: not the record stage's baselines"):
        live.trial_baselines(tmp_path / "suite", tmp_path / "derived", [0])
    with pytest.raises(SystemExit, match="no baseline file"):
        live.trial_baselines(tmp_path / "none", tmp_path / "derived", [0])


def raw_report(folder: Path, trials: list[int], cases: tuple[str, ...] = ("flash-attn-32K",)) -> Path:
    """A process's report as the gate stage keeps it: the plugin's JSON, trial ids, and its gate_validation key."""
    results = []
    for trial in trials:
        for case in cases:
            for row, raw, verdict in (("unchanged", 1.0, "ok"), ("plus3", 1.03, "ok"), ("plus5", 1.05, "REGRESSION"),
                                      ("power", 1.08, "REGRESSION")):  # fmt: skip
                entry = record(case, row, raw, verdict)
                entry["test_id"] = entry["test_id"].replace(f"[{case}-{row}]", f"[{case}-{row}-t{trial}]")
                results.append(entry)
    (folder / "raw").mkdir(parents=True, exist_ok=True)
    path = folder / "raw" / f"trials-{trials[0]:03d}-{trials[-1]:03d}.json"
    document = {"schema": "attnperf-results/2", "device": {"name": "GPU", "uuid": "GPU-b"}, "results": results,
                "gate_validation": {"trials": trials, "exit": 1, "command": f"gate {trials[0]}"}}  # fmt: skip
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_summarise_gathers_the_trials_of_several_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second, together = tmp_path / "call1", tmp_path / "call2", tmp_path / "all"
    raw_report(first, [0, 1, 2])
    raw_report(first, [3])
    raw_report(second, [4, 5])
    for folder in (first, second):
        baseline_file(folder / "baselines", ["flash-attn-32K-unchanged"])
    assert live.main(["summarise", "--out", str(together), str(first), str(second)]) == 0
    summary = json.loads((together / "gate-validation-live.json").read_text(encoding="utf-8"))
    assert summary["gated_runs"] == {"runs": 6, "failed": 0, "through_pytest": True, "processes": 3}
    rows = {row["row"]: row for row in summary["sensitivity"]}
    assert (rows["plus5"]["detected"], rows["plus5"]["trials"], rows["plus3"]["detected"]) == (6, 6, 0)
    assert rows["power"]["false_alarm_trials"] == 6
    assert summary["command"].startswith("gate 0 ; gate 3 ; gate 4 ; ")
    assert "summarise --out $OUT" in summary["command"]
    with gzip.open(together / "gate-validation-samples.json.gz", "rt", encoding="utf-8") as handle:
        samples = json.load(handle)
    assert [trial["trial"] for trial in samples] == [0, 1, 2, 3, 4, 5]
    assert samples[4]["raw"] == "call2/raw/trials-004-005.json"
    assert samples[4]["results"][0]["test_id"].endswith("::test_gate[flash-attn-32K-unchanged]")  # as recorded
    assert "| flash-attn 32K | plus5 | +5.0 % |" in capsys.readouterr().out
    # the same summary from one folder, its form unchanged by the trials a process ran
    assert live.main(["summarise", "--out", str(first)]) == 0
    alone = json.loads((first / "gate-validation-live.json").read_text(encoding="utf-8"))
    assert alone.keys() == summary.keys()
    assert [row.keys() for row in alone["sensitivity"]] == [row.keys() for row in summary["sensitivity"]]


def test_summarise_refuses_what_cannot_be_gathered(tmp_path: Path) -> None:
    raw_report(tmp_path / "a", [0, 1])
    raw_report(tmp_path / "b", [1, 2])
    with pytest.raises(SystemExit, match=r"trial 1 is in both .*trials-000-001\.json and .*trials-001-002\.json"):
        live.main(["summarise", "--out", str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b")])
    raw_report(tmp_path / "c", [5])
    baseline_file(tmp_path / "a" / "baselines", ["flash-attn-32K-unchanged"])
    baseline_file(tmp_path / "c" / "baselines", ["flash-attn-32K-unchanged"], median=2.0)
    with pytest.raises(SystemExit, match="hold different baseline files"):
        live.main(["summarise", "--out", str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="no gated trials in"):
        live.main(["summarise", "--out", str(tmp_path / "empty")])
    (tmp_path / "d" / "raw").mkdir(parents=True)
    (tmp_path / "d" / "raw" / "trials-000-000.json").write_text('{"results": [', encoding="utf-8")  # cut off
    with pytest.raises(SystemExit, match=r"trials-000-000\.json: not a JSON report of pytest --attnperf"):
        live.main(["summarise", "--out", str(tmp_path / "d")])
    edited = json.loads(raw_report(tmp_path / "e", [0]).read_text(encoding="utf-8"))
    edited["results"][2]["samples_ms"] = ["1.05"] * 5  # a raw file edited by hand: refused by field, not a traceback
    (tmp_path / "e" / "raw" / "trials-000-000.json").write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"trials-000-000\.json: .*field 'samples_ms' is \["):
        live.main(["summarise", "--out", str(tmp_path / "e")])
    edited = {**json.loads(raw_report(tmp_path / "f", [0]).read_text(encoding="utf-8")), "gate_validation": [0]}
    (tmp_path / "f" / "raw" / "trials-000-000.json").write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"its gate_validation is \[0\]; expected an object"):
        live.main(["summarise", "--out", str(tmp_path / "f")])


def test_gzipped_raw_reports_are_read_as_committed(tmp_path: Path) -> None:
    """The committed raw/ reports are gzipped: the trials they hold count, gathered and numbered as before."""
    for trials in ([0, 1], [2]):
        path = raw_report(tmp_path, trials)
        with gzip.open(path.with_name(path.name + ".gz"), "wt", encoding="utf-8") as handle:
            handle.write(path.read_text(encoding="utf-8"))
        path.unlink()
    assert sorted(live.trials_on_disk(tmp_path / "raw")) == [0, 1, 2]
    gathered = live.gathered([tmp_path])
    assert [trial["trial"] for trial in gathered] == [0, 1, 2]
    assert gathered[2]["raw"].endswith("raw/trials-002-002.json.gz")


def test_the_one_process_a_trial_reports_are_still_read(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    for trial in range(2):  # raw/trial-N.json, ids without the trial (the December 2026 run)
        results = [record("eager-4K", row, 1.0, "ok") for row in live_cases.ROWS]
        document = {"schema": "attnperf-results/2", "device": {"name": "GPU", "uuid": "GPU-a"}, "results": results}
        (tmp_path / "raw" / f"trial-{trial}.json").write_text(json.dumps(document), encoding="utf-8")
    assert [trial["trial"] for trial in live.gathered([tmp_path])] == [0, 1]
    assert sorted(live.trials_on_disk(tmp_path / "raw")) == [0, 1]


def test_a_later_call_continues_the_numbering_and_refuses_to_overwrite(tmp_path: Path) -> None:
    raw_report(tmp_path, [0, 1, 2])
    baseline_file(tmp_path / "baselines", ["flash-attn-32K-unchanged"])

    def first(*options: str) -> int:
        arguments = argparse.Namespace(out=tmp_path, trials=20, first_trial=None)
        for option, value in zip(options[::2], options[1::2], strict=True):
            setattr(arguments, option, int(value))
        return int(live.first_trial(arguments))

    assert first() == 3  # --out carried back: after its reports
    assert first("first_trial", "10") == 10
    with pytest.raises(SystemExit, match=r"trials-000-002\.json already holds trial 2: give --first-trial 3"):
        first("first_trial", "2")
    with pytest.raises(
        SystemExit, match=r"nothing to run: --trials 3 is the total \(trials 0-2\) and this call would start at trial 3"
    ):
        first("trials", "3")


@pytest.mark.parametrize(
    ("argv", "variables", "message"),
    [
        (
            ["gate", "--trials-per-process", "0"],
            {},
            "--trials-per-process: must be a whole number >= 1 (here or in TRIALS_PER_PROCESS), not '0'",
        ),
        (["gate"], {"TRIALS_PER_PROCESS": "two"}, "not 'two'"),
        (["gate"], {"FIRST_TRIAL": "-1"}, "FIRST_TRIAL), not '-1'"),
        (["gate"], {"BUDGET_S": "nan"}, "must be a number of seconds > 0 (here or in BUDGET_S), not 'nan'"),
        (["gate", "elsewhere"], {}, "folders are for summarise only, not gate"),
        (["all"], {"GATE_VALIDATION_CASES": "flash-attn-64K"}, "GATE_VALIDATION_CASES: unknown flash-attn-64K"),
    ],
)
def test_a_bad_value_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    variables: dict[str, str],
    message: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as raised:
        live.main([*argv, "--out", str(tmp_path)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_no_process_starts_that_the_budget_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATE_VALIDATION_CASES", "eager-256")
    baseline_file(tmp_path / "baselines", ["eager-256-unchanged"])
    assert live.main(["gate", "--out", str(tmp_path), "--budget-s", "5", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "Within --budget-s 5: about 0 trials, the rest in another call (--first-trial 0)" in out
    one_process = live.START_S + live.PER_TEST_S * len(live_cases.ROWS)
    assert f"gate: stopping before trial 0: one more process needs about {one_process:.0f} s, 5 s of --budget-s" in out
    assert "no trial ran" in out
    assert not list((tmp_path / "raw").iterdir())


@pytest.mark.slow
def test_the_session_end_re_measures_every_trials_ambiguous_items(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real suite, several trials in one session, its timings scripted: a first measurement of x1.05 is
    ambiguous (the baseline is 1 ms from one run), so every item of every trial is held and measured again at the
    session's end, against its own trial's entry; the reports then split per trial as one process a trial did."""
    medians: list[float] = []
    measured: list[str] = []  # the item of each measurement, in order

    def scripted(*_: object, **__: object) -> Measurement:
        measured.append(os.environ["PYTEST_CURRENT_TEST"].split("[")[1].split("]")[0])
        median = medians.pop(0) if len(medians) > 1 else medians[0]
        return Measurement(Timing(samples_ms=(median,) * 10, clock="fake"), 100, None, None)

    monkeypatch.setattr(measuring, "measure", scripted)
    suite = pytester.path / "benchmarks" / "gate_validation"
    suite.mkdir(parents=True)
    for name in ("test_live_gate.py", "live_cases.py"):
        (suite / name).write_text((live.SUITE / name).read_text(encoding="utf-8"), encoding="utf-8")
    options = (*FAST_OPTIONS, "--attnperf", "--attnperf-device=cpu", "benchmarks/gate_validation/test_live_gate.py")
    monkeypatch.setenv("GATE_VALIDATION_CASES", "eager-256")
    monkeypatch.setenv("GATE_VALIDATION_PHASE", "record")
    monkeypatch.setenv("GATE_VALIDATION_ROWS", "unchanged,power")
    medians.append(1.0)
    pytester.runpytest_inprocess(*options, "--attnperf-update", "--attnperf-baselines=recorded").assert_outcomes(
        passed=2
    )
    live.alias_extra_rows(pytester.path / "recorded")
    live.trial_baselines(pytester.path / "recorded", pytester.path / "derived", [3, 4, 5])
    monkeypatch.setenv("GATE_VALIDATION_PHASE", "gate")
    monkeypatch.delenv("GATE_VALIDATION_ROWS")
    monkeypatch.setenv("GATE_VALIDATION_TRIAL", "3")
    monkeypatch.setenv("GATE_VALIDATION_TRIAL_COUNT", "3")
    medians[:] = [1.05] * 12 + [0.99]  # every first measurement ambiguous, every second one a pass
    report = pytester.path / "out" / "raw" / "trials-003-005.json"
    result = pytester.runpytest_inprocess(
        *options, "--attnperf-baselines=derived", "--attnperf-missing=fail", f"--attnperf-json={report}"
    )
    result.assert_outcomes(passed=12)
    first_pass = [f"{case}-{row}-t{trial}" for trial, case, row in live_cases.interleaved()]
    assert len(first_pass) == 12
    assert measured[-24:] == first_pass + first_pass  # each item again at the end, after the last trial's items
    document = json.loads(report.read_text(encoding="utf-8"))
    for entry in document["results"]:
        assert [stage["verdict"] for stage in entry["stages"]] == ["ambiguous", "pass"], entry["test_id"]
        assert entry["first_median_ms"] == 1.05
    trials = live.gathered([pytester.path / "out"])
    assert [trial["trial"] for trial in trials] == [3, 4, 5]
    assert [[r["test_id"].split("[")[1] for r in trial["results"]] for trial in trials][1] == [
        "eager-256-unchanged]",
        "eager-256-plus3]",
        "eager-256-plus5]",
        "eager-256-power]",
    ]  # trial 4's: its rows rotated by 4, its ids as recorded
    rows = {row["row"]: row for row in live.summarise(trials, ["eager-256"], pytester.path / "recorded")["sensitivity"]}
    assert (rows["plus5"]["trials"], rows["plus5"]["detected"], rows["plus5"]["false_alarm_trials"]) == (3, 0, 3)


@pytest.mark.slow
def test_the_script_on_the_cpu_over_two_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Record and two trials in one process, then a third trial in another call against the same baselines, then
    both gathered: the summary has the form of the committed twenty-trial summary's."""
    monkeypatch.setenv("GATE_VALIDATION_CASES", "eager-256")
    first, second = tmp_path / "call1", tmp_path / "call2"
    common = ["--device", "cpu", "--trials-per-process", "2"]
    assert live.main(["all", "--out", str(first), "--trials", "2", "--record-runs", "1", *common]) == 0
    monkeypatch.setenv("FIRST_TRIAL", "2")
    assert (
        live.main(["gate", "--out", str(second), "--baselines", str(first / "baselines"), "--trials", "3", *common])
        == 0
    )
    out = capsys.readouterr().out
    assert "estimate: gate trials 0-1 (1 cases x 4 rows each) in 1 pytest processes of at most 2 trials" in out
    assert "gate: trials 0-1 done in" in out
    assert "gate: trials 2-2 done in" in out
    assert sorted(path.name for path in (first / "raw").iterdir()) == ["trials-000-001.json"]
    assert live.main(["summarise", "--out", str(tmp_path / "all"), str(first), str(second)]) == 0
    summary = json.loads((tmp_path / "all" / "gate-validation-live.json").read_text(encoding="utf-8"))
    committed_file = ROOT / "docs/results/h100/2026-12/live-20-trials/gate-validation-live.json"
    committed = json.loads(committed_file.read_text(encoding="utf-8"))
    assert summary.keys() == committed.keys()
    assert [row.keys() for row in summary["sensitivity"]] == [committed["sensitivity"][0].keys()] * 3
    assert summary["gated_runs"]["runs"] == 3
    assert summary["gated_runs"]["processes"] == 2
    assert {row["trials"] for row in summary["sensitivity"]} == {3}
    assert summary["recorded_on"] == []  # a CPU has no UUID


FAKE_PYTEST = """
import json, os, sys, yaml
report, baselines = sys.argv[1], sys.argv[2]
(path,) = [os.path.join(baselines, name) for name in os.listdir(baselines) if name.endswith(".yaml")]
ids = list(yaml.safe_load(open(path, encoding="utf-8"))["entries"])  # the items of this process's trials
template = json.loads(os.environ["FAKE_RECORD"])
results = [{**template, "test_id": test_id} for test_id in ids]
cost = {"first_test_at": 100.0, "last_test_at": 100.0 + 0.01 * len(ids)}
json.dump({"schema": "attnperf-results/2", "device": {"name": "GPU", "uuid": "GPU-b"}, "results": results, "cost": cost},
          open(report, "w"))
sys.exit(int(os.environ.get("FAKE_EXIT", "1")))
"""


def test_the_gate_runs_the_trials_k_a_process_and_a_later_call_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate stage's loop with a stand-in for pytest, which reports every item of the trials' baseline file."""
    monkeypatch.setattr(
        live,
        "pytest_command",
        lambda out_json, baselines, device: [sys.executable, "-c", FAKE_PYTEST, out_json, baselines],
    )
    monkeypatch.setenv("FAKE_RECORD", json.dumps(record("eager-256", "unchanged", 1.0, "ok")))
    monkeypatch.setenv("GATE_VALIDATION_CASES", "eager-256")
    baseline_file(tmp_path / "baselines", [f"eager-256-{row}" for row in live_cases.ROWS])
    assert live.main(["gate", "--out", str(tmp_path), "--trials", "5", "--trials-per-process", "2"]) == 0
    out = capsys.readouterr().out
    assert "in 3 pytest processes of at most 2 trials" in out
    assert "gate: trials 0-1 done in" in out
    assert "a trial; 3 to go, about 3 within --budget-s" in out  # by the pace measured
    assert sorted(path.name for path in (tmp_path / "raw").iterdir()) == [
        "trials-000-001.json", "trials-002-003.json", "trials-004-004.json",
    ]  # fmt: skip
    report = json.loads((tmp_path / "raw" / "trials-002-003.json").read_text(encoding="utf-8"))
    assert report["gate_validation"]["trials"] == [2, 3]
    assert report["gate_validation"]["exit"] == 1
    assert sorted(r["test_id"].split("[")[1] for r in report["results"])[:2] == [
        "eager-256-plus3-t2]",
        "eager-256-plus3-t3]",
    ]
    summary = json.loads((tmp_path / "gate-validation-live.json").read_text(encoding="utf-8"))
    assert summary["gated_runs"]["runs"] == 5
    assert summary["gated_runs"]["processes"] == 3
    # a later call with the same --out continues at trial 5; a session that did not end normally is set aside
    assert live.main(["gate", "--out", str(tmp_path), "--trials", "6"]) == 0
    assert "gate: trials 5-5 done in" in capsys.readouterr().out
    monkeypatch.setenv("FAKE_EXIT", "2")
    assert live.main(["gate", "--out", str(tmp_path), "--trials", "7"]) == 1
    assert "pytest exited 2; its report is set aside as trials-006-006.json.exit-2; stopping" in capsys.readouterr().out
    assert [trial["trial"] for trial in live.gathered([tmp_path])] == [0, 1, 2, 3, 4, 5]


def test_any_trials_per_process_is_planned_at_once() -> None:
    pace = live.Pace(["eager-256"])
    one_trial = live.PER_TEST_S * len(live_cases.ROWS)
    assert pace.fitting(10**12, live.START_S + 2.5 * one_trial) == 2  # bisected: no loop over 10**12 counts
    assert pace.fitting(10**12, 10.0**15) == 10**12
    assert pace.plan(0, 10**12, 10**12, live.START_S + 3 * one_trial) == [3]


def test_an_out_that_is_a_file_or_under_one_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw_report(tmp_path / "call1", [0, 1])
    taken = tmp_path / "report.json"
    taken.write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit) as raised:
        live.main(["summarise", "--out", str(taken), str(tmp_path / "call1")])
    assert raised.value.code == 2
    assert f"--out {taken}: is a file; give a folder (made if missing)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"--out .*report.json/summary: cannot write there \(Not a directory\)"):
        live.main(["summarise", "--out", str(taken / "summary"), str(tmp_path / "call1")])
    assert taken.read_text(encoding="utf-8") == "{}"


def test_a_folder_named_twice_is_summarised_once(tmp_path: Path) -> None:
    raw_report(tmp_path / "call1", [0, 1])
    folder = str(tmp_path / "call1")
    assert live.main(["summarise", "--out", str(tmp_path / "all"), folder, folder + "/"]) == 0
    summary = json.loads((tmp_path / "all" / "gate-validation-live.json").read_text(encoding="utf-8"))
    assert summary["gated_runs"]["runs"] == 2


def test_a_broken_or_missing_baselines_folder_is_refused_by_name(tmp_path: Path) -> None:
    raw_report(tmp_path / "call1", [0])
    broken = baseline_file(tmp_path / "call1" / "baselines", ["flash-attn-32K-unchanged"])
    broken.write_text("entries: [unclosed\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"gpu.yaml: not a readable baseline file \(while parsing"):
        live.main(["summarise", "--out", str(tmp_path / "all"), str(tmp_path / "call1")])
    broken.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"gpu.yaml: not a baseline file written by attnperf update"):
        live.trial_baselines(broken.parent, tmp_path / "derived", [0])
    with pytest.raises(SystemExit, match=r"no baseline file \(\*.yaml\) in .*nowhere"):  # named, so it must exist
        live.main(["summarise", "--out", str(tmp_path / "all"), str(tmp_path / "call1"), "--baselines",
                   str(tmp_path / "nowhere")])  # fmt: skip


def test_the_command_line_shows_the_plugins_options_and_the_rounding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call made with the adjacent machine reference and 1-bit rounding says so in its command line."""
    for name in live.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTEST_ADDOPTS", "--attnperf-machine-reference=adjacent")
    monkeypatch.setenv("GATE_VALIDATION_ROUNDING", "1")
    arguments = argparse.Namespace(out=tmp_path / "out")
    line = live._command_line(arguments, ["gate", "--out", str(tmp_path / "out")])
    assert line == (
        "PYTEST_ADDOPTS=--attnperf-machine-reference=adjacent GATE_VALIDATION_ROUNDING=1 "
        "python benchmarks/gate_validation_live.py gate --out $OUT"
    )
