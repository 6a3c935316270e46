"""The JSON reports of runs, used again: dashboard exports, `attnperf compare`, `merge` and `history`.

Real files only: the exports come from a pytester run of the plugin; compare, merge and history read the
reports under tests/data/runs/ (two real CPU runs of ``benchmarks/history_runs.py``). Where a test needs
what one CPU cannot give (another GPU model, a regression, 8 runs with a steady creep), it derives the
variant from a real report programmatically: medians scaled, a slug renamed, a verdict set. Each such
test says what it changed.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fast_run import FAST_OPTIONS

from pytest_attnperf.cli import main
from pytest_attnperf.runs.compare import markdown, pair_cases
from pytest_attnperf.runs.drift import DriftRule, trend
from pytest_attnperf.runs.exports import ExportError, bmf_document, export_text
from pytest_attnperf.runs.history import build_series, find_reports, history_text
from pytest_attnperf.runs.merge import MergeError, merge_reports
from pytest_attnperf.runs.stored import ReportError, load_report, report_from_document

DATA = Path(__file__).resolve().parents[1] / "data" / "runs"
REAL = DATA / "run-01.json"

# The published JSON Schema of the Bencher Metric Format (https://bencher.dev/bmf.json, draft-07).
BMF_SCHEMA: dict[str, Any] = {
    "$id": "https://bencher.dev/bmf.json",
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "patternProperties": {
        ".+": {
            "type": "object",
            "patternProperties": {
                ".+": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number"},
                        "lower_value": {"type": "number"},
                        "upper_value": {"type": "number"},
                    },
                    "required": ["value"],
                }
            },
        }
    },
}
# github-action-benchmark's BenchmarkResult (src/extract.ts: name, value, unit required; range, extra
# optional strings), which its custom tools read as a JSON array.
GITHUB_BENCHMARK_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "value": {"type": "number"},
            "unit": {"type": "string"},
            "range": {"type": "string"},
            "extra": {"type": "string"},
        },
        "required": ["name", "value", "unit"],
        "additionalProperties": False,
    },
}
TEST = """
    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


def real() -> dict[str, Any]:
    return json.loads(REAL.read_text(encoding="utf-8"))


def passed(document: dict[str, Any]) -> dict[str, Any]:
    """Derived: every case's gate verdict set to ok (the real CPU runs failed some), so a test sets its own."""
    for case in document["results"]:
        case["verdicts"] = {check: "ok" for check in case["verdicts"]}
        case["verdict"] = "ok"
    return document


def write(folder: Path, name: str, document: Any) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def at(minutes: int) -> str:
    moment = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    return moment.isoformat().replace("+00:00", "Z")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- exports
# Bencher's own parser is its `bencher` CLI (Rust); no parser of it is on PyPI, so the published schema is checked.


def test_a_run_writes_both_exports_in_their_published_shapes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_exports=TEST)
    # The github-action-benchmark path comes from the ini file, taken from the ini file's folder.
    pytester.makeini("[pytest]\nattnperf_github_benchmark = out/github.json\n")
    result = pytester.runpytest_inprocess(
        "--attnperf",
        *FAST_OPTIONS,
        "--attnperf-backends=eager,sdpa-math",
        "--attnperf-json=out/report.json",
        "--attnperf-bmf=out/bmf.json",
    )
    result.assert_outcomes(passed=2)
    out = pytester.path / "out"
    report = json.loads((out / "report.json").read_text())
    bmf = json.loads((out / "bmf.json").read_text())
    github = json.loads((out / "github.json").read_text())
    jsonschema.Draft7Validator(BMF_SCHEMA).validate(bmf)
    jsonschema.Draft7Validator(GITHUB_BENCHMARK_SCHEMA).validate(github)
    assert report["created_at"].endswith("Z")
    cases = {case["test_id"]: case for case in report["results"]}
    assert set(bmf) == set(cases)
    for test_id, measures in bmf.items():
        case = cases[test_id]
        assert len(test_id) <= 1024  # Bencher's limits: benchmark name 1024, measure slug 64 characters
        assert all(len(slug) <= 64 for slug in measures)
        latency = measures["latency"]  # Bencher's built-in Latency measure is in nanoseconds
        assert latency["value"] == pytest.approx(case["median_ms"] * 1e6)
        assert latency["lower_value"] <= latency["value"] <= latency["upper_value"]
        assert min(case["samples_ms"]) * 1e6 <= latency["lower_value"]
        assert latency["upper_value"] <= max(case["samples_ms"]) * 1e6
        assert measures["tflops"]["value"] == pytest.approx(case["tflops"])
        assert measures["tflops"]["lower_value"] <= measures["tflops"]["value"] <= measures["tflops"]["upper_value"]
        assert measures["peak-memory"] == {"value": case["peak_bytes"]}
    latency_entries = {entry["name"]: entry for entry in github if entry["unit"] == "ms"}
    assert {name: entry["value"] for name, entry in latency_entries.items()} == {
        test_id: case["median_ms"] for test_id, case in cases.items()
    }
    memory = [entry for entry in github if entry["unit"] == "MiB"]
    assert len(memory) == len(cases)
    # A stored report converts to the very same files.
    assert export_text(report, "bmf") == (out / "bmf.json").read_text()
    assert export_text(report, "github-benchmark") == (out / "github.json").read_text()
    result.stdout.fnmatch_lines(["*attnperf: wrote *bmf.json", "*attnperf: wrote *github.json"])


def test_an_export_path_that_cannot_be_written_stops_the_run_before_it_measures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_exports=TEST)
    (pytester.path / "taken").mkdir()
    result = pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS, "--attnperf-bmf=taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--attnperf-bmf: cannot write taken: it is a folder; give a file name*"])
    result = pytester.runpytest_inprocess(*FAST_OPTIONS, "--attnperf-github-benchmark=x.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--attnperf-github-benchmark needs --attnperf*"])


def test_one_export_holds_one_gpu_model(tmp_path: Path) -> None:
    document = real()
    document["results"][1]["device_slug"] = "nvidia-h100-80gb-hbm3"  # derived: one case moved to another GPU model
    with pytest.raises(ExportError, match=r"several GPU models \(cpu-intel-.*, nvidia-h100-80gb-hbm3\)"):
        bmf_document(document)


def test_attnperf_export_converts_a_stored_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "export", "--format", "bmf", str(REAL))
    assert code == 0
    jsonschema.Draft7Validator(BMF_SCHEMA).validate(json.loads(out))
    target = tmp_path / "deep" / "gh.json"
    code, out, _ = cli(capsys, "export", "--format", "github-benchmark", str(REAL), "-o", str(target))
    assert code == 0
    jsonschema.Draft7Validator(GITHUB_BENCHMARK_SCHEMA).validate(json.loads(target.read_text()))
    study = write(tmp_path, "study.json", {"schema": "attnperf-study/1"})
    code, _, err = cli(capsys, "export", "--format", "bmf", str(study))
    assert code == 2
    assert "not an attnperf JSON report (schema 'attnperf-study/1'; expected an object with schema" in err
    code, _, err = cli(capsys, "export", "--format", "bmf", str(tmp_path / "missing.json"))
    assert (code, err.strip()) == (2, f"attnperf export: {tmp_path / 'missing.json'}: no such file")


# ---------------------------------------------------------------- compare


def test_compare_of_a_report_with_itself(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "compare", str(REAL), str(REAL))
    lines = out.splitlines()
    failing = sum(case["verdict"] in ("REGRESSION", "MISMATCH") for case in real()["results"])
    assert code == (1 if failing else 0)  # HEAD's own gate verdicts decide the exit status
    assert lines[0] == "<!-- attnperf-compare -->"  # the marker a workflow finds its comment by
    verdict = f"**{failing} regression(s)** in HEAD's gate" if failing else "no regression in HEAD's gate"
    assert f"{verdict}; 4 case(s) compared, 0 not compared." in out
    rows = [line for line in lines if line.startswith("| test_forward")]
    assert len(rows) == 4
    assert all("| x1.000 |" in row for row in rows)
    assert "Software changed" not in out


def test_compare_fails_on_heads_regression_and_refuses_what_the_gate_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = passed(real())
    head = copy.deepcopy(base)
    # Derived HEAD: case 0 slower by 20 % and failed by its gate; case 1 on more heads; case 2 on another
    # GPU model; case 3 gone; every case with a newer torch.
    slow, reshaped, moved, _gone = head["results"]
    slow["median_ms"] *= 1.2
    slow["verdicts"]["latency"] = "REGRESSION"
    slow["verdict"], slow["tolerance"] = "REGRESSION", 0.05
    reshaped["shape"]["heads"] = 4
    moved["device_slug"], moved["device"] = "nvidia-h200", "NVIDIA H200"
    head["results"] = [slow, reshaped, moved]
    for case in head["results"]:
        case["environment"]["torch"] = "9.9.9"
    old_torch = base["results"][0]["environment"]["torch"]
    code, out, _ = cli(
        capsys, "compare", str(write(tmp_path, "base.json", base)), str(write(tmp_path, "head.json", head))
    )
    assert code == 1
    assert "**1 regression(s)** in HEAD's gate; 1 case(s) compared, 3 not compared." in out
    assert f"Software changed since BASE: torch {old_torch} -> 9.9.9." in out
    regression = next(line for line in out.splitlines() if line.startswith(f"| {slow['test_id'].split('::')[1]} "))
    assert "| x1.200 |" in regression
    assert "| **REGRESSION** | 5.0 % |" in regression
    assert "another problem: heads 2 -> 4" in out
    assert "measured on cpu-intel-r-xeon-r-processor in BASE, nvidia-h200 in HEAD" in out
    assert "| not in HEAD |" in out


def test_a_comment_too_long_for_github_leaves_out_the_quiet_cases(tmp_path: Path) -> None:
    base = passed(real())
    head = copy.deepcopy(base)
    head["results"][0]["median_ms"] *= 1.2  # derived: one case moved, the others as they were
    base_report = report_from_document(base, tmp_path / "base.json")
    head_report = report_from_document(head, tmp_path / "head.json")
    rows = pair_cases(base_report, head_report)
    whole = markdown(base_report, head_report, rows)
    short = markdown(base_report, head_report, rows, limit=len(whole) - 1)
    assert len(short) < len(whole)
    assert "3 passing case(s) within 3 % of BASE are left out" in short
    assert "| x1.200 |" in short
    assert short.count("| x1.000 |") == 0


def test_compare_refuses_a_file_that_is_not_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    code, out, err = cli(capsys, "compare", str(REAL), str(broken))
    assert (code, out) == (2, "")
    assert f"{broken}: not JSON" in err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("median_ms", "fast", r"measurement field 'median_ms' is \"fast\" \(test '.*'\); expected float \| None"),
        ("median_ms", float("nan"), "'median_ms' is NaN .*every number finite"),
        ("peak_bytes", "4k", "field 'peak_bytes' is \"4k\" .*expected int"),
        ("shape", "big", "identity field 'shape' is \"big\""),
        ("verdicts", ["x"], "decision field 'verdicts' is"),
        ("verdict", 3, "has verdict 3; expected a string or null"),
        ("latency_ratio", float("inf"), "has latency_ratio Infinity; expected a finite number or null"),
        ("record_version", 4, "record of version 4 .*upgrade it"),
    ],
)
def test_every_report_reader_refuses_a_case_of_the_wrong_type_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object, message: str
) -> None:
    document = real()
    document["results"][1][field] = value
    path = write(tmp_path, "edited.json", document)
    for argv in (
        ["export", "--format", "bmf", str(path)],
        ["export", "--format", "github-benchmark", str(path)],
        ["compare", str(REAL), str(path)],
        ["history", str(path)],
        ["merge", "-o", str(tmp_path / "merged.json"), str(path)],
    ):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert re.search(f"{re.escape(str(path))}: .*{message}", err), (argv, err)


def test_a_report_of_a_newer_schema_is_refused_rather_than_misread(tmp_path: Path) -> None:
    for schema in ("attnperf-results/3", "attnperf-results/two"):
        document = {**real(), "schema": schema}
        with pytest.raises(ReportError, match=f"a report of schema '{schema}'; this pytest-attnperf reads "
                           "attnperf-results/1 to attnperf-results/2"):  # fmt: skip
            report_from_document(document, tmp_path / "r.json")


def test_a_damaged_report_in_a_folder_stops_history_rather_than_being_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "run-01.json", real())
    document = real()
    document["device"] = "cpu"
    damaged = write(tmp_path, "run-02.json", document)
    write(tmp_path, "study.json", {"schema": "attnperf-study/1"})  # other JSON is still skipped
    code, _, err = cli(capsys, "history", str(tmp_path))
    assert code == 2
    assert f"{damaged}: its 'device' is \"cpu\"; expected an object (the device record)" in err


# ---------------------------------------------------------------- history


def _creeping_history(folder: Path, runs: int = 8) -> tuple[str, str]:
    """Derived from one real report: case 0 creeps +1 % per run, case 1 wobbles without a trend.

    Written in shuffled file order, each with its run's created_at: history must order by the time.
    """
    wobble = [1.0, 1.02, 0.99, 1.01, 0.98, 1.02, 1.0, 0.99, 1.01, 0.98]
    creeping, wobbling = (case["test_id"] for case in real()["results"][:2])
    names = random.Random(0).sample(range(runs), runs)  # file names in no time order
    for run in range(runs):
        document = passed(real())
        document["created_at"] = at(60 * run)
        document["results"][0]["median_ms"] *= 1.01**run
        document["results"][1]["median_ms"] *= wobble[run]
        write(folder, f"artifact-{names[run]}/attnperf.json", document)
    write(folder, "artifact-0/study/study.json", {"schema": "attnperf-study/1"})  # other JSON of an artifact
    return creeping, wobbling


def test_history_orders_runs_by_time_and_flags_a_steady_creep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creeping, wobbling = _creeping_history(tmp_path)
    (tmp_path / "copy").mkdir()  # the same report downloaded twice counts once: still 8 runs below
    (tmp_path / "copy" / "attnperf.json").write_bytes((tmp_path / "artifact-0" / "attnperf.json").read_bytes())
    code, out, err = cli(capsys, "history", str(tmp_path))
    assert code == 0
    assert "skipped 1 JSON file(s) that are not attnperf reports" in err
    assert "8 run(s), 2026-12-01 00:00 .. 2026-12-01 07:00 UTC" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("test_")}
    creep = rows[creeping.split("::")[1]]
    assert "x1.072" in creep  # 1.01**7, first run to last: the runs are in time order
    assert "+1.00 %/run" in creep
    assert creep.endswith("DRIFT slower")
    assert "all passed" in creep  # every run passed its gate: the drift is what the gate cannot see
    assert rows[wobbling.split("::")[1]].endswith("steady")
    code, out, _ = cli(capsys, "history", "--fail-on-drift", str(tmp_path))
    assert code == 1


def test_history_needs_enough_runs_before_it_tests_for_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _creeping_history(tmp_path, runs=5)
    code, out, _ = cli(capsys, "history", str(tmp_path))
    assert code == 0
    assert "DRIFT" not in out
    assert "(under 6 runs)" in out
    code, out, _ = cli(capsys, "history", "--min-runs=5", "--format=json", str(tmp_path))
    series = json.loads(out)["series"]
    # Five perfectly ordered runs cannot reach p < 0.01 (the exact two-sided p is 2/5! = 0.017): still no flag.
    assert not any(entry["trend"]["drifting"] for entry in series)


def test_history_keeps_each_gpu_model_apart_and_plots_each_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    for run in range(3):
        for slug, name in (("cpu-a", "CPU A"), ("cpu-b", "CPU B")):
            document = real()  # derived: the same real report relabelled as two machines' runs
            document["created_at"] = at(run)
            for case in document["results"]:
                case["device_slug"], case["device"] = slug, name
            write(tmp_path / "reports", f"{slug}-{run}.json", document)
    code, out, _ = cli(capsys, "history", str(tmp_path / "reports"), "--plot-dir", str(tmp_path / "plots"))
    assert code == 0
    assert "CPU A (cpu-a): 3 run(s)" in out
    assert "CPU B (cpu-b): 3 run(s)" in out
    plots = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert plots == ["cpu-a--test_forward.png", "cpu-b--test_forward.png"]
    assert all((tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in plots)


def test_history_refuses_a_report_without_its_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = real()
    del document["created_at"]  # as reports of earlier versions are
    path = write(tmp_path, "old.json", document)
    code, _, err = cli(capsys, "history", str(path))
    assert code == 2
    assert f"{path}: has no created_at time" in err
    with pytest.raises(ReportError, match="no such file or folder"):
        find_reports([tmp_path / "nowhere"])
    write(tmp_path, "artifact/study.json", {"schema": "attnperf-study/1"})
    code, _, err = cli(capsys, "history", str(tmp_path / "artifact"))
    assert code == 2
    assert "found no JSON report written by --attnperf-json under" in err
    assert "(1 other JSON file(s) skipped)" in err


def test_the_drift_rule() -> None:
    rule = DriftRule()
    steady_creep = [1.0 * 1.01**run for run in range(8)]
    found = trend(steady_creep, rule)
    assert found is not None
    assert found.drifting
    assert found.step == pytest.approx(0.01)
    # One wild run does not hide a creep (rank-based tests, a median of slopes)...
    outlier = [*steady_creep[:4], steady_creep[4] * 3, *steady_creep[5:]]
    found = trend(outlier, rule)
    assert found is not None
    assert found.drifting
    # ...a creep below the minimum effect is not flagged, however regular...
    tiny = trend([1.0 * 1.002**run for run in range(8)], rule)
    assert tiny is not None
    assert not tiny.drifting
    # ...nor are too few runs, nor a flat series.
    assert trend(steady_creep[:5], rule) is None
    flat = trend([2.0] * 8, rule)
    assert flat is not None
    assert not flat.drifting


def test_history_of_the_committed_real_runs() -> None:
    reports, skipped = find_reports([DATA])
    assert (len(reports), skipped) == (2, [])
    series = build_series(reports)
    assert len(series) == 4
    assert all(len(entry.points) == 2 for entry in series)
    assert all(entry.points[0].at < entry.points[1].at for entry in series)
    text = "\n".join(history_text(series, DriftRule()))
    assert "(under 6 runs)" in text


# ---------------------------------------------------------------- merge


def _other_runner(document: dict[str, Any]) -> dict[str, Any]:
    """Derived: the same real report as a second runner's, on another GPU model."""
    other = copy.deepcopy(document)
    for case in other["results"]:
        case["device_slug"], case["device"] = "nvidia-h200", "NVIDIA H200"
        case["device_info"] = {**case["device_info"], "slug": "nvidia-h200", "name": "NVIDIA H200"}
    return other


def test_merge_puts_each_case_under_its_gpu_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = write(tmp_path, "h200.json", _other_runner(real()))
    merged = tmp_path / "merged.json"
    code, out, _ = cli(capsys, "merge", str(REAL), str(second), "-o", str(merged))
    assert code == 0
    assert "NVIDIA H200 (nvidia-h200): 4 case(s)" in out
    document = json.loads(merged.read_text())
    assert set(document["devices"]) == {"cpu-intel-r-xeon-r-processor", "nvidia-h200"}
    assert len(document["results"]) == 8
    assert document["device"]["name"] == "Intel(R) Xeon(R) Processor + NVIDIA H200"
    report_from_document(document, merged)  # an ordinary report: compare and history read it
    code, out, _ = cli(capsys, "compare", str(merged), str(merged))
    assert "8 case(s) compared, 0 not compared" in out
    with pytest.raises(ExportError, match="several GPU models"):
        bmf_document(document)


def test_merge_refuses_what_is_not_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MergeError, match="is in both"):
        merge_reports([load_report(REAL), load_report(REAL)])
    other = _other_runner(real())
    other["commit"] = "0" * 40  # derived: another commit, so another run
    first = real()
    first["commit"] = "1" * 40
    code, _, err = cli(
        capsys,
        "merge",
        str(write(tmp_path, "a.json", first)),
        str(write(tmp_path, "b.json", other)),
        "-o",
        str(tmp_path / "m.json"),
    )
    assert code == 2
    assert "measured different commits, so they are not one run" in err
    assert not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------- no torch


def test_the_report_commands_import_no_torch(tmp_path: Path) -> None:
    """CI posts the comment from a small runner: the commands must work without torch loaded."""
    script = f"""
import sys
from pytest_attnperf.cli import main
codes = [
    main(["compare", {str(REAL)!r}, {str(REAL)!r}]) in (0, 1),
    main(["export", "--format", "bmf", {str(REAL)!r}]),
    main(["history", {str(DATA)!r}]),
    main(["merge", {str(REAL)!r}, "-o", {str(tmp_path / "m.json")!r}]),
]
assert codes == [True, 0, 0, 0], codes  # compare: 0, or 1 when the real run failed its gate
assert "torch" not in sys.modules, "torch imported"
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
