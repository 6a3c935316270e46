"""Per-GPU baseline files: schema validation, merge, locked atomic writes, and updates through pytest."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import pytest
import torch
from fast_run import CPU, FAST_OPTIONS
from hypothesis import given
from hypothesis import strategies as st

from pytest_attnperf.gate.baselines import (
    HEADER,
    BaselineEntry,
    BaselineFile,
    BaselineFileError,
    baseline_path,
    load_baseline,
    merge_entries,
    parse_baseline_text,
    read_baseline_text,
    round_significant,
    write_atomic,
)

FAST = ("--attnperf", *FAST_OPTIONS)
DEVICE = {"name": "NVIDIA H100 80GB HBM3", "slug": "nvidia-h100-80gb-hbm3"}
GOOD_ENTRY = """\
    mode: forward
    fits: true
    latency_ms: {median: 1.5, samples: 20}
    peak_bytes: 4096
"""


def entry(median_ms: float | None = 1.5, peak_bytes: int | None = 4096, backend: str = "flash-attn") -> BaselineEntry:
    return BaselineEntry(
        backend=backend,
        shape={"heads": 32, "window": [-1, -1]},
        mode="forward",
        latency_ms={"median": median_ms, "samples": 20} if median_ms is not None else None,
        peak_bytes=peak_bytes,
        fits=median_ms is not None,
        recorded_at="2026-01-01T00:00:00Z",
        environment={"torch": "2.11.0", "flash_attn": None},
    )


def document(entries: str = "", *, top: str = "schema_version: 1\ndevice: {name: H100}\n") -> str:
    return top + "entries:\n" + entries if entries else top + "entries: {}\n"


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize("slug", ["../etc/passwd", "a/b", "a\\b", "..", ".", ".hidden", "", "x\0y"])
def test_baseline_path_refuses_names_that_leave_the_folder(tmp_path: Path, slug: str) -> None:
    with pytest.raises(ValueError, match="it must be a plain file name"):
        baseline_path(tmp_path, slug)


def test_baseline_path_of_a_plain_slug(tmp_path: Path) -> None:
    assert baseline_path(tmp_path, "nvidia-h100-80gb-hbm3") == tmp_path / "nvidia-h100-80gb-hbm3.yaml"
    assert baseline_path(tmp_path, CPU.slug).parent == tmp_path


# ---------------------------------------------------------------- reading and validation


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    original = BaselineFile(
        path,
        dict(DEVICE),
        {"torch": "2.11.0", "recorded_at": "2026-01-01T00:00:00Z"},
        {
            "t.py::test_b[flash-attn-4K]": entry(),
            "t.py::test_a[eager-32K]": entry(median_ms=None, peak_bytes=None, backend="eager"),
        },
    )
    text = original.to_text()
    assert text.startswith(HEADER)
    assert text.index("test_a[eager-32K]") < text.index("test_b[flash-attn-4K]")  # sorted: stable diffs
    parsed = parse_baseline_text(text, path)
    assert parsed == original


# Characters node ids and device names are made of (control characters such as U+0085 are YAML line breaks).
PRINTABLE = st.characters(categories=("L", "N", "P", "S", "Zs"))
TEST_IDS = st.text(PRINTABLE, min_size=1, max_size=40)
MEDIANS = st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(entries=st.dictionaries(TEST_IDS, MEDIANS, min_size=1, max_size=5), device_name=st.text(PRINTABLE, max_size=20))
def test_any_test_id_and_median_round_trip(entries: dict[str, float], device_name: str) -> None:
    path = Path("gpu.yaml")
    original = BaselineFile(
        path,
        {"name": device_name},
        {},
        {test_id: entry(median_ms=median) for test_id, median in entries.items()},
    )
    assert parse_baseline_text(original.to_text(), path) == original


def test_to_text_keeps_only_the_known_latency_keys_in_order(tmp_path: Path) -> None:
    noisy = BaselineEntry(
        backend="eager",
        shape=None,
        mode="forward",
        latency_ms={"samples": 3, "median": 2.0, "p99": 9.0},
        peak_bytes=0,
        fits=True,
        recorded_at="",
        environment={},
    )
    assert noisy.as_yaml()["latency_ms"] == {"median": 2.0, "samples": 3}
    assert noisy.median_ms == 2.0


def test_parse_accepts_null_entries_and_no_environment(tmp_path: Path) -> None:
    parsed = parse_baseline_text("schema_version: 1\ndevice: {name: H100}\nentries:\n", tmp_path / "x.yaml")
    assert parsed.entries == {}
    assert parsed.environment == {}


BAD_FILES = [
    pytest.param("schema_version: 1\ndevice: {name: x}\nentries:\n  a: [\n", 5, "not valid YAML", id="malformed"),
    pytest.param("schema_version: 1\n\tdevice: x\n", 2, "not valid YAML: found a tab character", id="tab"),
    pytest.param(
        "", None, "the file is empty; expected a mapping with schema_version, device, environment, entries", id="empty"
    ),
    pytest.param("# only a comment\n", None, "the file is empty", id="only-comments"),
    pytest.param("- 1\n", 1, "expected a baseline document (a mapping), found list", id="list"),
    pytest.param(
        document().replace("schema_version: 1", "schema_version: 0"),
        1,
        "at 'schema_version': expected schema_version: 1 or 2, found 0",
        id="schema-0",
    ),
    pytest.param(
        document().replace("schema_version: 1", "schema_version: '1'"),
        1,
        "expected schema_version: 1 or 2, found '1'",
        id="schema-string",
    ),
    pytest.param("device: {name: x}\nentries: {}\n", 1, "expected schema_version: 1 or 2, found None", id="no-schema"),
    pytest.param(
        document().replace("schema_version: 1", "schema_version: 3"),
        1,
        "schema version 3 was written by a newer pytest-attnperf; this one reads versions 1, 2: upgrade pytest-attnperf",
        id="future-schema",
    ),
    pytest.param(
        document() + "extra: 1\n",
        4,
        "at 'extra': unknown key 'extra'; expected only: schema_version, device, environment, entries",
        id="unknown-top-key",
    ),
    pytest.param(
        "schema_version: 1\ndevice: {name: x}\n",
        1,
        "missing key 'entries' (required: schema_version, device, entries)",
        id="missing-entries",
    ),
    pytest.param(
        "schema_version: 1\ndevice: {}\nentries: {}\n",
        2,
        "at 'device.name': expected a string, found None",
        id="no-device-name",
    ),
    pytest.param(
        "schema_version: 1\ndevice: {name: x}\nentries: []\n",
        3,
        "at 'entries': expected the entries (a mapping), found list",
        id="entries-list",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("median: 1.5", "median: -1.0")),
        7,
        "at 'entries.t::a.latency_ms.median': expected a finite positive number, found -1.0",
        id="negative-median",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("median: 1.5", "median: .nan")),
        7,
        "expected a finite positive number, found nan",
        id="nan-median",
    ),
    # An integer beyond a float used to crash the reader (OverflowError, an INTERNALERROR through pytest).
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("median: 1.5", "median: 1" + "0" * 400)),
        7,
        "at 'entries.t::a.latency_ms.median': expected a number a float can hold, found an integer of 401 digits",
        id="huge-median",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("peak_bytes: 4096", "peak_bytes: 1" + "0" * 400)),
        8,
        "at 'entries.t::a.peak_bytes': expected an integer a float can hold, found an integer of 401 digits",
        id="huge-peak",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("samples: 20", "samples: 1" + "0" * 400)),
        7,
        "expected an integer a float can hold, found an integer of 401 digits",
        id="huge-samples",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("median: 1.5", "median: 0")),
        7,
        "expected a finite positive number, found 0",
        id="zero-median",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("median: 1.5", "median: '1.5'")),
        7,
        "at 'entries.t::a.latency_ms.median': expected a number, found '1.5'",
        id="string-median",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("samples: 20", "samples: 2.5")),
        7,
        "at 'entries.t::a.latency_ms.samples': expected an integer, found 2.5",
        id="float-samples",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("latency_ms: {", "latency_ms: {p99: 3, ")),
        7,
        "unknown key 'p99'; expected only: median, iqr, mean, stdev, min, max, samples",
        id="unknown-stat",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("peak_bytes: 4096", "peak_bytes: -1")),
        8,
        "at 'entries.t::a.peak_bytes': expected a finite non-negative integer, found -1",
        id="negative-peak",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("peak_bytes: 4096", "peak_bytes: 4.5")),
        8,
        "at 'entries.t::a.peak_bytes': expected an integer, found 4.5",
        id="float-peak",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("fits: true", "fits: 'yes'")),
        6,
        "at 'entries.t::a.fits': expected true or false, found 'yes'",
        id="string-fits",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("mode: forward", "mode: sideways")),
        5,
        "at 'entries.t::a.mode': expected one of forward, backward, forward+backward, found 'sideways'",
        id="bad-mode",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY + "    colour: red\n"),
        9,
        "at 'entries.t::a.colour': unknown key 'colour'; expected only: backend, mode, shape, fits, "
        "latency_ms, peak_bytes, recorded_at, environment",
        id="unknown-entry-key",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("    fits: true\n", "")),
        4,
        "at 'entries.t::a': missing key 'fits' (required: mode, fits, latency_ms, peak_bytes)",
        id="missing-entry-key",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY + "    backend: 7\n"),
        9,
        "at 'entries.t::a.backend': expected a string, found 7",
        id="numeric-backend",
    ),
    pytest.param(
        document("  t::a: 3\n"),
        4,
        "at 'entries.t::a': expected the entry of t::a (a mapping), found int",
        id="scalar-entry",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("samples: 20", "samples: 20, quantiles: []")),
        7,
        "at 'entries.t::a.latency_ms.quantiles': expected a list of numbers, found []",
        id="empty-quantiles",
    ),
    pytest.param(
        document("  t::a:\n" + GOOD_ENTRY.replace("samples: 20", "samples: 20, quantiles: [1.0, -2.0]")),
        7,
        "at 'entries.t::a.latency_ms.quantiles': expected a finite positive number, found -2.0",
        id="negative-quantile",
    ),
]


@pytest.mark.parametrize(("text", "line", "problem"), BAD_FILES)
def test_bad_files_name_file_line_key_and_expectation(
    tmp_path: Path, text: str, line: int | None, problem: str
) -> None:
    path = tmp_path / "nvidia-h100.yaml"
    with pytest.raises(BaselineFileError, match=re.escape(problem)) as error:
        parse_baseline_text(text, path)
    location = f"baseline file {path}" + (f":{line}" if line else "")
    assert str(error.value).startswith(location + (":" if line is None else ""))
    assert error.value.path == path
    assert error.value.line == line


@pytest.mark.parametrize("version", ["true", "1.0"])
def test_schema_version_must_be_the_integer_1(tmp_path: Path, version: str) -> None:
    with pytest.raises(BaselineFileError, match="schema_version"):
        parse_baseline_text(document().replace("schema_version: 1", f"schema_version: {version}"), tmp_path / "x.yaml")


def test_a_test_listed_twice_is_refused(tmp_path: Path) -> None:
    text = document("  t::a:\n" + GOOD_ENTRY + "  t::a:\n" + GOOD_ENTRY.replace("median: 1.5", "median: 9.0"))
    with pytest.raises(BaselineFileError, match="t::a"):
        parse_baseline_text(text, tmp_path / "x.yaml")


def test_python_tags_are_refused_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f'schema_version: 1\ndevice: {{name: x}}\nentries: !!python/object/apply:os.system ["touch {marker}"]\n'
    refused = re.escape("not valid YAML: could not determine a constructor for the tag")
    with pytest.raises(BaselineFileError, match=refused) as error:
        parse_baseline_text(text, tmp_path / "x.yaml")
    assert error.value.line == 3
    assert not marker.exists()


def test_non_utf8_file_is_named_with_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"schema_version: 1\ndevice: {name: caf\xe9}\nentries: {}\n")
    with pytest.raises(BaselineFileError) as error:
        read_baseline_text(path)
    assert str(error.value) == f"baseline file {path}:2: is not UTF-8 text (byte 36: b'\\xe9')"
    with pytest.raises(BaselineFileError):
        load_baseline(path)


def test_a_missing_file_is_none_not_an_error(tmp_path: Path) -> None:
    assert read_baseline_text(tmp_path / "absent.yaml") is None
    assert load_baseline(tmp_path / "absent.yaml") is None


# ---------------------------------------------------------------- writing


def test_write_atomic_creates_a_readable_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "gpu.yaml"
    write_atomic(path, "hello\n")
    assert path.read_text(encoding="utf-8") == "hello\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["gpu.yaml"]


def test_write_atomic_keeps_the_permissions_of_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    path.write_text("old\n", encoding="utf-8")
    path.chmod(0o600)
    write_atomic(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_write_atomic_failure_leaves_the_old_bytes_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "gpu.yaml"
    path.write_bytes(b"old bytes\n")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError, match="No space left on device"):
        write_atomic(path, "new text\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old bytes\n"
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.yaml"]


def test_merge_keeps_other_entries_and_reports_old_and_new(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    assert merge_entries(path, DEVICE, {"torch": "2.10"}, {"t::kept": entry(1.0), "t::changed": entry(2.0)})
    changes = merge_entries(path, DEVICE, {"torch": "2.11"}, {"t::changed": entry(3.0), "t::added": entry(4.0)})
    assert [(c.test_id, c.old.median_ms if c.old else None, c.new.median_ms) for c in changes] == [
        ("t::added", None, 4.0),
        ("t::changed", 2.0, 3.0),
    ]
    merged = load_baseline(path)
    assert merged is not None
    assert {test_id: e.median_ms for test_id, e in merged.entries.items()} == {
        "t::added": 4.0,
        "t::changed": 3.0,
        "t::kept": 1.0,
    }
    assert merged.entries["t::kept"] == entry(1.0)
    assert merged.environment == {"torch": "2.11"}
    assert merged.device == DEVICE


def test_merge_into_a_bad_file_raises_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    bad = b"schema_version: 1\ndevice: {name: x}\nentries:\n  a: [\n"
    path.write_bytes(bad)
    with pytest.raises(BaselineFileError, match="not valid YAML"):
        merge_entries(path, DEVICE, {}, {"t::a": entry()})
    assert path.read_bytes() == bad
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_merges_lose_no_entries(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    errors: list[BaseException] = []

    def merge(index: int) -> None:
        try:
            merge_entries(path, DEVICE, {}, {f"t::test_{index}": entry(float(index + 1))})
        except BaseException as error:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=merge, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    merged = load_baseline(path)
    assert merged is not None
    assert sorted(merged.entries) == sorted(f"t::test_{index}" for index in range(8))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.04381234, 0.04381), (123456.0, 123500.0), (1.0, 1.0), (0.0, 0.0), (-2.71828, -2.718)],
)
def test_round_significant(value: float, expected: float) -> None:
    assert round_significant(value) == expected


# ---------------------------------------------------------------- through pytest


GATED_TEST = """
    import pytest

    @pytest.mark.attnperf_latency()
    @pytest.mark.attnperf_memory()
    def test_gate(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""
TEST_ID = "test_gate.py::test_gate[eager-64]"


def test_update_writes_merges_and_reports_old_to_new(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=GATED_TEST)
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    unrelated = entry(7.0)
    merge_entries(path, {"name": CPU.name, "slug": CPU.slug}, {}, {"other.py::test_other[flash-attn-1K]": unrelated})

    first = pytester.runpytest_inprocess(*FAST, "--attnperf-update")
    first.assert_outcomes(passed=1)
    first.stdout.re_match_lines(
        [
            r".*attnperf: baseline update.*",
            r"test_gate\[eager-64\]: median [0-9.]+ (us|ms) \(new\), peak - -> [0-9.]+ (B|KiB|MiB)$",
            rf"wrote 1 entries to {re.escape(str(path.parent))}$",
        ]
    )
    written = load_baseline(path)
    assert written is not None
    assert set(written.entries) == {"other.py::test_other[flash-attn-1K]", TEST_ID}
    assert written.entries["other.py::test_other[flash-attn-1K]"] == unrelated
    recorded = written.entries[TEST_ID]
    assert (recorded.backend, recorded.mode, recorded.fits) == ("eager", "forward", True)
    assert recorded.median_ms is not None
    assert recorded.median_ms > 0
    assert recorded.shape is not None
    assert (recorded.shape["q_len"], recorded.shape["heads"], recorded.shape["head_dim"]) == (64, 2, 16)
    # One run: its median is the centre, no spread yet; the settings and the plugin that measured are recorded.
    assert (recorded.runs, recorded.run_medians_ms, recorded.spread) == (1, (recorded.median_ms,), None)
    assert recorded.timing is not None
    assert recorded.timing["rep_ms"] == 5.0
    assert recorded.timing["clock_source"] == "none"
    assert recorded.plugin_version is not None
    assert written.version == 2
    assert written.device["name"] == CPU.name
    assert written.environment["torch"] == torch.__version__
    assert written.environment["command"] == "pytest --attnperf --attnperf-update"

    second = pytester.runpytest_inprocess(*FAST, "--attnperf-update")
    second.assert_outcomes(passed=1)
    second.stdout.re_match_lines(
        [
            r"test_gate\[eager-64\]: median [0-9.]+ (us|ms) -> [0-9.]+ (us|ms) \(x[0-9]+\.[0-9]{3}\), "
            r"peak [0-9.]+ (B|KiB|MiB) -> [0-9.]+ (B|KiB|MiB)$",
        ]
    )
    again = load_baseline(path)
    assert again is not None
    assert again.entries["other.py::test_other[flash-attn-1K]"] == unrelated


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [("fail", {"failed": 1}), ("skip", {"skipped": 1}), ("warn", {"passed": 1})],
)
def test_missing_baseline_policy(pytester: pytest.Pytester, policy: str, outcome: dict[str, int]) -> None:
    pytester.makepyfile(test_gate=GATED_TEST)
    result = pytester.runpytest_inprocess(*FAST, f"--attnperf-missing={policy}", "-rs")
    result.assert_outcomes(**outcome)
    output = result.stdout.str()
    where = f"on {CPU.name} in baselines/{CPU.slug}.yaml; record one with `attnperf update`"
    if policy == "fail":
        assert f"no latency baseline for {TEST_ID} {where}" in output
        assert f"no memory baseline for {TEST_ID}" in output
    elif policy == "skip":
        result.stdout.re_match_lines([rf"SKIPPED \[1\] .*: no (latency|memory) baseline for {re.escape(TEST_ID)} "])
    else:
        result.stdout.fnmatch_lines(
            [
                "test_gate[[]eager-64[]]*no baseline",
                f"1 case(s) have no baseline in baselines/{CPU.slug}.yaml: record them with `attnperf update` "
                "(policy: --attnperf-missing=warn)",
            ]
        )


def test_a_bad_baseline_file_stops_the_run_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=GATED_TEST)
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    path.parent.mkdir()
    path.write_text("schema_version: 1\ndevice: {name: x}\nentries:\n  a: [\n", encoding="utf-8")
    result = pytester.runpytest_inprocess(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"baseline file {path}:5: not valid YAML" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
