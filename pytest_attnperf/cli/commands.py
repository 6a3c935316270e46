"""The ``attnperf`` command: its parser, its table of commands and ``main``; update, calibrate, report, memory.

env is in env.py, show and diff (baseline files) in baselines.py, export, compare, history and merge
(stored JSON reports) in reports.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spec.option_values import path_text
from ..spec.options import add_argparse_options, to_command_line
from ..spec.settings import Settings, SettingsError
from ..spec.units import argparse_type, positive_int
from .baselines import add_baseline_file_commands, command_diff, command_show
from .common import CommandError, attnperf_flags, command_device
from .env import add_environment_command, command_env
from .project_settings import settings_here
from .reports import (
    add_run_report_commands,
    command_compare,
    command_export,
    command_history,
    command_merge,
)


def command_update(arguments: argparse.Namespace, extra: list[str]) -> int:
    from ..session.baseline_update import run_update

    forwarded = to_command_line(attnperf_flags(arguments))
    runs_dir = Path(os.path.abspath(arguments.runs_dir)) if arguments.runs_dir else None
    return run_update(arguments.runs, [*forwarded, *extra], runs_dir=runs_dir)


def command_calibrate(arguments: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    forwarded = to_command_line(attnperf_flags(arguments))
    return int(pytest.main(["--attnperf", "--attnperf-calibrate", *forwarded, *extra]))


def command_report(arguments: argparse.Namespace) -> int:
    from ..backends.registry import REGISTRY, BackendError
    from ..session.output_paths import OutputPathError, check_folder_target
    from ..study.resume import ResumeError, holding_folder

    # Every argument is checked before the study measures anything (it takes minutes).
    settings = settings_here(attnperf_flags(arguments))  # a bad ini value: SettingsError, exit 2
    try:
        REGISTRY.select(settings.backends)
    except BackendError as error:
        raise CommandError(f"--attnperf-backends: {error}") from None
    device = command_device(settings.device)
    out = Path(os.path.abspath(arguments.out))
    made_out = not out.exists()
    try:
        check_folder_target(out, "--out")
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    try:
        with holding_folder(out):
            return _report_into(arguments, settings, device, out)
    except ResumeError as error:  # another report measures into --out now
        raise CommandError(str(error)) from None
    except BaseException:
        if made_out:  # a refused or interrupted report leaves no empty folder of ours behind
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty
        raise


def _report_into(arguments: argparse.Namespace, settings: Settings, device: Any, out: Path) -> int:
    from ..measure.device import describe_device
    from ..spec.options import GPU_SEQLENS
    from ..study.configs import CPU_CONFIGS, CPU_STUDY_SEQLENS, GPU_CONFIGS, StudyConfig
    from ..study.decode_plan import CPU_DECODE, GPU_DECODE
    from ..study.output import PLOTS_NEED, plots_available, plots_in, write_study
    from ..study.plan import DECODE_PART, finished_parts, missing_parts
    from ..study.runner import plan_of, run_study, stderr_progress

    plots = plots_available()
    if not plots:  # said before measuring, not after it
        print(f"attnperf report: writing the tables, study.json and README.md without plots; {PLOTS_NEED}")
    info = describe_device(device)
    # The whole study; --quick, --configs and --only choose which of its parts this call measures.
    configs: tuple[StudyConfig, ...] = GPU_CONFIGS if device.type == "cuda" else CPU_CONFIGS
    names = [config.name for config in configs]
    measure = _chosen_configs(arguments, names)
    # Ascending whatever order they were given in: the same lengths are the same study to go on with.
    seqlens = tuple(sorted(settings.seqlens or (GPU_SEQLENS if device.type == "cuda" else CPU_STUDY_SEQLENS)))
    decode = GPU_DECODE if device.type == "cuda" else CPU_DECODE
    if settings.seqlens:  # the decode section's cache lengths too: it was most of a "quick" run
        decode = decode.with_lengths(seqlens)
    plan = plan_of(configs, seqlens, settings.backends, timing=settings.timing, decode=decode)
    saved = out / "study.json"
    previous = _earlier_study(saved, plan, info.as_dict(), fresh=arguments.fresh)
    command = "attnperf report " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["report"] else "attnperf report"

    saves: list[list[Path]] = []  # what each save wrote: README and plots always show everything gathered
    # --fresh over an earlier study: its plots go with it at the first save, not left beside another study's README.
    replaced_plots = plots_in(out) if arguments.fresh and saved.is_file() else set()
    drawn: set[str] = set()  # the parts whose plots this run drew: a save draws only the parts new since (the first,
    # every part it holds, so a study resumed from another folder's copy gets them all)

    def write(document: dict[str, Any], parts: set[str] | None = None) -> list[Path]:
        try:
            return write_study(document, out, plots=plots, parts=parts)
        except OSError as error:  # a full disk, a folder removed mid-run: one line, after minutes of measuring
            raise CommandError(
                f"cannot save the study into {out}: {error.strerror or error}; {saved} is whole as last saved, "
                "and the same command goes on from it"
            ) from None

    def save(document: dict[str, Any]) -> None:
        new_parts = set(finished_parts(document)) - drawn
        saves.append(write(document, new_parts))
        drawn.update(new_parts)
        for stale in replaced_plots - set(saves[-1]):
            stale.unlink(missing_ok=True)
        replaced_plots.clear()
        done = len(finished_parts(document))
        print(
            f"attnperf report: saved {saved} ({done} part{'s' if done != 1 else ''} in; still missing: "
            f"{_listed(missing_parts(document))})",
            flush=True,
        )

    try:
        with _terminated_as_interrupted():
            study = run_study(
                device,
                info,
                configs=configs,
                seqlens=seqlens,
                backends=settings.backends,
                timing=settings.timing,
                decode=decode,
                command=command,
                progress=stderr_progress(),
                measure=measure,
                measure_decode=arguments.only != "prefill",
                previous=previous,
                checkpoint=save,
            )
    except KeyboardInterrupt:
        if saves or previous is not None:
            print(f"attnperf report: interrupted; {saved} keeps the parts finished, and the same command goes on")
        raise
    for path in dict.fromkeys(path for paths in saves for path in paths) if saves else write(study):
        print(f"wrote {path}")  # every file the saves wrote, once; a run that measured nothing draws them anew
    missing = missing_parts(study)
    if missing:
        print(
            f"attnperf report: the study is not complete; missing {_listed(missing)}: attnperf report --out {out} "
            "(with the same --attnperf-* options) measures only those"
        )
    else:
        print(f"attnperf report: the study is complete ({len(names)} configurations and the {DECODE_PART})")
    return 0


@contextlib.contextmanager
def _terminated_as_interrupted() -> Iterator[None]:
    """SIGTERM (a scheduler's time limit) ends the study as Ctrl-C does: a save's temporary file is removed and the
    run says what is kept, instead of a silent end."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    earlier = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, earlier if earlier is not None else signal.SIG_DFL)


def _chosen_configs(arguments: argparse.Namespace, names: list[str]) -> tuple[str, ...]:
    """The configurations this call measures: --configs, --quick (the first) or all; none with --only decode."""
    from ..study.plan import SelectionError, select_configs

    if arguments.configs is not None and (arguments.quick or arguments.only == "decode"):
        other = "--quick" if arguments.quick else "--only decode"
        raise CommandError(f"--configs and {other} both choose the configurations to measure: give one")
    if arguments.only == "decode":
        return ()
    if arguments.quick:
        return tuple(names[:1])
    try:
        return select_configs(arguments.configs, names) if arguments.configs is not None else tuple(names)
    except SelectionError as error:
        raise CommandError(str(error)) from None


def _earlier_study(saved: Path, plan: dict[str, Any], gpu: dict[str, Any], *, fresh: bool) -> dict[str, Any] | None:
    """The study.json an earlier run left in --out, checked to be this study on this GPU model and software
    (none with --fresh: this run's first part replaces it)."""
    from ..study.plan import finished_parts
    from ..study.resume import ResumeError, check_resumable, read_study

    if saved.exists() and not saved.is_file():
        raise CommandError(f"{saved}: not a file, so the study cannot be saved there; choose another --out")
    if fresh and saved.exists():
        print(f"attnperf report: starting over (--fresh): {saved} and its plots are replaced when a part is saved")
    if fresh or not saved.exists():
        return None
    try:
        previous = read_study(saved)
        check_resumable(saved, previous, plan, gpu)
    except ResumeError as error:
        raise CommandError(str(error)) from None
    kept = _listed(finished_parts(previous))
    print(f"attnperf report: going on with {saved}: keeping {kept}; measuring only what is missing")
    return previous


def _listed(parts: Sequence[str]) -> str:
    return ", ".join(repr(part) for part in parts) if parts else "nothing"


def command_memory(arguments: argparse.Namespace) -> int:
    from ..study.memory_calculator import format_model_memory, model_memory

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
    add_environment_command(commands)
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
    add_baseline_file_commands(commands)
    report = commands.add_parser(
        "report",
        help="measure the FlashAttention study on this GPU: tables, plots, frontier",
        description="Measure the FlashAttention study: prefill tables per configuration, the memory frontier, and "
        "a decode section (one new token over KV caches). --attnperf-seqlens sets the prefill context lengths and "
        "the decode section's cache lengths (default: 1K-32K on a GPU; on a CPU 128-1024, and caches of 256-4096). "
        "study.json, README.md and the plots are saved after each configuration and after the decode section: run the command again with the "
        "same --out to go on with a study a time limit cut off (only what is missing is measured).",
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
    report.add_argument(
        "--configs",
        default=None,
        metavar="WHICH",
        help="measure only these prefill configurations: numbers from 1, ranges (2-5) or names, comma-separated "
        "(e.g. 2-5 or 'bf16 causal d128'); the others stay missing for a later run with the same --out",
    )
    report.add_argument(
        "--fresh",
        action="store_true",
        help="start the study over even when --out holds the study.json of an earlier run, replacing it (and its "
        "plots) when the first part is saved (by default its finished configurations and decode section are kept and only what is "
        "missing is measured)",
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
        raise RuntimeError(
            f"attnperf commands without both a parser and an entry in COMMANDS (cli/commands.py): {sorted(unrun)}"
        )
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
