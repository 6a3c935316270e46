"""Every --attnperf-* option and attnperf_* ini key: command line > ini > default; bad values are usage errors."""

from __future__ import annotations

import argparse
import operator
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from fast_run import FAST_OPTIONS

from pytest_attnperf.session.state import session_of
from pytest_attnperf.spec.marks import MARKER_HELP, MARKER_USAGE
from pytest_attnperf.spec.options import (
    CPU_SEQLENS,
    GPU_SEQLENS,
    OPTIONS,
    OPTIONS_BY_DEST,
    add_argparse_options,
    to_command_line,
)
from pytest_attnperf.spec.settings import Settings, SettingsError, resolve_settings

# (option name, command-line value, its parsed value, ini value, its parsed value, default, where in Settings)
SETTINGS_TABLE: list[tuple[str, str, Any, str, Any, Any, str]] = [
    ("backends", "eager", ("eager",), "sdpa-math, eager", ("sdpa-math", "eager"), None, "backends"),
    ("seqlens", "64", (64,), "1K,2K", (1024, 2048), None, "seqlens"),
    ("device", "cpu", "cpu", "cuda:1", "cuda:1", "auto", "device"),
    ("batch", "2", 2, "3", 3, None, "batch"),
    ("heads", "4", 4, "8", 8, None, "heads"),
    ("kv-heads", "2", 2, "4", 4, None, "kv_heads"),
    ("head-dim", "16", 16, "32", 32, None, "head_dim"),
    ("dtype", "bf16", "bfloat16", "float16", "float16", None, "dtype"),
    ("causal", "yes", True, "false", False, True, "causal"),
    ("seed", "7", 7, "3", 3, 0, "seed"),
    ("mode", "backward", "backward", "forward+backward", "forward+backward", "forward", "mode"),
    ("workloads", "decode,paged", ("decode", "paged"), "Varlen, chunked", ("varlen", "chunked"), None, "workloads"),
    ("q-len", "4", 4, "2", 2, None, "q_len"),
    ("page-size", "256", 256, "16", 16, None, "page_size"),
    ("missing", "fail", "fail", "skip", "skip", "warn", "missing"),
    ("guard", "off", "off", "refuse", "refuse", "warn", "guard"),
    ("latency-tolerance", "20%", 0.2, "0.3", 0.3, None, "latency_tolerance"),
    ("memory-tolerance", "1%", 0.01, "0.02", 0.02, 0.05, "memory_tolerance"),
    ("warmup", "5 ms", 5.0, "250 us", 0.25, 1000.0, "timing.warmup_ms"),
    ("rep", "1 s", 1000.0, "50", 50.0, 100.0, "timing.rep_ms"),
    ("min-samples", "3", 3, "4", 4, 10, "timing.min_samples"),
    ("cuda-graph", "false", False, "on", True, False, "timing.cuda_graph"),
    ("fingerprint", "fail", "fail", "off", "off", "warn", "fingerprint"),
    ("power", "on", "on", "off", "off", "auto", "power"),
    ("machine-reference", "periodic", "periodic", "adjacent", "adjacent", "periodic", "machine_reference"),
]
INI_KEYS = [option.dest for option in OPTIONS if option.ini]


def _settings(pytester: pytest.Pytester, *args: str, ini: dict[str, str] | None = None) -> Settings:
    if ini:
        pytester.makeini("[pytest]\n" + "".join(f"{key} = {value}\n" for key, value in ini.items()))
    return session_of(pytester.parseconfigure(*args)).settings


def _value(settings: Settings, where: str) -> Any:
    return operator.attrgetter(where)(settings)


def test_the_table_covers_every_option_with_an_ini_key() -> None:
    # Paths resolve against the folder they were given from: tested on their own (the exports in test_runs.py).
    paths = {"attnperf_baselines", "attnperf_bmf", "attnperf_github_benchmark", "attnperf_cache_dir"}
    covered = {_dest(name) for name, *_ in SETTINGS_TABLE} | paths | {"attnperf_allow_busy_cpu"}
    assert covered == set(INI_KEYS)
    assert {option.name for option in OPTIONS if not option.ini} == {
        "update",
        "calibrate",
        "json",
        "markdown",
        "report",
    }


def test_allow_busy_cpu_is_a_flag_with_an_ini_key(pytester: pytest.Pytester) -> None:
    assert _settings(pytester).allow_busy_cpu is False
    assert _settings(pytester, "--attnperf-allow-busy-cpu").allow_busy_cpu is True
    assert _settings(pytester, ini={"attnperf_allow_busy_cpu": "true"}).allow_busy_cpu is True


def _all(settings: Settings) -> dict[str, Any]:
    return {name: _value(settings, where) for name, *_, where in SETTINGS_TABLE}


def _dest(name: str) -> str:
    return "attnperf_" + name.replace("-", "_")


# One pytest config per layer (each costs a second of garbage collection at teardown); the dict
# comparison still names every option whose layer did not take effect.
def test_defaults(pytester: pytest.Pytester) -> None:
    assert _all(_settings(pytester)) == {name: default for name, *_, default, _where in SETTINGS_TABLE}


def test_ini_beats_default(pytester: pytest.Pytester) -> None:
    settings = _settings(pytester, ini={_dest(name): ini for name, _cli, _cli_value, ini, *_ in SETTINGS_TABLE})
    assert _all(settings) == {name: ini_value for name, _c, _cv, _i, ini_value, *_ in SETTINGS_TABLE}


def test_command_line_beats_ini(pytester: pytest.Pytester) -> None:
    settings = _settings(
        pytester,
        *(f"--attnperf-{name}={cli}" for name, cli, *_ in SETTINGS_TABLE),
        ini={_dest(name): ini for name, _cli, _cli_value, ini, *_ in SETTINGS_TABLE},
    )
    assert _all(settings) == {name: cli_value for name, _cli, cli_value, *_ in SETTINGS_TABLE}


def test_each_default_is_the_one_its_option_carries() -> None:
    """One source: resolve_settings (and the `attnperf` command through it) takes every default from its Option."""
    for name, *_, default, _where in SETTINGS_TABLE:
        carried = OPTIONS_BY_DEST[_dest(name)].default
        assert (None if name == "latency-tolerance" and carried == "auto" else carried) == default, name
    assert OPTIONS_BY_DEST["attnperf_baselines"].default == "baselines"  # under the rootdir


def test_a_default_the_help_names_is_the_one_the_option_carries() -> None:
    """'(default warn)', '(true/false, default true)': the help's word for a plain default must match it."""
    named = 0
    for option in OPTIONS:
        words = re.findall(r"default:? ([\w.]+)\)", option.help)
        if words and isinstance(option.default, (str, bool, int)):
            assert words[0] == str(option.default).lower(), option.flag
            named += 1
    assert named >= 8


def test_each_layer_differs_so_the_tests_above_can_tell_them_apart() -> None:
    for name, _cli, cli_value, _ini, ini_value, default, _where in SETTINGS_TABLE:
        assert cli_value != ini_value, name
        assert ini_value != default, name


def test_baselines_folder_default_ini_and_absolute(pytester: pytest.Pytester) -> None:
    assert _settings(pytester).baselines_dir == pytester.path / "baselines"
    assert _settings(pytester, ini={"attnperf_baselines": "ci/perf"}).baselines_dir == pytester.path / "ci" / "perf"
    absolute = pytester.path / "elsewhere"
    settings = _settings(pytester, f"--attnperf-baselines={absolute}", ini={"attnperf_baselines": "ci/perf"})
    assert settings.baselines_dir == absolute


def test_relative_paths_are_taken_from_the_current_folder_or_the_ini_files(tmp_path: Path) -> None:
    # Run from project/tests with rootdir project: a command-line path is the user's (as --basetemp and
    # --junitxml are), an ini path the ini file's. It used to be the rootdir's, so `--attnperf-baselines=../b`
    # from tests/ pointed outside the project and the update wrote there.
    project, here = tmp_path / "project", tmp_path / "project" / "tests"
    ini = project / "config" / "pytest.ini"
    cli = {"attnperf": True, "attnperf_baselines": "../b", "attnperf_json": "r.json", "attnperf_report": "study"}
    settings = resolve_settings(cli, {}, rootdir=project, inifile=ini, invocation_dir=here)
    assert settings.baselines_dir == project / "b"
    assert (settings.json_path, settings.report_dir) == (here / "r.json", here / "study")
    from_ini = resolve_settings(
        {}, {"attnperf_baselines": "../perf"}, rootdir=project, inifile=ini, invocation_dir=here
    )
    assert from_ini.baselines_dir == project / "perf"
    assert (
        resolve_settings({}, {}, rootdir=project, inifile=ini, invocation_dir=here).baselines_dir
        == project / "baselines"
    )


def test_a_relative_baselines_folder_is_the_users_when_run_from_a_subfolder(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(sub)
        settings = session_of(pytester.parseconfigure("--attnperf-baselines=../x")).settings
    assert settings.baselines_dir == pytester.path / "x"


def test_an_empty_ini_value_means_the_default(pytester: pytest.Pytester) -> None:
    settings = _settings(pytester, ini={"attnperf_seqlens": "", "attnperf_missing": ""})
    assert settings.seqlens is None
    assert settings.missing == "warn"


def test_flags_without_ini_keys(pytester: pytest.Pytester) -> None:
    off = _settings(pytester)
    assert (off.enabled, off.update, off.json_path, off.markdown_path, off.report_dir) == (
        False,
        False,
        None,
        None,
        None,
    )
    on = _settings(
        pytester,
        "--attnperf",
        "--attnperf-update",
        "--attnperf-json=out/r.json",
        "--attnperf-markdown=s.md",
        "--attnperf-report=study",
    )
    assert (on.enabled, on.update) == (True, True)
    # Absolute from the start, as pytest's --junitxml: a test that changes the working folder cannot move them.
    here = pytester.path
    assert (on.json_path, on.markdown_path, on.report_dir) == (here / "out" / "r.json", here / "s.md", here / "study")


def test_seqlens_and_shape_defaults_per_device(pytester: pytest.Pytester) -> None:
    settings = _settings(pytester)
    assert settings.seqlens_for(is_cuda=False) == CPU_SEQLENS
    assert settings.seqlens_for(is_cuda=True) == GPU_SEQLENS
    assert settings.shape_defaults(is_cuda=False) == {
        "batch": 1,
        "heads": 8,
        "kv_heads": 8,
        "head_dim": 64,
        "dtype": "float32",
        "causal": True,
        "page_size": 16,
    }
    custom = _settings(pytester, "--attnperf-heads=4", "--attnperf-kv-heads=2", "--attnperf-dtype=fp16")
    assert custom.shape_defaults(is_cuda=True) == {
        "batch": 1,
        "heads": 4,
        "kv_heads": 2,
        "head_dim": 128,
        "dtype": "float16",
        "causal": True,
        "page_size": 256,  # flash-attn 2's rule: the one page size every GPU backend takes
    }
    inference = _settings(pytester, "--attnperf-q-len=4", "--attnperf-page-size=64")
    assert inference.shape_defaults(is_cuda=True)["q_len"] == 4
    assert inference.shape_defaults(is_cuda=True)["page_size"] == 64


def test_min_samples_raises_the_sample_ceiling_too(pytester: pytest.Pytester) -> None:
    assert _settings(pytester, "--attnperf-min-samples=800").timing.max_samples == 800


# ---------------------------------------------------------------- bad values


BAD_VALUES = [
    ("seqlens", "0", "context length '0' must be at least 1"),
    ("seqlens", "abc", "context length 'abc' is not a positive integer (e.g. 4096 or 4K)"),
    ("missing", "maybe", "missing-baseline policy 'maybe' is not one of: fail, skip, warn"),
    ("guard", "sometimes", "guard 'sometimes' is not one of: warn, refuse, off"),
    ("power", "always", "power window 'always' is not one of: auto, on, off"),
    ("latency-tolerance", "2000%", "tolerance '2000%' is out of range; expected a fraction such as 0.1"),
    ("memory-tolerance", "lots", "cannot read 'lots' as a tolerance"),
    ("mode", "sideways", "mode 'sideways' is not one of: forward, backward, forward+backward"),
    ("dtype", "float64", "unsupported dtype 'float64'; expected one of float16, bfloat16, float32"),
    ("causal", "maybe", "'maybe' is not a boolean; expected true/false, yes/no, on/off or 1/0"),
    ("seed", "-1", "seed '-1' must be a non-negative integer"),
    ("warmup", "0 ms", "duration '0 ms' must be positive and finite"),
    ("rep", "a while", "cannot read 'a while' as a duration"),
    ("min-samples", "0", "min-samples '0' must be at least 1"),
    ("heads", "many", "heads 'many' is not a positive integer"),
    ("workloads", "decode,decoding", "workload 'decoding' is not one of prefill, decode, paged, varlen, chunked"),
    ("page-size", "0", "page-size '0' must be at least 1"),
    # An empty list (an unset CI variable) used to skip every test and exit 0.
    ("backends", ",", "the list ',' names no backend; expected e.g. 'sdpa-flash,flash-attn'"),
    ("baselines", "a\0b", "the baselines folder name 'a\\x00b' holds a NUL byte, which no path can"),
]


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES)
def test_bad_command_line_value_is_a_usage_error_naming_the_option(
    pytester: pytest.Pytester, name: str, value: str, problem: str
) -> None:
    result = pytester.runpytest_inprocess(f"--attnperf-{name}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert f"error: argument --attnperf-{name}: {problem}" in error
    assert "Traceback" not in error
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES)
def test_bad_ini_value_is_a_usage_error_naming_the_key_and_file(
    pytester: pytest.Pytester, name: str, value: str, problem: str
) -> None:
    dest = _dest(name)
    inifile = pytester.makeini(f"[pytest]\n{dest} = {value}\n")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: ini key {dest} in {inifile}: {problem}" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("backends", "the list '' names no backend; expected e.g. 'sdpa-flash,flash-attn'"),
        # It used to make the project root the baselines folder.
        ("baselines", "the baselines folder name is empty; give a path, or leave the option out"),
        ("json", "the JSON report name is empty; give a path, or leave the option out"),
        ("markdown", "the Markdown summary name is empty; give a path, or leave the option out"),
        ("report", "the report folder name is empty; give a path, or leave the option out"),
    ],
)
def test_an_empty_command_line_value_is_refused(pytester: pytest.Pytester, name: str, problem: str) -> None:
    result = pytester.runpytest_inprocess("--attnperf", f"--attnperf-{name}=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"error: argument --attnperf-{name}: {problem}" in result.stderr.str()


@pytest.mark.parametrize("dest", ["attnperf_update", "attnperf_json", "attnperf_markdown", "attnperf_report"])
def test_what_a_measuring_run_writes_needs_attnperf(tmp_path: Path, dest: str) -> None:
    # `pytest --attnperf-update` used to exit 0, having silently written nothing.
    flag = OPTIONS_BY_DEST[dest].flag
    with pytest.raises(SettingsError, match=f"^{re.escape(flag)} needs --attnperf: without it nothing is measured"):
        resolve_settings({dest: True if dest == "attnperf_update" else "x"}, {}, rootdir=tmp_path)
    assert resolve_settings({"attnperf": True, dest: True if dest == "attnperf_update" else "x"}, {}, rootdir=tmp_path)


def test_update_without_attnperf_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--attnperf-update")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "ERROR: --attnperf-update needs --attnperf: without it nothing is measured, so nothing would be recorded; "
        "run `pytest --attnperf --attnperf-update` (or `attnperf update`)" in result.stderr.str()
    )


@pytest.mark.parametrize(("heads", "kv_heads"), [(2, 4), (3, 2)])
def test_kv_heads_that_do_not_divide_the_heads_are_refused(tmp_path: Path, heads: int, kv_heads: int) -> None:
    # --attnperf-kv-heads above the heads used to be lowered to the heads, silently.
    cli = {"attnperf_heads": heads, "attnperf_kv_heads": kv_heads}
    with pytest.raises(SettingsError) as error:
        resolve_settings(cli, {}, rootdir=tmp_path)
    assert str(error.value) == (
        f"--attnperf-kv-heads={kv_heads} does not fit the {heads} query heads (--attnperf-heads={heads}): heads must be "
        "a multiple of kv_heads, so kv-heads is at most heads (e.g. heads 32 with kv-heads 8)"
    )


def test_kv_heads_against_the_devices_default_heads(pytester: pytest.Pytester, tmp_path: Path) -> None:
    settings = resolve_settings({"attnperf_kv_heads": 16}, {}, rootdir=tmp_path)
    assert settings.shape_defaults(is_cuda=True)["kv_heads"] == 16  # 32 GPU heads
    with pytest.raises(ValueError, match=r"does not fit the 8 query heads \(the CPU default; set --attnperf-heads\)"):
        settings.shape_defaults(is_cuda=False)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("--attnperf", "--attnperf-device=cpu", "--attnperf-kv-heads=16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--attnperf-kv-heads=16 does not fit the 8 query heads (the CPU default" in result.stderr.str()


def test_a_valid_command_line_value_overrides_a_bad_ini_value(pytester: pytest.Pytester) -> None:
    # The ini value is never parsed when the command line gives one.
    assert _settings(pytester, "--attnperf-missing=fail", ini={"attnperf_missing": "maybe"}).missing == "fail"


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ("tpu", "unknown device 'tpu'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("meta", "unsupported device 'meta'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        pytest.param(
            "cuda", "sees no CUDA GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")
        ),
    ],
)
def test_an_unusable_device_stops_the_run(pytester: pytest.Pytester, device: str, problem: str) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("--attnperf", f"--attnperf-device={device}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert problem in result.stderr.str()


def test_the_device_is_not_probed_without_attnperf(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("--attnperf-device=tpu")
    result.assert_outcomes(passed=1)


# ---------------------------------------------------------------- resolve_settings, without pytest


def test_resolve_settings_defaults(tmp_path: Path) -> None:
    settings = resolve_settings({}, {}, rootdir=tmp_path)
    assert settings.enabled is False
    assert settings.baselines_dir == tmp_path / "baselines"
    assert (settings.latency_tolerance, settings.memory_tolerance, settings.missing) == (None, 0.05, "warn")
    assert (settings.timing.warmup_ms, settings.timing.rep_ms, settings.timing.min_samples) == (1000.0, 100.0, 10)
    assert (settings.fingerprint, settings.calibrate) == ("warn", False)


@pytest.mark.parametrize(("cli", "ini", "expected"), [("auto", "5%", None), (None, "auto", None), ("5%", "auto", 0.05)])
def test_latency_tolerance_auto_is_a_value_not_an_absence(
    tmp_path: Path, cli: str | None, ini: str, expected: float | None
) -> None:
    """`--attnperf-latency-tolerance=auto` on the command line beats a fixed tolerance in the ini file."""
    parse = OPTIONS_BY_DEST["attnperf_latency_tolerance"].parse
    assert parse is not None
    values = {"attnperf_latency_tolerance": parse(cli)} if cli else {}
    settings = resolve_settings(values, {"attnperf_latency_tolerance": ini}, rootdir=tmp_path)
    assert settings.latency_tolerance == expected


def test_resolve_settings_error_names_the_ini_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        resolve_settings({}, {"attnperf_seed": "x"}, rootdir=tmp_path, inifile=tmp_path / "tox.ini")
    assert (
        str(error.value) == f"ini key attnperf_seed in {tmp_path / 'tox.ini'}: seed 'x' must be a non-negative integer"
    )


# ---------------------------------------------------------------- shared definitions


def _parser(*names: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnperf")
    add_argparse_options(parser, names)
    return parser


def test_argparse_options_share_the_pytest_parsers() -> None:
    arguments = _parser("seqlens", "backends", "update").parse_args(["--attnperf-seqlens=1K,4K", "--attnperf-update"])
    assert arguments.attnperf_seqlens == (1024, 4096)
    assert arguments.attnperf_backends is None
    assert arguments.attnperf_update is True


ROUND_TRIP = [pytest.param(*case) for case in SETTINGS_TABLE]


@pytest.mark.parametrize(("name", "cli", "cli_value", "_ini", "_ini_value", "_default", "_where"), ROUND_TRIP)
def test_parsed_values_survive_the_trip_back_to_the_command_line(
    name: str, cli: str, cli_value: Any, _ini: str, _ini_value: Any, _default: Any, _where: str
) -> None:
    """`attnperf update` forwards parsed values to pytest through to_command_line."""
    dest = _dest(name)
    parsed = vars(_parser(name).parse_args([f"--attnperf-{name}={cli}"]))
    (argument,) = to_command_line(parsed)
    reparsed = vars(_parser(name).parse_args([argument]))
    assert reparsed[dest] == cli_value


def test_to_command_line_skips_unset_values_and_unknown_keys() -> None:
    assert to_command_line({"attnperf_update": True, "attnperf_json": None, "attnperf_update_x": 1, "other": 2}) == [
        "--attnperf-update",
    ]
    assert to_command_line({"attnperf_update": False}) == []


# ---------------------------------------------------------------- help texts


def test_options_are_registered_with_their_ini_keys(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    for option in OPTIONS:
        assert config.getoption(option.dest) is None
        if option.ini:
            assert config.getini(option.dest) is None
    assert OPTIONS_BY_DEST["attnperf_kv_heads"].flag == "--attnperf-kv-heads"


def test_help_lists_every_option_and_ini_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    output = result.stdout.str()
    assert "attention performance gate (pytest-attnperf):" in output
    assert "--attnperf " in output
    for option in OPTIONS:
        assert option.flag in output
        if option.ini:
            assert re.search(rf"^  {option.dest} \(string\):", output, re.MULTILINE), option.dest
    # '%' in a help text must survive argparse's %-formatting; argparse wraps lines, so compare words.
    words = " ".join(output.split())
    for option in OPTIONS:
        assert f"{option.flag}" in words
        assert " ".join(option.help.split()) in words, option.flag


def test_markers_lists_the_five_markers_with_their_signatures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--markers")
    assert result.ret == pytest.ExitCode.OK
    lines = result.stdout.lines
    for name, usage in MARKER_USAGE.items():
        assert f"@pytest.mark.{usage}: {MARKER_HELP[name]}" in lines
    assert (
        "@pytest.mark.attnperf_latency(tolerance=0.1 | '10%', budget=2.5 | '2.5 ms' | '250 us', baseline=True, "
        "cuda_graph=None | True | False): "
        "gate the median latency against the per-GPU baseline and/or an absolute budget" in lines
    )


def test_a_marked_head_count_below_the_kv_heads_option_fails_naming_it(pytester: pytest.Pytester) -> None:
    # The option's kv-heads used to be lowered to the mark's heads, silently: the case ran another problem.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.attnperf_shape(heads=1)
        def test_m(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
        """
    )
    result = pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS, "--attnperf-kv-heads=2")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_m[[]eager-64[]]: impossible attention shape: heads (1) must be a multiple of kv_heads (2) (kv_heads 2 "
            "comes from --attnperf-kv-heads)*"
        ]
    )


def test_kv_heads_refusal_names_where_each_value_came_from(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"^ini key attnperf_kv_heads=4 does not fit the 2 query heads \(--attnperf-heads=2\)"
    ):
        resolve_settings({"attnperf_heads": 2}, {"attnperf_kv_heads": "4"}, rootdir=tmp_path)
