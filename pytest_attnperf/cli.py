"""The ``attnperf`` command: env, update, calibrate, show, diff, memory, report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .gate.baselines import BaselineEntry, BaselineFile, BaselineFileError, baseline_path, load_baseline
from .spec.device_info import compute_units
from .spec.option_values import path_text
from .spec.options import add_argparse_options, to_command_line
from .spec.units import argparse_type, format_bytes, format_ms, positive_int


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
            output = backend.run(*qkv.in_layout(backend.layout), shape)
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
    for key in (
        "driver",
        "cuda",
        "cudnn",
        "torch",
        "triton",
        "flash_attn",
        "flash_attn_3",
        "flash_attn_4",
        "transformers",
    ):
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


class CommandError(Exception):
    """A bad argument found after parsing (a device that is not there, an unknown backend): exit 2, one line."""


def _device(spec: str | None) -> Any:
    from .measure.device import resolve_device

    try:
        return resolve_device(spec or "auto")
    except ValueError as error:
        raise CommandError(f"--attnperf-device: {error}") from None


def command_env(arguments: argparse.Namespace) -> int:
    from .output_paths import OutputPathError, check_baselines_folder

    _device(arguments.attnperf_device)  # a device that is not there is an argument error, not a traceback
    baselines = Path(arguments.attnperf_baselines or "baselines")
    try:
        check_baselines_folder(baselines, "--attnperf-baselines", updating=False)
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    report = environment_report(arguments.attnperf_device or "auto", baselines)
    if arguments.json:
        print(json.dumps(report, indent=2))
    else:
        _print_environment(report)
    usable = any(entry["available"] for entry in report["backends"].values())
    if "error" in report["baseline"]:
        return 2
    return 0 if usable else 1


def command_update(arguments: argparse.Namespace, extra: list[str]) -> int:
    from .updating import run_update

    forwarded = to_command_line({k: v for k, v in vars(arguments).items() if k.startswith("attnperf_")})
    return run_update(arguments.runs, [*forwarded, *extra])


def command_calibrate(arguments: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    forwarded = to_command_line({k: v for k, v in vars(arguments).items() if k.startswith("attnperf_")})
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
    recorded = ", ".join(f"{key} {value}" for key, value in baseline.environment.items() if value)
    print(f"recorded with: {recorded}\n")
    header = ("test", "backend", "median", "peak mem", "fits", "recorded", "power (run spread)")
    for line in format_table(header, _entry_rows(baseline)):
        print(line)
    return 0


def diff_rows(old: BaselineFile, new: BaselineFile) -> list[tuple[str, ...]]:
    """Per-entry old -> new, with the ratio; entries only on one side are marked added/removed."""
    rows: list[tuple[str, ...]] = []
    for test_id in sorted(set(old.entries) | set(new.entries)):
        before, after = old.entries.get(test_id), new.entries.get(test_id)
        name = test_id.split("::", 1)[-1]
        if before is None or after is None:
            rows.append((name, "added" if before is None else "removed", "", "", ""))
            continue
        ratio = after.median_ms / before.median_ms if before.median_ms and after.median_ms else None
        memory_ratio = after.peak_bytes / before.peak_bytes if before.peak_bytes and after.peak_bytes else None
        rows.append(
            (
                name,
                f"{format_ms(before.median_ms)} -> {format_ms(after.median_ms)}",
                "-" if ratio is None else f"x{ratio:.3f}",
                f"{format_bytes(before.peak_bytes)} -> {format_bytes(after.peak_bytes)}",
                "-" if memory_ratio is None else f"x{memory_ratio:.3f}",
            )
        )
    return rows


def command_diff(arguments: argparse.Namespace) -> int:
    from .report import format_table

    old, new = _load_or_exit(Path(arguments.old)), _load_or_exit(Path(arguments.new))
    for line in format_table(("test", "median", "ratio", "peak memory", "ratio"), diff_rows(old, new)):
        print(line)
    return 0


def command_report(arguments: argparse.Namespace) -> int:
    from .backends.registry import REGISTRY, BackendError
    from .measure.device import describe_device
    from .output_paths import OutputPathError, check_folder_target
    from .spec.options import CPU_SEQLENS, GPU_SEQLENS, TimingConfig
    from .study.decode_plan import CPU_DECODE, GPU_DECODE
    from .study.output import PLOTS_NEED, plots_available, write_study
    from .study.runner import CPU_CONFIGS, GPU_CONFIGS, StudyConfig, run_study, stderr_progress

    # Every argument is checked before the study measures anything (it takes minutes).
    try:
        REGISTRY.select(arguments.attnperf_backends)
    except BackendError as error:
        raise CommandError(f"--attnperf-backends: {error}") from None
    out = Path(os.path.abspath(arguments.out))
    try:
        check_folder_target(out, "--out")
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    device = _device(arguments.attnperf_device)
    plots = plots_available()
    if not plots:  # said before measuring, not after it
        print(f"attnperf report: writing the tables, study.json and README.md without plots; {PLOTS_NEED}")
    info = describe_device(device)
    configs: tuple[StudyConfig, ...] = GPU_CONFIGS if device.type == "cuda" else CPU_CONFIGS
    if arguments.quick:
        configs = configs[:1]
    if arguments.only == "decode":
        configs = ()
    seqlens = arguments.attnperf_seqlens or (GPU_SEQLENS if device.type == "cuda" else CPU_SEQLENS)
    timing = TimingConfig(min_samples=arguments.attnperf_min_samples or 10)
    command = "attnperf report " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["report"] else "attnperf report"
    study = run_study(
        device,
        info,
        configs=configs,
        seqlens=seqlens,
        backends=arguments.attnperf_backends,
        timing=timing,
        decode=None if arguments.only == "prefill" else (GPU_DECODE if device.type == "cuda" else CPU_DECODE),
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
    add_argparse_options(update, ("backends", "seqlens", "device", "baselines", "mode", "min-samples"))
    calibrate = commands.add_parser(
        "calibrate",
        help="measure the smallest slowdown the gate catches in each case (injected GPU work) and store it "
        "in the baselines (extra arguments go to pytest)",
    )
    add_argparse_options(calibrate, ("backends", "seqlens", "device", "baselines", "mode", "min-samples"))
    show = commands.add_parser("show", help="print a baseline file")
    show.add_argument("file", help="a baselines/<gpu>.yaml file")
    diff = commands.add_parser("diff", help="compare two baseline files entry by entry")
    diff.add_argument("old")
    diff.add_argument("new")
    report = commands.add_parser("report", help="measure the FlashAttention study on this GPU: tables, plots, frontier")
    report.add_argument(
        "--out",
        default="attnperf-report",
        type=argparse_type(path_text("--out folder")),
        help="folder for README.md, study.json and the plots",
    )
    report.add_argument("--quick", action="store_true", help="only the first configuration (fp16 causal d128)")
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
    return parser


COMMANDS = {"env": command_env, "show": command_show, "report": command_report, "memory": command_memory}
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments, extra = parser.parse_known_args(argv)
    if extra and arguments.command not in ("update", "calibrate"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if arguments.command == "update":
        return command_update(arguments, extra)  # pytest's own output
    if arguments.command == "calibrate":
        return command_calibrate(arguments, extra)
    stdout, sys.stdout = sys.stdout, _GuardedStdout(sys.stdout)
    try:
        code = COMMANDS.get(arguments.command, command_diff)(arguments)
        sys.stdout.flush()  # a closed pipe or a full disk shows here, not in the interpreter's last flush
    except CommandError as error:
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
