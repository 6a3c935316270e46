"""Every setting, defined once: its command-line flag, ini key, parser and default.

The same definitions feed pytest's option group and the ``attnperf`` command's argparse
parser; :mod:`.settings` resolves them once per run into a frozen ``Settings``:
command line > ini file > default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .dtypes import parse_dtype
from .option_values import choice, parse_bool, parse_mode, parse_seed, parse_tolerance, parse_workloads, path_text
from .units import (
    argparse_type,
    parse_duration_ms,
    parse_fraction,
    parse_int_list,
    parse_name_list,
    positive_int,
)
from .workloads import MODES, WORKLOADS

POWER_CHOICES = ("auto", "on", "off")  # when the power window is measured (gate/power.py)
# when the machine reference is read (measure/machine_reference.py): every 20 s, or also right before and after each
# case long enough to reach the power cap
MACHINE_REFERENCE_CHOICES = ("periodic", "adjacent")
MissingPolicy = Literal["fail", "skip", "warn"]
MISSING_POLICIES: tuple[MissingPolicy, ...] = ("fail", "skip", "warn")
# Full-size problems on a GPU. A CPU run is a smoke run: one short context, since most of its time is
# FlexAttention compiling once per length and workload (--attnperf-seqlens asks for more).
GPU_SEQLENS = (1024, 4096, 16384, 32768)
CPU_SEQLENS = (256,)
GPU_SHAPE = {"batch": 1, "heads": 32, "head_dim": 128, "dtype": "float16"}
CPU_SHAPE = {"batch": 1, "heads": 8, "head_dim": 64, "dtype": "float32"}
# Paged caches: flash-attn 2 takes only multiples of 256 (the one size every GPU backend runs); a CPU run's
# short contexts need small pages to hold several of them.
GPU_PAGE_SIZE = 256
CPU_PAGE_SIZE = 16


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up (at most: it stops once time and clock are steady) and sample; the minimum
    sample count holds even for long kernels."""

    warmup_ms: float = 1000.0
    rep_ms: float = 100.0
    min_samples: int = 10
    max_samples: int = 500
    flush_l2: bool = True
    cuda_graph: bool = False


@dataclass(frozen=True)
class Option:
    """One setting: ``--attnperf-<name>`` on the command line and ``attnperf_<name>`` in the ini file."""

    name: str
    help: str
    parse: Callable[[object], Any] | None = None  # None: an on/off flag
    metavar: str | None = None
    ini: bool = True
    default: Any = None  # the parsed value when neither the command line nor the ini file sets it

    @property
    def flag(self) -> str:
        return f"--attnperf-{self.name}"

    @property
    def help_text(self) -> str:
        """The help with '%' escaped: argparse formats help strings with the % operator."""
        return self.help.replace("%", "%%")

    def argument_kwargs(self) -> dict[str, Any]:
        """add_argument/addoption keywords; default=None, so an unset flag lets the ini key take effect."""
        common: dict[str, Any] = {"dest": self.dest, "default": None, "help": self.help_text}
        if self.parse is None:
            return {**common, "action": "store_true"}
        return {**common, "metavar": self.metavar, "type": argparse_type(self.parse, self.name)}

    @property
    def dest(self) -> str:
        return "attnperf_" + self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("backends", "comma-separated backends to run (default: all registered)", parse_name_list, "NAMES"),
    Option(
        "seqlens",
        "context lengths, e.g. 1K,4K,16K,32K (default: those on a GPU; on a CPU 256, for attnperf report 128..1024)",
        lambda v: parse_int_list(v, what="context length"),
        "LENGTHS",
    ),
    Option(
        "device", "torch device to measure on: auto, cpu, cuda, cuda:N (default auto)", str, "DEVICE", default="auto"
    ),
    Option("batch", "batch size of the seeded inputs", positive_int("batch"), "N"),
    Option("heads", "query heads of the seeded inputs", positive_int("heads"), "N"),
    Option(
        "kv-heads",
        "key/value heads (fewer than heads: grouped-query attention)",
        positive_int("kv-heads"),
        "N",
    ),
    Option("head-dim", "head dimension of the seeded inputs", positive_int("head-dim"), "N"),
    Option("dtype", "dtype of the seeded inputs: float16, bfloat16, float32", parse_dtype, "DTYPE"),
    Option("causal", "causal masking (true/false, default true)", parse_bool, "BOOL", default=True),
    Option("seed", "seed of the inputs (default 0)", parse_seed, "N", default=0),
    Option(
        "workloads",
        f"comma-separated workloads of tests whose attnperf_shape mark names none: {', '.join(WORKLOADS)} "
        "(default prefill)",
        parse_workloads,
        "NAMES",
    ),
    Option("q-len", "queries per sequence of decode, chunked and varlen-decode cases", positive_int("q-len"), "N"),
    Option(
        "page-size",
        f"tokens per page of the paged KV cache (default {GPU_PAGE_SIZE} on a GPU, {CPU_PAGE_SIZE} on a CPU)",
        positive_int("page-size"),
        "N",
    ),
    Option("mode", f"what to time: {', '.join(MODES)} (default forward)", parse_mode, "MODE", default="forward"),
    Option(
        "baselines",
        "folder of per-GPU baseline YAML files (default: baselines/ under the rootdir; a relative path is taken "
        "from the current folder, in the ini file from the ini file's folder)",
        path_text("baselines folder"),
        "DIR",
        default="baselines",
    ),
    Option(
        "missing",
        "when a test or this GPU has no baseline: fail, skip or warn (default warn)",
        choice("missing-baseline policy", MISSING_POLICIES),
        "POLICY",
        default="warn",
    ),
    Option(
        "guard",
        "when the GPU is shared, throttled or clocked unlike the baseline: warn, refuse or off (default warn)",
        choice("guard", ("warn", "refuse", "off")),
        "POLICY",
        default="warn",
    ),
    Option(
        "update",
        "write or refresh the baselines of the tests that ran and passed equivalence",
        None,
        ini=False,
        default=False,
    ),
    Option(
        "allow-busy-cpu",
        "record baselines from a CPU run even when other processes kept the CPU busy (refused by default; "
        "the check is off with --attnperf-guard=off)",
        None,
    ),
    Option(
        "latency-tolerance",
        "allowed slowdown over the baseline median, e.g. 0.05 or 5%, or auto: per case from its baseline's "
        "between-run spread, 3% to 10% on the unit it was recorded on, more on another unit for short steps "
        "(default auto)",
        parse_tolerance,
        "FRACTION",
        default="auto",
    ),
    Option(
        "memory-tolerance",
        "allowed growth over the baseline peak memory (default 5%)",
        parse_fraction,
        "FRACTION",
        default=0.05,
    ),
    Option(
        "warmup",
        "longest warm-up per case; it ends earlier once time and SM clock are steady (default 1 s)",
        parse_duration_ms,
        "DURATION",
        default=TimingConfig.warmup_ms,
    ),
    Option(
        "rep",
        "sampling budget per case, e.g. 100 ms (default): sampling stops once the median is known within 0.3 % "
        "(95 % confidence), after at most 3x this much kernel time or 500 samples",
        parse_duration_ms,
        "DURATION",
        default=TimingConfig.rep_ms,
    ),
    Option(
        "min-samples",
        "samples per case at least, however long the kernel (default 10)",
        positive_int("min-samples"),
        "N",
        default=TimingConfig.min_samples,
    ),
    Option(
        "cuda-graph",
        "replay each case from a CUDA graph (removes launch overhead for short kernels)",
        parse_bool,
        "BOOL",
        default=TimingConfig.cuda_graph,
    ),
    Option(
        "fingerprint",
        "when the kernels a case runs differ from its baseline's: warn, fail or off (default warn)",
        choice("fingerprint", ("warn", "fail", "off")),
        "POLICY",
        default="warn",
    ),
    Option(
        "power",
        "when to measure each case's mean power while running (calls back to back after its sampling): auto (when "
        "recording baselines with --attnperf-update, and when gating a kernel long enough to reach the power cap whose baseline has a "
        "recorded power and which is more than 1 % slower than it), on or off (default auto)",
        choice("power window", POWER_CHOICES),
        "WHEN",
        default="auto",
    ),
    Option(
        "machine-reference",
        "when the machine reference workload is read, which says how far the machine explains a case's clock: "
        "periodic (at the session's start, then before a case when the last reading is over 20 s old) or adjacent "
        "(also right before and right after each case whose peak-memory call, the kernel and its launch, takes 2.5 ms "
        "or more: the kernels that may reach the power cap; about 0.15 s each). Record and gate with the same one "
        "(default periodic)",
        choice("machine reference", MACHINE_REFERENCE_CHOICES),
        "WHEN",
        default="periodic",
    ),
    Option(
        "calibrate",
        "measure each case's detection limit with injected GPU work and store it in the baselines",
        None,
        ini=False,
        default=False,
    ),
    Option(
        "cache-dir",
        "folder where torch.compile and Triton keep compiled kernels between runs, for a CI cache (default "
        "~/.cache/pytest-attnperf; a TORCHINDUCTOR_CACHE_DIR or TRITON_CACHE_DIR already set is kept)",
        path_text("compile cache folder"),
        "DIR",
    ),
    Option("json", "write every case's result as JSON to this path", path_text("JSON report"), "PATH", ini=False),
    Option(
        "markdown",
        "write the Markdown summary to this path (default: $GITHUB_STEP_SUMMARY when set)",
        path_text("Markdown summary"),
        "PATH",
        ini=False,
    ),
    Option(
        "bmf",
        "write every case's latency, throughput and peak memory in Bencher Metric Format (JSON) to this path",
        path_text("Bencher Metric Format file"),
        "PATH",
    ),
    Option(
        "github-benchmark",
        "write every case's latency and peak memory for github-action-benchmark (tool: customSmallerIsBetter) "
        "to this path",
        path_text("github-action-benchmark file"),
        "PATH",
    ),
    Option(
        "report",
        "write the FlashAttention study (tables, plots, frontier) of this run to this folder",
        path_text("report folder"),
        "DIR",
        ini=False,
    ),
)
OPTIONS_BY_DEST = {option.dest: option for option in OPTIONS}
VALUED_FLAGS = frozenset(option.flag for option in OPTIONS if option.parse is not None)


def add_pytest_options(parser: Any) -> None:
    """Register the --attnperf* options and attnperf_* ini keys on pytest's parser."""
    group = parser.getgroup("attnperf", "attention performance gate (pytest-attnperf)")
    group.addoption(
        "--attnperf",
        action="store_true",
        default=None,
        dest="attnperf",
        help="run the attention benchmarks (tests using attnperf markers or fixtures); skipped without it",
    )
    for option in OPTIONS:
        group.addoption(option.flag, **option.argument_kwargs())
        if option.ini:
            parser.addini(option.dest, help=option.help_text, type="string", default=None)


def add_argparse_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """Add the named options to an argparse parser (the ``attnperf`` command shares pytest's definitions)."""
    by_name = {option.name: option for option in OPTIONS}
    for name in names:
        option = by_name[name]
        parser.add_argument(option.flag, **option.argument_kwargs())


def ini_values(getini: Callable[[str], Any]) -> dict[str, Any]:
    """The attnperf_* ini values, each read through pytest's ``config.getini``."""
    return {option.dest: getini(option.dest) for option in OPTIONS if option.ini}


def to_command_line(values: Mapping[str, Any]) -> list[str]:
    """Turn {dest: raw text} back into --attnperf-* arguments (the CLI forwards to pytest this way)."""
    arguments = []
    for dest, value in values.items():
        option = OPTIONS_BY_DEST.get(dest)
        if option is None or value is None:
            continue
        if option.parse is None:
            if value:
                arguments.append(option.flag)
        else:
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            arguments.append(f"{option.flag}={text}")
    return arguments
