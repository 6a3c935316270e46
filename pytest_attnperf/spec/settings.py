"""One run's settings, resolved once from the options: command line > ini file > default.

Each value is parsed by its :class:`~.options.Option`'s parser; relative paths are anchored where the
user wrote them; a combination that cannot work (a report without --attnperf, kv-heads that do not
divide the heads) is a :class:`SettingsError` naming where the value came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .option_values import parse_bool
from .options import (
    CPU_PAGE_SIZE,
    CPU_SEQLENS,
    CPU_SHAPE,
    GPU_PAGE_SIZE,
    GPU_SEQLENS,
    GPU_SHAPE,
    OPTIONS,
    OPTIONS_BY_DEST,
    MissingPolicy,
    TimingConfig,
)
from .workloads import Mode


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run."""

    enabled: bool
    backends: tuple[str, ...] | None
    seqlens: tuple[int, ...] | None
    device: str
    batch: int | None
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    dtype: str | None
    causal: bool
    seed: int
    mode: Mode
    workloads: tuple[str, ...] | None
    q_len: int | None
    page_size: int | None
    baselines_dir: Path
    missing: MissingPolicy
    guard: str
    update: bool
    calibrate: bool
    fingerprint: str
    latency_tolerance: float | None  # None: auto
    memory_tolerance: float
    timing: TimingConfig
    json_path: Path | None
    markdown_path: Path | None
    report_dir: Path | None
    bmf_path: Path | None = None
    github_benchmark_path: Path | None = None
    allow_busy_cpu: bool = False
    compile_cache_dir: Path | None = None  # where torch.compile and Triton keep their kernels (None: theirs)
    power: str = "auto"  # when the power window is measured: auto, on, off (gate/power.py)
    machine_reference: str = "periodic"  # when the machine reference is read: periodic, adjacent

    def seqlens_for(self, is_cuda: bool) -> tuple[int, ...]:
        return self.seqlens or (GPU_SEQLENS if is_cuda else CPU_SEQLENS)

    def shape_defaults(self, is_cuda: bool) -> dict[str, Any]:
        """Batch, heads, kv_heads, head_dim, dtype, causal for this device, options applied.

        Raises ValueError when --attnperf-kv-heads does not divide the heads (the session checks it at start).
        """
        defaults: dict[str, Any] = dict(GPU_SHAPE if is_cuda else CPU_SHAPE)
        for key in ("batch", "heads", "head_dim", "dtype"):
            if getattr(self, key) is not None:
                defaults[key] = getattr(self, key)
        defaults["kv_heads"] = self.kv_heads or defaults["heads"]
        defaults["causal"] = self.causal
        defaults["page_size"] = self.page_size or (GPU_PAGE_SIZE if is_cuda else CPU_PAGE_SIZE)
        if self.q_len is not None:
            defaults["q_len"] = self.q_len
        if self.heads is None:
            device = "GPU" if is_cuda else "CPU"
            check_kv_heads(defaults["heads"], self.kv_heads, heads_from=f"the {device} default; set --attnperf-heads")
        return defaults


def check_kv_heads(heads: int, kv_heads: int | None, *, heads_from: str, kv_from: str = "--attnperf-kv-heads") -> None:
    """--attnperf-kv-heads must divide the heads: it is never lowered silently."""
    if kv_heads is not None and heads % kv_heads:
        raise ValueError(
            f"{kv_from}={kv_heads} does not fit the {heads} query heads ({heads_from}): heads must be a multiple of "
            "kv_heads, so kv-heads is at most heads (e.g. heads 32 with kv-heads 8)"
        )


# Options that only say what a measuring run writes: without --attnperf nothing is measured, so nothing would be.
NEED_ATTNPERF = (
    "attnperf_update",
    "attnperf_json",
    "attnperf_markdown",
    "attnperf_report",
    "attnperf_bmf",
    "attnperf_github_benchmark",
)


class SettingsError(ValueError):
    """A bad option or ini value; the message names where it came from and the accepted forms."""


def resolve_settings(
    cli: Mapping[str, Any],
    ini: Mapping[str, str | None],
    *,
    rootdir: Path,
    inifile: Path | None = None,
    invocation_dir: Path | None = None,
) -> Settings:
    """Command line > ini > default, each value parsed by its option's parser.

    Relative paths are taken as users expect, and as pytest's own --basetemp and --junitxml are: from the
    current folder (``invocation_dir``) on the command line, from the ini file's folder in the ini file.
    """
    enabled = bool(cli.get("attnperf"))
    for dest in NEED_ATTNPERF:
        if cli.get(dest) and not enabled:
            flag = OPTIONS_BY_DEST[dest].flag
            fix = (
                "recorded; run `pytest --attnperf --attnperf-update` (or `attnperf update`)"
                if dest == "attnperf_update"
                else f"written; add --attnperf, or drop {flag}"
            )
            raise SettingsError(f"{flag} needs --attnperf: without it nothing is measured, so nothing would be {fix}")
    values: dict[str, Any] = {}
    anchors: dict[str, Path] = {}
    here = invocation_dir or Path.cwd()
    for option in OPTIONS:
        cli_value = cli.get(option.dest)
        if cli_value is not None:
            values[option.dest] = cli_value
            anchors[option.dest] = here
            continue
        raw = ini.get(option.dest) if option.ini else None
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            values[option.dest] = option.default
            anchors[option.dest] = rootdir  # a default path (baselines/) lives under the rootdir
            continue
        try:
            values[option.dest] = option.parse(raw) if option.parse else parse_bool(raw)
        except ValueError as error:
            where = f" in {inifile}" if inifile else ""
            raise SettingsError(f"ini key {option.dest}{where}: {error}") from None
        anchors[option.dest] = inifile.parent if inifile else rootdir

    def given(dest: str) -> str:  # where a value came from, as the user wrote it
        return OPTIONS_BY_DEST[dest].flag if cli.get(dest) is not None else f"ini key {dest}"

    heads, kv_heads = values.get("attnperf_heads"), values.get("attnperf_kv_heads")
    if heads is not None:
        try:
            check_kv_heads(
                heads, kv_heads, heads_from=f"{given('attnperf_heads')}={heads}", kv_from=given("attnperf_kv_heads")
            )
        except ValueError as error:
            raise SettingsError(str(error)) from None
    min_samples = values["attnperf_min_samples"]
    timing = TimingConfig(
        warmup_ms=values["attnperf_warmup"],
        rep_ms=values["attnperf_rep"],
        min_samples=min_samples,
        max_samples=max(TimingConfig.max_samples, min_samples),
        cuda_graph=values["attnperf_cuda_graph"],
    )

    def optional_path(dest: str) -> Path | None:
        return Path(os.path.abspath(anchors[dest] / values[dest])) if values.get(dest) else None

    return Settings(
        enabled=enabled,
        backends=values.get("attnperf_backends"),
        seqlens=values.get("attnperf_seqlens"),
        device=values["attnperf_device"],
        batch=values.get("attnperf_batch"),
        heads=values.get("attnperf_heads"),
        kv_heads=values.get("attnperf_kv_heads"),
        head_dim=values.get("attnperf_head_dim"),
        dtype=values.get("attnperf_dtype"),
        causal=values["attnperf_causal"],
        seed=values["attnperf_seed"],
        mode=values["attnperf_mode"],
        workloads=values.get("attnperf_workloads"),
        q_len=values.get("attnperf_q_len"),
        page_size=values.get("attnperf_page_size"),
        baselines_dir=Path(os.path.abspath(anchors["attnperf_baselines"] / values["attnperf_baselines"])),
        missing=values["attnperf_missing"],
        guard=values["attnperf_guard"],
        update=bool(values["attnperf_update"]),
        calibrate=bool(values["attnperf_calibrate"]),
        fingerprint=values["attnperf_fingerprint"],
        power=values["attnperf_power"],
        machine_reference=values["attnperf_machine_reference"],
        latency_tolerance=None
        if values["attnperf_latency_tolerance"] == "auto"
        else values["attnperf_latency_tolerance"],
        memory_tolerance=values["attnperf_memory_tolerance"],
        timing=timing,
        json_path=optional_path("attnperf_json"),
        markdown_path=optional_path("attnperf_markdown"),
        report_dir=optional_path("attnperf_report"),
        bmf_path=optional_path("attnperf_bmf"),
        github_benchmark_path=optional_path("attnperf_github_benchmark"),
        allow_busy_cpu=bool(values.get("attnperf_allow_busy_cpu")),
        compile_cache_dir=optional_path("attnperf_cache_dir") or default_compile_cache_dir(),
    )


def default_compile_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-attnperf`` (``~/.cache/pytest-attnperf``): kept between runs, unlike /tmp on CI."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-attnperf"
