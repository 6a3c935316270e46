"""The `attnperf` command: show, diff, env and update, called in-process."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from pytest_attnperf import REGISTRY
from pytest_attnperf.cli import commands as cli
from pytest_attnperf.cli import env as cli_env
from pytest_attnperf.gate.baselines import BaselineEntry, BaselineFile, baseline_path
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.session import update_process
from pytest_attnperf.session.output_paths import shown
from pytest_attnperf.spec.options import OPTIONS, add_argparse_options

CPU = describe_device(torch.device("cpu"))
DEVICE = {"name": "NVIDIA H100 80GB HBM3", "slug": "nvidia-h100-80gb-hbm3"}


def entry(median_ms: float, peak_bytes: int, backend: str = "flash-attn") -> BaselineEntry:
    return BaselineEntry(
        backend=backend,
        shape=None,
        mode="forward",
        latency_ms={"median": median_ms},
        peak_bytes=peak_bytes,
        fits=True,
        recorded_at="2026-01-02T03:04:05Z",
        environment={},
    )


def write(path: Path, entries: dict[str, BaselineEntry], environment: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BaselineFile(path, dict(DEVICE), environment or {}, entries).to_text(), encoding="utf-8")
    return path


# ---------------------------------------------------------------- show


def test_show_prints_device_environment_and_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "h100.yaml",
        {
            "tests/test_attention.py::test_forward[flash-attn-4K]": entry(0.46, 64 * 2**20),
            "tests/test_attention.py::test_forward[eager-4K]": dataclasses.replace(
                entry(13.2, 3 * 2**30, backend="eager"), power_w=612.0, power_spread=0.012
            ),
        },
        environment={"torch": "2.11.0", "cuda": "13.0"},
    )
    assert cli.main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: NVIDIA H100 80GB HBM3, 2 entries"
    assert lines[1] == "recorded with: torch 2.11.0, cuda 13.0"
    header = ["test", "backend", "median", "peak", "mem", "fits", "recorded", "power", "(run", "spread)"]
    assert lines[3].split() == header
    rows = [line.split() for line in lines[5:]]
    recorded = "2026-01-02T03:04:05Z"
    assert rows == [
        ["test_forward[eager-4K]", "eager", "13.2", "ms", "3", "GiB", "yes", recorded, "612", "W", "±1.2", "%"],
        ["test_forward[flash-attn-4K]", "flash-attn", "0.46", "ms", "64", "MiB", "yes", recorded, "-"],
    ]


def test_show_a_malformed_file_exits_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("schema_version: 1\ndevice: {name: x}\nentries:\n  a: [\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["show", str(path)])
    assert str(exit_info.value.code).startswith(f"attnperf: baseline file {path}:5: not valid YAML")


def test_show_a_missing_file_exits_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["show", str(tmp_path / "absent.yaml")])
    assert exit_info.value.code == f"attnperf: no baseline file at {tmp_path / 'absent.yaml'}"


# ---------------------------------------------------------------- diff


def test_diff_shows_added_removed_and_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(
        tmp_path / "old.yaml",
        {
            "t.py::test_same[a]": entry(1.0, 1000),
            "t.py::test_slower[a]": entry(2.0, 2**20),
            "t.py::test_gone[a]": entry(3.0, 1000),
        },
    )
    new = write(
        tmp_path / "new.yaml",
        {
            "t.py::test_same[a]": entry(1.0, 1000),
            "t.py::test_slower[a]": entry(3.0, 2**21),
            "t.py::test_new[a]": entry(4.0, 1000),
        },
    )
    assert cli.main(["diff", str(old), str(new)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["test", "median", "ratio", "peak", "memory", "ratio"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:-2]}
    assert rows == {  # test_same did not move: counted, not listed
        "test_gone[a]": ["removed"],
        "test_new[a]": ["added"],
        "test_slower[a]": ["2", "ms", "->", "3", "ms", "x1.500", "1", "MiB", "->", "2", "MiB", "x2.000"],
    }
    assert lines[-1] == (
        "2 entries in both files: 1 changed by more than 5%; 1 within 5% (not shown; --all); 1 added, 1 removed"
    )


def test_diff_with_a_malformed_side_exits_naming_it(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 3\ndevice: {name: x}\nentries: {}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["diff", str(good), str(bad)])
    assert str(exit_info.value.code) == (
        f"attnperf: baseline file {bad}:1 at 'schema_version': schema version 3 was written by a newer "
        "pytest-attnperf; this one reads versions 1, 2: upgrade pytest-attnperf"
    )


# ---------------------------------------------------------------- env


@pytest.fixture(scope="module")
def env_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, object]]:
    """`attnperf env --json` on the CPU, once: it runs a tiny case on every backend (flex compiles)."""
    directory = tmp_path_factory.mktemp("baselines")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(["env", "--json", "--attnperf-device=cpu", f"--attnperf-baselines={directory}"])
    return code, json.loads(buffer.getvalue())


@pytest.mark.slow
def test_env_json_lists_every_backend_with_reasons(env_report: tuple[int, dict[str, object]]) -> None:
    code, report = env_report
    assert code == 0
    backends = report["backends"]
    assert isinstance(backends, dict)
    assert list(backends) == list(REGISTRY.names())
    for name, backend in backends.items():
        assert set(backend) == {"available", "reason", "description"}
        assert backend["description"] == REGISTRY.get(name).description
        if backend["available"]:
            assert backend["reason"] == "ok"
        else:
            assert backend["reason"].startswith(f"{name} "), backend["reason"]
    assert backends["eager"]["available"] is True
    assert backends["sdpa-math"]["available"] is True
    assert backends["flash-attn"] == {
        "available": False,
        "reason": f"flash-attn needs a cuda device; this run is on {CPU.name} (cpu)",
        "description": REGISTRY.get("flash-attn").description,
    }


@pytest.mark.slow
def test_env_json_describes_device_and_baseline(env_report: tuple[int, dict[str, object]]) -> None:
    _, report = env_report
    device = report["device"]
    assert isinstance(device, dict)
    assert (device["device"], device["name"], device["slug"], device["generation"]) == (
        "cpu",
        CPU.name,
        CPU.slug,
        "CPU",
    )
    assert device["torch"] == torch.__version__
    baseline = report["baseline"]
    assert isinstance(baseline, dict)
    assert baseline["exists"] is False
    assert baseline["path"].endswith(f"{CPU.slug}.yaml")


@pytest.mark.slow
def test_env_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = baseline_path(tmp_path, CPU.slug)
    write(
        path,
        {"t.py::test[eager-64]": entry(1.0, 10, backend="eager")},
        environment={"torch": "0.0.1", "recorded_at": "2026-01-01T00:00:00Z"},
    )
    assert cli.main(["env", "--attnperf-device=cpu", f"--attnperf-baselines={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"device       {CPU.name} (cpu), capability -, CPU\n")
    assert f"torch        {torch.__version__}\n" in out
    assert f"  flash-attn      unavailable  flash-attn needs a cuda device; this run is on {CPU.name} (cpu)" in out
    assert f"baseline    {path} (exists)" in out
    assert "1 entries, recorded 2026-01-01T00:00:00Z" in out
    assert f"differs: torch 0.0.1 (baseline) vs {torch.__version__} (now)" in out


def test_env_with_a_malformed_baseline_reports_it_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Probing the backends is covered above; here only the baseline matters.
    monkeypatch.setattr(cli_env, "_probe_backend", lambda name, device, info: (True, "ok"))
    path = baseline_path(tmp_path, CPU.slug)
    path.write_text("schema_version: 1\ndevice: [\n", encoding="utf-8")
    assert cli.main(["env", "--json", "--attnperf-device=cpu", f"--attnperf-baselines={tmp_path}"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"]["exists"] is True
    assert report["baseline"]["error"].startswith(f"baseline file {path}:")


def test_env_exits_1_when_no_backend_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_env, "_probe_backend", lambda name, device, info: (False, f"{name} is broken"))
    assert cli.main(["env", "--json", "--attnperf-device=cpu", f"--attnperf-baselines={tmp_path}"]) == 1
    assert json.loads(capsys.readouterr().out)["backends"]["eager"]["reason"] == "eager is broken"


# ---------------------------------------------------------------- update and the parser


def _keep_results(env: dict[str, str]) -> None:
    """What a run of the update leaves for the last one (the update stops when a run left nothing)."""
    index = int(env["ATTNPERF_RUN"].split("/")[0])
    kept = {"token": env["ATTNPERF_UPDATE_TOKEN"], "run": index, "records": []}
    (Path(env["ATTNPERF_RUNS_DIR"]) / f"run-{index}.json").write_text(json.dumps(kept), encoding="utf-8")


def test_update_stops_when_a_run_kept_no_results(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(update_process, "run_child", lambda command, env: calls.append(1) or 0)
    assert cli.main(["update", "--runs", "3"]) == 1
    assert calls == [1]


def _runs(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], codes: tuple[int, ...] = (0, 0, 0)
) -> list[tuple[list[str], dict[str, str]]]:
    """The pytest processes `attnperf update` starts: (command, environment) each; their exit codes are ``codes``."""
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_call(command: list[str], env: dict[str, str]) -> int:
        calls.append((list(command), dict(env)))
        _keep_results(env)
        return codes[len(calls) - 1]

    monkeypatch.setattr(update_process, "run_child", fake_call)
    cli.main(argv)
    return calls


def test_update_runs_three_independent_pytest_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _runs(monkeypatch, ["update", "--attnperf-device=cpu", "--attnperf-min-samples=3", "-x", "tests"])
    assert [command[1:] for command, _ in calls] == [
        [
            "-m",
            "pytest",
            "--attnperf",
            "--attnperf-update",
            "--attnperf-device=cpu",
            "--attnperf-min-samples=3",
            "-x",
            "tests",
        ]
    ] * 3
    assert [env["ATTNPERF_RUN"] for _, env in calls] == ["1/3", "2/3", "3/3"]
    assert len({env["ATTNPERF_RUNS_DIR"] for _, env in calls}) == 1


@pytest.mark.parametrize("form", [["--attnperf-json=out/r.json"], ["--attnperf-json", "out/r.json"]])
def test_each_run_keeps_its_own_json_report(monkeypatch: pytest.MonkeyPatch, form: list[str]) -> None:
    calls = _runs(monkeypatch, ["update", "--runs", "2", *form], (0, 0))
    paths = [" ".join(command).split("--attnperf-json")[1].strip(" =") for command, _ in calls]
    assert paths == ["out/r-run1.json", "out/r-run2.json"]


def test_update_runs_as_many_processes_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [env["ATTNPERF_RUN"] for _, env in _runs(monkeypatch, ["update", "--runs", "1"], (0,))] == ["1/1"]


@pytest.mark.parametrize(("codes", "runs", "status"), [((1, 0, 0), 3, 1), ((0, 4, 0), 2, 4), ((2, 0, 0), 1, 2)])
def test_update_goes_on_after_failed_tests_and_stops_when_a_run_cannot_run(
    monkeypatch: pytest.MonkeyPatch, codes: tuple[int, ...], runs: int, status: int
) -> None:
    calls: list[int] = []

    def fake_call(command: list[str], env: dict[str, str]) -> int:
        calls.append(1)
        _keep_results(env)
        return codes[len(calls) - 1]

    monkeypatch.setattr(update_process, "run_child", fake_call)
    assert cli.main(["update"]) == status
    assert len(calls) == runs


def test_runs_must_be_a_positive_integer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["update", "--runs", "0"])
    assert exit_info.value.code == 2
    assert "argument --runs:" in capsys.readouterr().err


def test_update_forwards_list_options_that_pytest_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    ((command, _),) = _runs(
        monkeypatch, ["update", "--runs=1", "--attnperf-seqlens=1K,4K", "--attnperf-backends=eager,sdpa-math"], (0,)
    )
    # pytest parses the forwarded text with the same option definitions.
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_argparse_options(parser, tuple(option.name for option in OPTIONS))
    parsed, _ = parser.parse_known_args(command[3:])
    assert parsed.attnperf_seqlens == (1024, 4096)
    assert parsed.attnperf_backends == ("eager", "sdpa-math")


def test_calibrate_runs_pytest_with_attnperf_calibrate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(pytest, "main", lambda arguments: calls.append(list(arguments)) or 0)
    assert cli.main(["calibrate", "--attnperf-device=cpu", "tests"]) == 0
    assert calls == [["--attnperf", "--attnperf-calibrate", "--attnperf-device=cpu", "tests"]]


@pytest.mark.parametrize("command", ["show", "diff", "env"])
def test_unknown_arguments_are_refused_outside_update(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"show": ["f.yaml"], "diff": ["a.yaml", "b.yaml"], "env": []}[command]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, *files, "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--help"], ["env", "--help"], ["update", "--help"], ["calibrate", "--help"], ["show", "--help"]]
)
def test_help_texts_print(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: attnperf")


def test_a_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["update", "--attnperf-seqlens=0"])
    assert exit_info.value.code == 2
    assert "argument --attnperf-seqlens: context length '0' must be at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------- bad arguments: one line, the right exit code


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["env", "--attnperf-device=cuda"],
            "attnperf env: --attnperf-device: device 'cuda' asked for, but torch",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU"),
            id="env-cuda-without-gpu",
        ),
        pytest.param(
            ["env", "--attnperf-device=cpu", f"--attnperf-baselines={__file__}"],
            f"attnperf env: --attnperf-baselines: cannot use {shown(Path(__file__))} as the baselines folder: it is a file",
            id="env-baselines-a-file",
        ),
        pytest.param(
            ["report", "--quick", "--attnperf-backends=nope"],
            "attnperf report: --attnperf-backends: unknown attention backend 'nope'; expected one of: eager",
            id="report-unknown-backend",
        ),
        pytest.param(
            ["report", "--quick", "--attnperf-device=tpu"],
            "attnperf report: --attnperf-device: unknown device 'tpu'",
            id="report-unknown-device",
        ),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # They used to end in tracebacks (ValueError, BackendError) - the report one after it had started measuring.
    monkeypatch.setattr(cli_env, "_probe_backend", lambda name, device, info: pytest.fail("probed a backend"))
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert captured.out == ""


def test_report_refuses_an_out_folder_it_cannot_write_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_attnperf.study.runner as study_runner

    monkeypatch.setattr(study_runner, "run_study", lambda *a, **k: pytest.fail("measured before checking --out"))
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert cli.main(["report", "--quick", "--out", str(tmp_path / "file" / "r")]) == 2
    assert (
        capsys.readouterr().err
        == f"attnperf report: --out: cannot use the folder {tmp_path / 'file' / 'r'}: Not a directory\n"
    )


def test_report_refuses_an_empty_out_folder(capsys: pytest.CaptureFixture[str]) -> None:
    # An empty --out used to be the current folder: the study's README.md replaced the project's.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", "--quick", "--out", ""])
    assert exit_info.value.code == 2
    assert (
        "argument --out: the --out folder name is empty; give a path, or leave the option out"
        in capsys.readouterr().err
    )


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    # `attnperf memory ... | head -1` used to print a BrokenPipeError traceback (and "Exception ignored").
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write fails
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "pytest_attnperf.cli", "memory", "--model", "llama-2-70b"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert completed.stderr == ""
    assert completed.returncode == cli.BROKEN_PIPE_EXIT == 141


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_under_standard_output_is_one_line_and_exit_1() -> None:
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        completed = subprocess.run(
            [sys.executable, "-m", "pytest_attnperf.cli", "memory", "--model", "llama-2-70b"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert completed.stderr == "attnperf memory: cannot write to standard output: No space left on device\n"
    assert completed.returncode == 1


# ---------------------------------------------------------------- one table of commands, the ini file honoured


def test_every_command_of_the_parser_runs_its_own_function() -> None:
    parser = cli.build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert set(subparsers.choices) == set(cli.COMMANDS)
    assert {name for name, command in cli.COMMANDS.items() if command.to_pytest} == {"update", "calibrate"}


def test_a_command_left_out_of_the_table_is_refused_not_run_as_another(monkeypatch: pytest.MonkeyPatch) -> None:
    # `attnperf memory` used to fall through to `diff` when it was missing from the table.
    monkeypatch.setattr(cli, "COMMANDS", {name: c for name, c in cli.COMMANDS.items() if name != "memory"})
    with pytest.raises(
        RuntimeError, match=r"without both a parser and an entry in COMMANDS \(cli/commands.py\): \['memory'\]"
    ):
        cli.main(["memory", "--model", "llama-2-7b"])


def _no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_env, "_probe_backend", lambda name, device, info: (True, "ok"))


def test_env_reads_the_ini_file_pytest_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_probe(monkeypatch)
    (tmp_path / "tox.ini").write_text(
        "[pytest]\nattnperf_baselines = from-ini\nattnperf_device = cpu\n", encoding="utf-8"
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # pytest finds the ini file in a parent folder; paths are taken from it
    assert cli.main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"]["path"] == str(baseline_path(tmp_path / "from-ini", CPU.slug))
    assert report["device"]["device"] == "cpu"


def test_env_flags_beat_the_ini_file_and_defaults_sit_under_the_rootdir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_probe(monkeypatch)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nattnperf_baselines = "from-ini"\n', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["env", "--json", "--attnperf-device=cpu", "--attnperf-baselines=flag"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"]["path"] == str(baseline_path(tmp_path / "flag", CPU.slug))
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n", encoding="utf-8")
    assert cli.main(["env", "--json", "--attnperf-device=cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"]["path"] == str(
        baseline_path(tmp_path / "baselines", CPU.slug)
    )


def test_a_bad_ini_value_is_a_command_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nattnperf_min_samples = many\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "--quick", "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"attnperf report: ini key attnperf_min_samples in {tmp_path / 'pytest.ini'}: "), error


def test_env_takes_the_ini_files_addopts_unless_its_own_flag_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_probe(monkeypatch)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --attnperf-device=cuda:7\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    if not torch.cuda.is_available():
        assert cli.main(["env", "--json"]) == 2
        assert capsys.readouterr().err.startswith("attnperf env: --attnperf-device: device 'cuda:7' asked for")
    assert cli.main(["env", "--json", "--attnperf-device=cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["device"]["device"] == "cpu"


def test_an_ini_file_pytest_cannot_read_is_a_command_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["env", "--attnperf-device=cpu"]) == 2
    assert capsys.readouterr().err.startswith(f"attnperf env: pytest's configuration: {tmp_path / 'pyproject.toml'}: ")


# ---------------------------------------------------------------- what a newcomer met first


def test_show_prints_the_gpu_state_readably(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h200.yaml"
    state = {"sm_clock_mhz": 1980, "power_limit_w": 700.0, "temperature_c": 39, "throttle_reasons": []}
    path.write_text(BaselineFile(path, dict(DEVICE), {"torch": "2.11.0", "gpu_state": state}, {}).to_text())
    assert cli.main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "recorded with: torch 2.11.0"
    assert lines[2] == "gpu state: sm clock 1980 MHz; power limit 700.0 W; temperature 39 C; throttle reasons none"
    assert not any("{" in line for line in lines)


def test_quick_help_names_the_first_configuration_of_each_device() -> None:
    from pytest_attnperf.study.runner import CPU_CONFIGS, GPU_CONFIGS

    assert f"{GPU_CONFIGS[0].name} on a GPU, {CPU_CONFIGS[0].name} on a CPU" in cli.QUICK_HELP


def _fake_study(monkeypatch: pytest.MonkeyPatch, run_study: object) -> None:
    import pytest_attnperf.study.output as study_output
    import pytest_attnperf.study.runner as study_runner

    monkeypatch.setattr(study_runner, "run_study", run_study)
    monkeypatch.setattr(study_output, "write_study", lambda study, out, **options: [])


def test_report_seqlens_bound_the_decode_section_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: dict[str, object] = {}
    _fake_study(monkeypatch, lambda *args, **kwargs: asked.update(kwargs) or {})
    out = str(tmp_path / "r")
    assert cli.main(["report", "--quick", "--attnperf-device=cpu", "--attnperf-seqlens=64,128", "--out", out]) == 0
    decode = asked["decode"]
    assert asked["seqlens"] == (64, 128)
    assert decode is not None
    assert decode.lengths == (64, 128)  # type: ignore[attr-defined]
    assert len(asked["measure"]) == 1  # type: ignore[arg-type]  # --quick: the first of the study's configurations


@pytest.mark.parametrize("existed", [False, True])
def test_a_refused_report_leaves_no_empty_folder_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, existed: bool
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise cli.CommandError("refused")

    _fake_study(monkeypatch, refuse)
    out = tmp_path / "r"
    if existed:
        out.mkdir()
    assert cli.main(["report", "--quick", "--attnperf-device=cpu", "--out", str(out)]) == 2
    assert out.exists() is existed  # made by the command: removed; the user's own: kept


def test_a_report_refused_for_its_device_makes_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "--quick", "--attnperf-device=tpu"]) == 2
    assert list(tmp_path.iterdir()) == []
