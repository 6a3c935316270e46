"""The ``attnperf`` command: env, update, calibrate, show, diff, memory, report, export, compare, history, merge."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli_common import CommandError
from .cli_runs import (
    add_run_report_commands,
    command_compare,
    command_export,
    command_history,
    command_merge,
)
from .gate.baselines import BaselineEntry, BaselineFile, BaselineFileError, baseline_path, load_baseline
from .gate.diff import DEFAULT_THRESHOLD
from .project_settings import settings_here
from .spec.device_info import SOFTWARE_KEYS, compute_units
from .spec.option_values import path_text
from .spec.options import Settings, SettingsError, add_argparse_options, to_command_line
from .spec.units import argparse_type, format_bytes, format_ms, parse_fraction, positive_int


def _probe_backend(name: str, device: Any, info: Any) -> tuple[bool, str]:
    """Run a tiny case to prove the backend really works here (catches ABI or driver mismatches)."""
    import torch

    from .backends.registry import REGISTRY, Unsupported
    from .measure.inputs import make_qkv
    from .measure.memory import describe_error
    from .spec.shapes import AttnShape

    backend = REGISTRY.get(name)
    reason = backend.unavailable_reason(info)
    if reason:
        return False, reason
    dtype = "float16" if info.is_cuda else "float32"
    shape = AttnShape(q_len=256, k_len=256, batch=1, heads=4, kv_heads=4, head_dim=64, dtype=dtype)
    reason = backend.unsupported_reason(shape, info)
    if reason:
        return False, reason
    qkv = make_qkv(shape, device=device)
    try:
        with torch.no_grad():
            output = backend.run(*qkv.call_arguments(backend.layout))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Unsupported as unsupported:
        return False, str(unsupported)
    except Exception as error:  # report the failure itself: that is what env is for
        return (
            False,
            f"installed but failed a {shape.label()} run: {describe_error(error)}",
        )
    finite = bool(torch.isfinite(output).all())
    return finite, "ok" if finite else "ran but produced NaN/Inf"


def environment_report(device_spec: str, baselines_dir: Path) -> dict[str, Any]:
    """Everything `attnperf env` prints, as data."""
    from .backends.registry import REGISTRY
    from .measure.device import describe_device, resolve_device

    device = resolve_device(device_spec)
    info = describe_device(device)
    backends = {}
    for name in REGISTRY.names():
        ok, reason = _probe_backend(name, device, info)
        backends[name] = {"available": ok, "reason": reason, "description": REGISTRY.get(name).description}
    path = baseline_path(baselines_dir, info.slug)
    baseline_info: dict[str, Any] = {"path": str(path), "exists": path.exists()}
    try:
        baseline = load_baseline(path)
    except BaselineFileError as error:
        baseline_info["error"] = str(error)
        baseline = None
    if baseline is not None:
        baseline_info["entries"] = len(baseline.entries)
        baseline_info["recorded_with"] = baseline.environment
        baseline_info["differences"] = {
            key: {"baseline": baseline.environment.get(key), "now": value}
            for key, value in info.software().items()
            if key in baseline.environment and baseline.environment.get(key) != value
        }
    return {"device": info.as_dict(), "backends": backends, "baseline": baseline_info}


def _print_environment(report: dict[str, Any]) -> None:
    device = report["device"]
    capability = ".".join(map(str, device["capability"])) if device["capability"] else "-"
    print(f"device       {device['name']} ({device['device']}), capability {capability}, {device['generation']}")
    print(
        f"memory       {format_bytes(device['memory_bytes'])}, {compute_units(device['sm_count'], device.get('cpu_cores'))}"
    )
    for key in SOFTWARE_KEYS:
        print(f"{key:<13}{device[key] or 'not installed'}")
    print("\nbackends")
    for name, entry in report["backends"].items():
        mark = "available  " if entry["available"] else "unavailable"
        print(f"  {name:<15} {mark}  {entry['reason'] if not entry['available'] else entry['description']}")
    baseline = report["baseline"]
    print(
        f"\nbaseline    {baseline['path']} ({'exists' if baseline['exists'] else 'missing: record it with `attnperf update`'})"
    )
    if "error" in baseline:
        print(f"            ERROR: {baseline['error']}")
    if "entries" in baseline:
        print(
            f"            {baseline['entries']} entries, recorded {baseline['recorded_with'].get('recorded_at', '?')}"
        )
        for key, change in baseline["differences"].items():
            print(f"            differs: {key} {change['baseline']} (baseline) vs {change['now']} (now)")
        if not baseline["differences"]:
            print("            same software as when the baseline was recorded")


def _device(spec: str | None) -> Any:
    from .measure.device import resolve_device
    from .measure.known_noise import import_quietly

    try:
        device = resolve_device("auto" if spec is None else spec)  # an empty --attnperf-device= is refused, not auto
    except ValueError as error:
        raise CommandError(f"--attnperf-device: {error}") from None
    import_quietly()  # env and report compile backends too: torch's import-time deprecations, filtered there
    return device


def command_env(arguments: argparse.Namespace) -> int:
    from .output_paths import OutputPathError, check_baselines_folder

    settings = settings_here(_attnperf_flags(arguments))  # a bad ini value: SettingsError, exit 2
    _device(settings.device)  # a device that is not there is an argument error, not a traceback
    try:
        check_baselines_folder(settings.baselines_dir, "--attnperf-baselines", updating=False)
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    report = environment_report(settings.device, settings.baselines_dir)
    if arguments.json:
        print(json.dumps(report, indent=2))
    else:
        _print_environment(report)
    usable = any(entry["available"] for entry in report["backends"].values())
    if "error" in report["baseline"]:
        return 2
    return 0 if usable else 1


def _attnperf_flags(arguments: argparse.Namespace) -> dict[str, Any]:
    return {dest: value for dest, value in vars(arguments).items() if dest.startswith("attnperf_")}


def command_update(arguments: argparse.Namespace, extra: list[str]) -> int:
    from .updating import run_update

    forwarded = to_command_line(_attnperf_flags(arguments))
    runs_dir = Path(os.path.abspath(arguments.runs_dir)) if arguments.runs_dir else None
    return run_update(arguments.runs, [*forwarded, *extra], runs_dir=runs_dir)


def command_calibrate(arguments: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    forwarded = to_command_line(_attnperf_flags(arguments))
    return int(pytest.main(["--attnperf", "--attnperf-calibrate", *forwarded, *extra]))


def _entry_rows(baseline: BaselineFile) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for test_id, entry in sorted(baseline.entries.items()):
        rows.append(
            (
                test_id.split("::", 1)[-1],
                entry.backend or "-",
                format_ms(entry.median_ms),
                format_bytes(entry.peak_bytes),
                "yes" if entry.fits else "no",
                entry.recorded_at,
                _power(entry),
            )
        )
    return rows


def _power(entry: BaselineEntry) -> str:
    """Mean power while running, with its log-sd between the recorded runs: '612 W ±1.2 %'."""
    if entry.power_w is None:
        return "-"
    return f"{entry.power_w:.0f} W" + (f" ±{entry.power_spread * 100:.1f} %" if entry.power_spread is not None else "")


def _load_or_exit(path: Path) -> BaselineFile:
    try:
        baseline = load_baseline(path)
    except BaselineFileError as error:
        raise SystemExit(f"attnperf: {error}") from None
    if baseline is None:
        raise SystemExit(f"attnperf: no baseline file at {path}")
    return baseline


def command_show(arguments: argparse.Namespace) -> int:
    from .report import format_table

    baseline = _load_or_exit(Path(arguments.file))
    print(f"{baseline.path}: {baseline.device.get('name')}, {len(baseline.entries)} entries")
    recorded = ", ".join(
        f"{key} {value}" for key, value in baseline.environment.items() if value and not isinstance(value, dict)
    )
    print(f"recorded with: {recorded}")
    for key, value in baseline.environment.items():
        if isinstance(value, dict) and value:  # gpu_state: one readable line, not a Python dict
            print(f"{key.replace('_', ' ')}: {_readable_fields(value)}")
    print()
    header = ("test", "backend", "median", "peak mem", "fits", "recorded", "power (run spread)")
    for line in format_table(header, _entry_rows(baseline)):
        print(line)
    return 0


_UNIT_ENDINGS = (("_mhz", "MHz"), ("_w", "W"), ("_c", "C"))


def _readable_fields(fields: dict[str, Any]) -> str:
    """{'sm_clock_mhz': 1980, 'throttle_reasons': []} -> 'sm clock 1980 MHz; throttle reasons none'."""
    parts = []
    for key, value in fields.items():
        name, unit = key, ""
        for ending, symbol in _UNIT_ENDINGS:
            if key.endswith(ending):
                name, unit = key.removesuffix(ending), f" {symbol}"
                break
        shown_value = (", ".join(map(str, value)) or "none") if isinstance(value, (list, tuple)) else f"{value}{unit}"
        parts.append(f"{name.replace('_', ' ')} {shown_value}")
    return "; ".join(parts)


def command_diff(arguments: argparse.Namespace) -> int:
    from .gate.diff import device_identity, device_mismatch, diff_baselines
    from .report import format_table

    old, new = _load_or_exit(Path(arguments.old)), _load_or_exit(Path(arguments.new))
    mismatch = device_mismatch(old, new)
    if mismatch and not arguments.any_gpu:
        raise CommandError(mismatch)
    if mismatch:
        print(f"two GPU models (--any-gpu): {device_identity(old.device)} -> {device_identity(new.device)}\n")
    diff = diff_baselines(old, new, threshold=arguments.threshold, show_all=arguments.all)
    if diff.rows:
        for line in format_table(("test", "median", "ratio", "peak memory", "ratio"), diff.rows):
            print(line)
        print()
    print(diff.summary(arguments.threshold, shown_all=arguments.all))
    return 0


def command_report(arguments: argparse.Namespace) -> int:
    from .backends.registry import REGISTRY, BackendError
    from .output_paths import OutputPathError, check_folder_target

    # Every argument is checked before the study measures anything (it takes minutes).
    settings = settings_here(_attnperf_flags(arguments))  # a bad ini value: SettingsError, exit 2
    try:
        REGISTRY.select(settings.backends)
    except BackendError as error:
        raise CommandError(f"--attnperf-backends: {error}") from None
    device = _device(settings.device)
    out = Path(os.path.abspath(arguments.out))
    made_out = not out.exists()
    try:
        check_folder_target(out, "--out")
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    try:
        return _report_into(arguments, settings, device, out)
    except BaseException:
        if made_out:  # a refused or interrupted report leaves no empty folder of ours behind
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty
        raise


def _report_into(arguments: argparse.Namespace, settings: Settings, device: Any, out: Path) -> int:
    from .measure.device import describe_device
    from .spec.options import GPU_SEQLENS
    from .study.decode_plan import CPU_DECODE, GPU_DECODE
    from .study.output import PLOTS_NEED, plots_available, write_study
    from .study.runner import CPU_CONFIGS, CPU_STUDY_SEQLENS, GPU_CONFIGS, StudyConfig, run_study, stderr_progress

    plots = plots_available()
    if not plots:  # said before measuring, not after it
        print(f"attnperf report: writing the tables, study.json and README.md without plots; {PLOTS_NEED}")
    info = describe_device(device)
    configs: tuple[StudyConfig, ...] = GPU_CONFIGS if device.type == "cuda" else CPU_CONFIGS
    if arguments.quick:
        configs = configs[:1]
    if arguments.only == "decode":
        configs = ()
    seqlens = settings.seqlens or (GPU_SEQLENS if device.type == "cuda" else CPU_STUDY_SEQLENS)
    decode = GPU_DECODE if device.type == "cuda" else CPU_DECODE
    if settings.seqlens:  # the decode section's cache lengths too: it was most of a "quick" run
        decode = decode.with_lengths(settings.seqlens)
    command = "attnperf report " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["report"] else "attnperf report"
    study = run_study(
        device,
        info,
        configs=configs,
        seqlens=seqlens,
        backends=settings.backends,
        timing=settings.timing,
        decode=None if arguments.only == "prefill" else decode,
        command=command,
        progress=stderr_progress(),
    )
    for path in write_study(study, out, plots=plots):
        print(f"wrote {path}")
    return 0


def command_memory(arguments: argparse.Namespace) -> int:
    from .study.memory_calculator import format_model_memory, model_memory

    try:
        memory = model_memory(
            arguments.model,
            context_len=arguments.context,
            batch=arguments.batch,
            dtype=arguments.dtype,
            layers=arguments.layers,
            heads=arguments.heads,
            kv_heads=arguments.kv_heads,
            head_dim=arguments.head_dim,
        )
    except ValueError as error:
        raise SystemExit(f"attnperf memory: {error}") from None
    print(format_model_memory(memory))
    return 0


# The first of study.runner's GPU_CONFIGS and CPU_CONFIGS (a test keeps them in step; importing them needs torch).
QUICK_HELP = (
    "only the first configuration: fp16 causal d128 on a GPU, fp32 causal d64 on a CPU "
    "(the decode section still runs: --only prefill leaves it out, --attnperf-seqlens bounds it)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnperf", description="Attention performance gate (pytest-attnperf).")
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env", help="check this runner: GPU, versions, backends, baseline file")
    env.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_argparse_options(env, ("device", "baselines"))
    update = commands.add_parser(
        "update",
        help="run the suite in N independent processes and refresh this GPU's baselines from all N "
        "(extra arguments go to pytest)",
    )
    update.add_argument(
        "--runs",
        type=argparse_type(positive_int("runs")),
        default=3,
        help="independent pytest runs whose spread each entry records (default 3)",
    )
    update.add_argument(
        "--runs-dir",
        type=argparse_type(path_text("--runs-dir folder")),
        default=None,
        help="keep the runs' results in this folder (default: a temporary one): a cancelled or timed-out update "
        "given the same folder again goes on from the runs it finished",
    )
    add_argparse_options(
        update, ("backends", "seqlens", "device", "baselines", "mode", "min-samples", "allow-busy-cpu")
    )
    calibrate = commands.add_parser(
        "calibrate",
        help="measure the smallest slowdown the gate catches in each case (injected GPU work) and store it "
        "in the baselines (extra arguments go to pytest)",
    )
    add_argparse_options(calibrate, ("backends", "seqlens", "device", "baselines", "mode", "min-samples"))
    show = commands.add_parser("show", help="print a baseline file")
    show.add_argument(
        "file", type=argparse_type(path_text("baseline file", required=True)), help="a baselines/<gpu>.yaml file"
    )
    diff = commands.add_parser(
        "diff",
        help="compare two baseline files of one GPU model entry by entry: what changed beyond a threshold, "
        "what was added or removed, and entries that measured another problem (never given a ratio)",
    )
    diff.add_argument("old", type=argparse_type(path_text("old baseline file", required=True)))
    diff.add_argument("new", type=argparse_type(path_text("new baseline file", required=True)))
    diff.add_argument(
        "--threshold",
        type=argparse_type(parse_fraction, "threshold"),
        default=DEFAULT_THRESHOLD,
        help="list an entry when its median or peak memory moved by more than this (default 5%%; 0 lists every change)",
    )
    diff.add_argument("--all", action="store_true", help="list every entry compared, changed or not")
    diff.add_argument(
        "--any-gpu", action="store_true", help="compare files of two GPU models (refused by default: not a regression)"
    )
    report = commands.add_parser(
        "report",
        help="measure the FlashAttention study on this GPU: tables, plots, frontier",
        description="Measure the FlashAttention study: prefill tables per configuration, the memory frontier, and "
        "a decode section (one new token over KV caches). --attnperf-seqlens sets the prefill context lengths and "
        "the decode section's cache lengths (default: 1K-32K on a GPU; on a CPU 128-1024, and caches of 256-4096).",
    )
    report.add_argument(
        "--out",
        default="attnperf-report",
        type=argparse_type(path_text("--out folder")),
        help="folder for README.md, study.json and the plots",
    )
    report.add_argument("--quick", action="store_true", help=QUICK_HELP)
    report.add_argument(
        "--only",
        choices=("prefill", "decode"),
        default=None,
        help="only the prefill configurations, or only the decode section (default: both)",
    )
    add_argparse_options(report, ("backends", "seqlens", "device", "min-samples"))
    memory = commands.add_parser("memory", help="memory of a model shape: KV cache, score matrix, FlashAttention state")
    memory.add_argument("--model", default=None, help="a preset name, e.g. llama-2-70b (or give the shape below)")
    memory.add_argument(
        "--context",
        type=argparse_type(positive_int("context")),
        default=32768,
        help="context length in tokens (default 32768)",
    )
    memory.add_argument("--batch", type=argparse_type(positive_int("batch")), default=1)
    memory.add_argument("--dtype", default="float16", help="float16, bfloat16 or float32")
    for name in ("layers", "heads", "kv-heads", "head-dim"):
        memory.add_argument(f"--{name}", type=argparse_type(positive_int(name)), default=None)
    add_run_report_commands(commands)
    unrun = set(commands.choices) ^ set(COMMANDS)
    if unrun:
        raise RuntimeError(f"attnperf commands without both a parser and an entry in cli.COMMANDS: {sorted(unrun)}")
    return parser


@dataclass(frozen=True)
class Command:
    """What runs one `attnperf` command; ``to_pytest``: pytest takes the arguments it does not know, and prints."""

    run: Callable[..., int]
    to_pytest: bool = False


# One line per command. build_parser() refuses a command missing here, so none can fall through to another.
COMMANDS: dict[str, Command] = {
    "env": Command(command_env),
    "update": Command(command_update, to_pytest=True),
    "calibrate": Command(command_calibrate, to_pytest=True),
    "show": Command(command_show),
    "diff": Command(command_diff),
    "report": Command(command_report),
    "memory": Command(command_memory),
    "export": Command(command_export),
    "compare": Command(command_compare),
    "history": Command(command_history),
    "merge": Command(command_merge),
}
BROKEN_PIPE_EXIT = 128 + 13  # what a shell reports for a command ended by SIGPIPE (as `cat big | head` is)


class _StdoutFailed(Exception):
    """Writing to standard output failed: the reader went away, or the disk under `> file` is full."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class _GuardedStdout:
    """Standard output whose write errors are told apart from those of the files a command writes."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as error:
            raise _StdoutFailed(error) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            raise _StdoutFailed(error) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _escape_what_cannot_be_shown() -> None:
    """A device name or path the output's encoding cannot show (PYTHONIOENCODING=ascii) is escaped, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _escape_what_cannot_be_shown()
    parser = build_parser()
    arguments, extra = parser.parse_known_args(argv)
    command = COMMANDS[arguments.command]
    if command.to_pytest:
        return command.run(arguments, extra)  # pytest's own output
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    stdout, sys.stdout = sys.stdout, _GuardedStdout(sys.stdout)
    try:
        code = command.run(arguments)
        sys.stdout.flush()  # a closed pipe or a full disk shows here, not in the interpreter's last flush
    except (CommandError, SettingsError) as error:
        print(f"attnperf {arguments.command}: {error}", file=sys.stderr)
        return 2
    except _StdoutFailed as failure:
        # Nothing more can be written there: point stdout at /dev/null, so the interpreter's own flush at
        # exit has nowhere to fail. A reader that went away (`attnperf show big.yaml | head`) is no error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        if isinstance(failure.error, BrokenPipeError):
            return BROKEN_PIPE_EXIT
        print(
            f"attnperf {arguments.command}: cannot write to standard output: {failure.error.strerror}", file=sys.stderr
        )
        return 1
    finally:
        sys.stdout = stdout
    return code


if __name__ == "__main__":
    sys.exit(main())
