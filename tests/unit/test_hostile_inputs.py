"""Hostile inputs of round 3: baseline paths that are not files, comparisons of different problems, bad sizes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf.cli import commands as cli
from pytest_attnperf.cli import env as cli_env
from pytest_attnperf.gate.baseline_limits import MAX_ITEMS
from pytest_attnperf.gate.baselines import (
    BaselineEntry,
    BaselineFile,
    BaselineFileError,
    baseline_path,
    load_baseline,
    parse_baseline_text,
    write_atomic,
)

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")


@contextlib.contextmanager
def within(seconds: int) -> Iterator[None]:
    """Fail instead of hanging the suite if what runs inside blocks (a FIFO opened for reading does)."""

    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- baseline paths that are not regular files


def _not_a_file(kind: str, path: Path) -> Path:
    """Make ``path`` a FIFO, a folder or a socket; a device is /dev/null itself."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    else:
        return Path(os.devnull)
    return path


KINDS = {
    "fifo": "is a named pipe (FIFO), not a regular file",
    "folder": "is a folder, not a regular file",
    "socket": "is a socket, not a regular file",
    "device": "is a character device, not a regular file",
}


@needs_fifo
@pytest.mark.parametrize("kind", KINDS)
def test_a_baseline_that_is_not_a_regular_file_is_refused_naming_what_it_is(tmp_path: Path, kind: str) -> None:
    path = _not_a_file(kind, tmp_path / "gpu.yaml")
    with within(20), pytest.raises(BaselineFileError) as refused:
        load_baseline(path)
    assert str(refused.value) == (f"baseline file {path}: {KINDS[kind]}: a baseline file must be a plain YAML file")


@needs_fifo
def test_a_link_to_a_fifo_is_refused_and_a_link_to_a_file_reads(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "pipe")
    with within(20), pytest.raises(BaselineFileError, match="is a named pipe"):
        load_baseline(tmp_path / "link.yaml")
    (tmp_path / "real.yaml").write_text("schema_version: 2\ndevice: {name: x}\nentries: {}\n", encoding="utf-8")
    (tmp_path / "good.yaml").symlink_to(tmp_path / "real.yaml")
    baseline = load_baseline(tmp_path / "good.yaml")
    assert baseline is not None
    assert baseline.entries == {}


@needs_fifo
def test_show_of_a_fifo_exits_naming_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "gpu.yaml")
    with within(20), pytest.raises(SystemExit) as exit_info:
        cli.main(["show", str(tmp_path / "gpu.yaml")])
    assert str(exit_info.value.code).startswith(f"attnperf: baseline file {tmp_path / 'gpu.yaml'}: is a named pipe")


@needs_fifo
def test_env_with_a_fifo_baseline_reports_it_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_env, "_probe_backend", lambda name, device, info: (True, "ok"))
    path = baseline_path(tmp_path, CPU.slug)
    os.mkfifo(path)
    with within(20):
        code = cli.main(["env", "--json", "--attnperf-device=cpu", f"--attnperf-baselines={tmp_path}"])
    assert code == 2
    assert json.loads(capsys.readouterr().out)["baseline"]["error"] == (
        f"baseline file {path}: is a named pipe (FIFO), not a regular file: a baseline file must be a plain YAML file"
    )


@needs_fifo
def test_a_run_with_a_fifo_baseline_stops_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gate="def test_gate(attnperf, attn_backend, qkv):\n    attnperf.measure(attn_backend, qkv)\n"
    )
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    path.parent.mkdir()
    os.mkfifo(path)
    result = pytester.runpytest_subprocess("--attnperf", *FAST_OPTIONS, timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"baseline file {path}: is a named pipe (FIFO), not a regular file" in result.stderr.str()


# ---------------------------------------------------------------- a large baseline file


@pytest.mark.slow  # a subprocess run of many seconds: the slow part of CI
def test_a_20000_entry_file_written_by_the_plugin_reads(tmp_path: Path) -> None:
    """5,000 entries of a real suite hit the old item cap; the cap now derives from the plugin's own entries.

    The entries are those `attnperf update` recorded on the H200, repeated under new ids and written by the
    plugin's writer. How fast it reads against a plain libyaml load is benchmarks/experiments/baseline_reader.py's job.
    """
    recorded = load_baseline(Path(__file__).resolve().parents[2] / "baselines" / "nvidia-h200.yaml")
    assert recorded is not None
    originals = list(recorded.entries.items())
    entries = {
        f"{test_id[:-1]}-copy{index // len(originals)}]": entry
        for index in range(20_000)
        for test_id, entry in [originals[index % len(originals)]]
    }
    path = tmp_path / "nvidia-h200.yaml"
    write_atomic(path, BaselineFile(path, recorded.device, recorded.environment, entries).to_text())
    text = path.read_text(encoding="utf-8")
    assert sum(text.count(mark) for mark in ":,-?") > 10 * 600_000 // 5  # more than the old cap's ~10,000 entries held
    loaded = load_baseline(path)
    assert loaded is not None
    assert len(loaded.entries) == 20_000
    assert loaded.entries == entries


def test_a_file_over_the_item_cap_is_refused_before_parsing_saying_how_many_entries_fit() -> None:
    with pytest.raises(BaselineFileError) as refused:
        parse_baseline_text("a: [" + "1," * MAX_ITEMS + "1]\n", Path("big.yaml"))
    assert refused.value.problem == (
        f"holds {MAX_ITEMS + 1:,} YAML items, more than the {MAX_ITEMS:,} a baseline file may (about 40,000 entries "
        "as the plugin writes them): not a baseline file, or a suite to split over several --attnperf-baselines folders"
    )


# ---------------------------------------------------------------- attnperf diff compares only the same problem

SHAPE = {"batch": 1, "heads": 8, "kv_heads": 8, "q_len": 64, "k_len": 64, "head_dim": 16, "dtype": "float32"}


def diff_entry(
    median_ms: float = 1.0, *, backend: str = "eager", mode: str = "forward", **shape: object
) -> BaselineEntry:
    return BaselineEntry(
        backend=backend,
        shape={**SHAPE, **shape},
        mode=mode,
        latency_ms={"median": median_ms},
        peak_bytes=1000,
        fits=True,
        recorded_at="2026-01-02T03:04:05Z",
        environment={},
    )


def diff_file(path: Path, entries: dict[str, BaselineEntry], device: dict[str, object] | None = None) -> Path:
    device = device or {"name": "NVIDIA H200", "slug": "nvidia-h200"}
    path.write_text(BaselineFile(path, device, {}, entries).to_text(), encoding="utf-8")
    return path


def run_diff(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = cli.main(["diff", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_diff_of_identical_files_says_no_differences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = {f"t.py::test_x[{index}]": diff_entry(1.0 + index) for index in range(124)}
    old, new = diff_file(tmp_path / "old.yaml", entries), diff_file(tmp_path / "new.yaml", entries)
    code, lines, _ = run_diff(capsys, str(old), str(new))
    assert code == 0
    assert lines == ["no differences: 124 entries in both files, none moved by more than 5%"]
    code, lines, _ = run_diff(capsys, str(old), str(new), "--all")
    assert len(lines) == 2 + 124 + 2  # header, rule, every entry, a blank line, the summary
    assert lines[-1] == "no differences: 124 entries in both files, none moved by more than 5%"


def test_diff_lists_only_what_moved_beyond_the_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = diff_file(tmp_path / "old.yaml", {"t.py::a": diff_entry(1.0), "t.py::b": diff_entry(1.0)})
    new = diff_file(tmp_path / "new.yaml", {"t.py::a": diff_entry(1.03), "t.py::b": diff_entry(1.2)})
    _, lines, _ = run_diff(capsys, str(old), str(new))
    assert [line.split()[0] for line in lines[2:-2]] == ["b"]
    assert (
        lines[-1]
        == "2 entries in both files: 1 changed by more than 5%; 1 within 5% (not shown; --all); 0 added, 0 removed"
    )
    _, lines, _ = run_diff(capsys, str(old), str(new), "--threshold=1%")
    assert [line.split()[0] for line in lines[2:-2]] == ["a", "b"]
    with pytest.raises(SystemExit):
        cli.main(["diff", str(old), str(new), "--threshold=much"])
    assert "threshold" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        ({"backend": "sdpa-math"}, "backend eager -> sdpa-math"),
        ({"mode": "backward"}, "mode forward -> backward"),
        ({"heads": 32}, "heads 8 -> 32"),
        ({"dtype": "float16"}, "dtype float32 -> float16"),
    ],
)
def test_diff_never_gives_a_ratio_between_two_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changed: dict[str, object], why: str
) -> None:
    old = diff_file(tmp_path / "old.yaml", {"t.py::test_x[a]": diff_entry(1.0)})
    new = diff_file(tmp_path / "new.yaml", {"t.py::test_x[a]": diff_entry(9.0, **changed)})
    code, lines, _ = run_diff(capsys, str(old), str(new))
    assert code == 0
    assert lines[2].split(None, 1) == ["test_x[a]", f"not compared: another problem ({why})"]
    assert "x9.000" not in "\n".join(lines)
    assert (
        lines[-1]
        == "1 entries in both files: 0 changed by more than 5%; 1 not compared (another problem); 0 added, 0 removed"
    )


def test_diff_refuses_files_of_two_gpu_models_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cpu = diff_file(tmp_path / "cpu.yaml", {"t.py::test_x[a]": diff_entry(300.0)}, device=CPU.as_dict())
    h200 = diff_file(tmp_path / "h200.yaml", {"t.py::test_x[a]": diff_entry(1.0)})
    code, lines, error = run_diff(capsys, str(cpu), str(h200))
    assert (code, lines) == (2, [])
    assert error == (
        f"attnperf diff: {cpu} was recorded on {CPU.name} ({CPU.slug}), {h200} on NVIDIA H200 (nvidia-h200): two GPU "
        "models' times are not a regression; give --any-gpu to compare them anyway\n"
    )
    code, lines, _ = run_diff(capsys, str(cpu), str(h200), "--any-gpu")
    assert code == 0
    assert lines[0] == f"two GPU models (--any-gpu): {CPU.slug} -> nvidia-h200"
    assert "x0.003" in lines[4]


# ---------------------------------------------------------------- absurd sizes


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--context", str(10**30)], f"argument --context: context {10**30:,} is larger than 33,554,432"),
        (["--context", "32769K"], "argument --context: context 33,555,456 is larger than 33,554,432"),
        (["--batch", "100000"], "argument --batch: batch 100,000 is larger than 65,536"),
        (["--layers", "5000"], "argument --layers: layers 5,000 is larger than 4,096"),
        (["--heads", "8192"], "argument --heads: heads 8,192 is larger than 4,096"),
        (["--kv-heads", "8192"], "argument --kv-heads: kv-heads 8,192 is larger than 4,096"),
        (["--head-dim", "8192"], "argument --head-dim: head-dim 8,192 is larger than 4,096"),
    ],
)
def test_memory_refuses_absurd_sizes_naming_option_value_and_bound(
    capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["memory", "--model", "Llama-3-8B", *argv])
    assert exit_info.value.code == 2
    assert f"{problem}, the most pytest-attnperf accepts" in capsys.readouterr().err


def test_update_refuses_an_absurd_number_of_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["update", "--runs", "100000"])
    assert (
        "argument --runs: runs 100,000 is larger than 1,000, the most pytest-attnperf accepts"
        in capsys.readouterr().err
    )


def test_the_largest_accepted_context_still_computes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["memory", "--model", "Llama-3-8B", f"--context={1 << 25}"]) == 0
    assert "KV cache" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("--attnperf-seqlens=64,100000000", "context length 100,000,000 is larger than 33,554,432"),
        ("--attnperf-heads=100000", "heads 100,000 is larger than 4,096"),
        ("--attnperf-q-len=100000000", "q-len 100,000,000 is larger than 33,554,432"),
        ("--attnperf-batch=1000000", "batch 1,000,000 is larger than 65,536"),
        ("--attnperf-min-samples=2000000", "min-samples 2,000,000 is larger than 1,048,576"),
    ],
)
def test_pytest_refuses_absurd_size_options(pytester: pytest.Pytester, option: str, problem: str) -> None:
    pytester.makepyfile(test_x="def test_x(attn_shape):\n    pass\n")
    result = pytester.runpytest_inprocess("--attnperf", "-p", "no:cacheprovider", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert problem in result.stderr.str()


def test_a_mark_with_an_absurd_size_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="import pytest\n\n@pytest.mark.attnperf_shape(head_dim=10**6)\ndef test_x(attn_shape):\n    pass\n"
    )
    result = pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*head_dim 1,000,000 is larger than 4,096, the most pytest-attnperf accepts*"])


# ---------------------------------------------------------------- a broken FlashAttention-4: one finding, one outcome

# flash_attn.cute is there, and so is a `cutlass` package, but the CuTe DSL is not the version FA4 was built for:
# importing flash_attn.cute fails inside. Finding the modules (what was checked) succeeds.
BROKEN_FA4 = {
    "flash_attn/__init__.py": "",
    "flash_attn/cute/__init__.py": "from cutlass.cute.runtime import from_dlpack  # noqa: F401\n",
    "cutlass/__init__.py": "",
}
BROKEN_REASON = (
    "flash-attn-4 needs the Python module 'flash_attn.cute', which is installed but cannot be imported "
    "(ModuleNotFoundError: No module named 'cutlass.cute') (pip install flash-attn-4 (Hopper and Blackwell))"
)
# FA4 needs a GPU: on this CPU the conftest lets it past the device check, so the import is what decides.
ON_CPU_TOO = """
import dataclasses

from pytest_attnperf.backends.registry import REGISTRY

fa4 = REGISTRY.get("flash-attn-4")
REGISTRY.unregister("flash-attn-4")
REGISTRY.register(dataclasses.replace(fa4, devices=frozenset({"cuda", "cpu"})))
"""


def _write_broken_fa4(folder: Path) -> None:
    for name, text in BROKEN_FA4.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def test_a_broken_fa4_skips_its_cases_with_the_reason(pytester: pytest.Pytester) -> None:
    _write_broken_fa4(pytester.path)
    pytester.makeconftest(ON_CPU_TOO)
    pytester.makepyfile(
        test_fa4="def test_fa4(attnperf, attn_backend, qkv):\n    attnperf.measure(attn_backend, qkv)\n"
    )
    options = [option for option in FAST_OPTIONS if not option.startswith("--attnperf-backends")]
    result = pytester.runpytest_subprocess(
        "--attnperf", *options, "--attnperf-backends=flash-attn-4,eager", "-rs", timeout=300
    )
    result.assert_outcomes(passed=1, skipped=1)
    assert "SKIPPED [1] " in result.stdout.str()
    assert BROKEN_REASON in " ".join(result.stdout.str().split())
    assert "Traceback" not in result.stdout.str()


def test_env_gives_a_broken_fa4_the_reason_the_suite_skips_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import sys

    import torch

    from pytest_attnperf.backends import registry
    from pytest_attnperf.backends.registry import REGISTRY
    from pytest_attnperf.measure.device import describe_device

    _write_broken_fa4(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] in ("flash_attn", "cutlass")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(registry, "_BROKEN_IMPORTS", {})
    fa4 = REGISTRY.get("flash-attn-4")
    monkeypatch.setitem(
        REGISTRY._backends, "flash-attn-4", dataclasses.replace(fa4, devices=frozenset({"cuda", "cpu"}))
    )
    try:
        device = torch.device("cpu")
        assert cli_env._probe_backend("flash-attn-4", device, describe_device(device)) == (False, BROKEN_REASON)
        assert list(registry._BROKEN_IMPORTS) == ["flash_attn.cute"]  # found broken once, not imported per case
    finally:
        for name in [name for name in sys.modules if name.split(".")[0] in ("flash_attn", "cutlass")]:
            del sys.modules[name]


# ---------------------------------------------------------------- output that cannot show a name; empty values


def _ascii_stdout(monkeypatch: pytest.MonkeyPatch) -> io.BytesIO:
    """Standard output as under PYTHONIOENCODING=ascii: a strict ASCII text stream."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", errors="strict"))
    return raw


def test_show_and_diff_escape_a_name_the_output_cannot_encode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = diff_file(tmp_path / "gpu-é.yaml", {"t.py::test_é[a]": diff_entry()}, device={"name": "GPU é™ 日本"})
    raw = _ascii_stdout(monkeypatch)
    assert cli.main(["show", str(path)]) == 0
    assert cli.main(["diff", str(path), str(path), "--all"]) == 0
    sys.stdout.flush()
    out = raw.getvalue().decode("ascii")
    assert "gpu-\\xe9.yaml: GPU \\xe9\\u2122 \\u65e5\\u672c, 1 entries" in out
    assert "test_\\xe9[a]" in out


def test_env_escapes_a_baseline_path_the_output_cannot_encode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_env, "_probe_backend", lambda name, device, info: (True, "ok"))
    folder = tmp_path / "básicas"
    folder.mkdir()
    raw = _ascii_stdout(monkeypatch)
    assert cli.main(["env", "--attnperf-device=cpu", f"--attnperf-baselines={folder}"]) == 0
    sys.stdout.flush()
    assert f"{tmp_path}/b\\xe1sicas/{CPU.slug}.yaml (missing" in raw.getvalue().decode("ascii")


def test_a_run_whose_output_cannot_encode_a_name_still_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        **{"test_é": "def test_é(attnperf, attn_backend, qkv):\n    attnperf.measure(attn_backend, qkv)\n"}
    )
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    result = pytester.runpytest_subprocess(
        "--attnperf", *FAST_OPTIONS, "--attnperf-update", "--attnperf-baselines=básicas", timeout=300
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*attnperf: baseline update*", "*test_\\xe9[[]eager-64[]]: median * (new)*"])


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        (
            "--attnperf-workloads=,",
            "argument --attnperf-workloads: the list ',' names no workload; expected e.g. 'prefill,decode'",
        ),
        ("--attnperf-workloads=", "argument --attnperf-workloads: the list '' names no workload"),
        ("--attnperf-backends=,", "argument --attnperf-backends: the list ',' names no backend"),
        ("--attnperf-seqlens=", "argument --attnperf-seqlens: context length list '' is empty"),
        ("--attnperf-seqlens=,", "argument --attnperf-seqlens: context length list ',' is empty"),
    ],
)
def test_an_empty_list_option_is_a_usage_error_naming_it(pytester: pytest.Pytester, option: str, problem: str) -> None:
    pytester.makepyfile(test_x="def test_x(attn_shape):\n    pass\n")
    result = pytester.runpytest_inprocess("--attnperf", "-p", "no:cacheprovider", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert problem in result.stderr.str()


def test_an_empty_ini_value_means_the_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nattnperf_dtype =\nattnperf_workloads =\n")
    pytester.makepyfile(
        test_x="def test_x(attn_shape):\n    assert (attn_shape.dtype, attn_shape.workload) == ('float32', 'prefill')\n"
    )
    pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["env", "--attnperf-device="], "attnperf env: --attnperf-device: unknown device ''"),
        (["show", ""], "argument file: the baseline file name is empty; give a path\n"),
        (["diff", "", "x.yaml"], "argument old: the old baseline file name is empty; give a path\n"),
        (["memory", "--context", ""], "argument --context: context '' is not a positive integer (e.g. 4096 or 4K)"),
        (["diff", "a.yaml", "b.yaml", "--threshold="], "argument --threshold: cannot read '' as a tolerance"),
    ],
)
def test_an_empty_command_argument_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code  # type: ignore[assignment]
    assert code == 2
    assert problem in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("".join(f"k{i % 2}: {i}\n" for i in range(200_000)), "has 200,000 lines at the top level; a baseline file"),
        (
            "entries:\n" + "".join(f"  k{i % 2}: {i}\n" for i in range(200_000)),
            "has 200,000 keys one level in, more than the 40,000 entries a baseline file may hold",
        ),
    ],
)
def test_a_flood_of_keys_is_refused_before_libyaml_composes_it(text: str, problem: str) -> None:
    with pytest.raises(BaselineFileError, match=re.escape(problem)):
        parse_baseline_text(text, Path("flood.yaml"))
