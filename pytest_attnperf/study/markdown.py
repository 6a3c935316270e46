"""The study as GitHub-flavoured Markdown: the answer first, then per-config tables, the frontier, transformers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..spec.device_info import compute_units
from ..spec.units import format_bytes
from .cells import code, fastest_flash, gap, md, reason_notes, status_cell, table
from .decode_markdown import decode_section
from .document import (
    OFF_BACKEND,
    STATUS_CELLS,
    Record,
    as_count,
    as_number,
    as_text,
    backend_of,
    config_grid,
    config_summary,
    duration,
    flash_backends,
    frontier_for,
    gpu_name,
    grid,
    length_label,
    mapping,
    materialised_backends,
    matmul_peak,
    ran,
    records,
    significant,
    token_count,
)
from .plan import missing_parts


def _version(name: str, value: object) -> str | None:
    """'torch 2.11.0' style entry; cuDNN's integer is spelt as a version."""
    text = as_text(value)
    if text is None:
        return None
    if name == "cuDNN" and text.isdigit():
        number = int(text)
        # cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN 8 used major*1000.
        major, rest = divmod(number, 10000 if number >= 90000 else 1000)
        text = f"{major}.{rest // 100}.{rest % 100}"
    return f"{name} {text}"


def _header(study: Record) -> list[str]:
    """Title plus GPU, software, ceilings and the command that produced the study."""
    gpu = mapping(study.get("gpu"))
    lines = [f"# Attention study: FlashAttention on vs off on {md(gpu_name(study))}", ""]
    hardware = [as_text(gpu.get("generation"))]
    capability = gpu.get("capability")
    if isinstance(capability, (list, tuple)) and len(capability) == 2:
        hardware.append(f"compute capability {capability[0]}.{capability[1]}")
    hardware.append(compute_units(gpu.get("sm_count"), gpu.get("cpu_cores")))
    if as_number(gpu.get("memory_bytes")) is not None:
        hardware.append(f"{format_bytes(as_number(gpu.get('memory_bytes')))} memory")
    if as_text(gpu.get("device")):
        hardware.append(code(str(gpu.get("device"))))
    lines.append("- **Device:** " + ", ".join(md(h) if not h.startswith("`") else h for h in hardware if h))
    versions = [("driver", "driver"), ("CUDA", "cuda"), ("cuDNN", "cudnn"), ("torch", "torch")]
    versions += [("triton", "triton"), ("flash-attn", "flash_attn"), ("flash-attn-4", "flash_attn_4")]
    software = [v for label, key in versions if (v := _version(label, gpu.get(key)))]
    if software:
        lines.append("- **Software:** " + md(" · ".join(software)))
    peaks = mapping(study.get("matmul_peak_tflops"))
    ceilings = [f"{dtype} {significant(value)}" for dtype, v in peaks.items() if (value := as_number(v)) is not None]
    if ceilings:
        lines.append("- **Dense matmul peak, measured here (TFLOP/s):** " + md(", ".join(ceilings)))
    command, created = as_text(study.get("command")), as_text(study.get("created"))
    if command or created:
        produced = code(command) if command else "(command not recorded)"
        lines.append(f"- **Produced by:** {produced}" + (f" at {md(created)}" if created else ""))
    return [*lines, *_parts_lines(study), ""]


def _parts_lines(study: Record) -> list[str]:
    """What of the study's plan is still missing, and which run measured which part when runs were several."""
    lines = []
    missing = missing_parts(study) if isinstance(study.get("plan"), Mapping) else []
    if missing:
        named = ", ".join(md(part) for part in missing)
        lines.append(
            f"- **Not measured yet:** {named} (`attnperf report` with the same `--out` and `--attnperf-*` options measures only these)"
        )
    runs = records(study.get("runs"))
    if len(runs) > 1:
        lines += [f"- **Measured in {len(runs)} runs**, each adding the parts named:", ""]
        rows = []
        for number, run in enumerate(runs, start=1):
            parts = ", ".join(md(as_text(mapping(part).get("name")) or "?") for part in records(run.get("parts")))
            card = as_text(run.get("uuid"))
            command = as_text(run.get("command"))
            started = md(as_text(run.get("started")) or "–")
            rows.append([str(number), started, code(card) if card else "not recorded", parts, code(command or "?")])
        lines += table(["run", "started", "card", "parts", "command"], rows, text_columns=(1, 2, 3, 4))
    return lines


def _off_on_row(cells: Mapping[Any, Record], seqlen: int, flash: Sequence[str]) -> tuple[list[str], float | None]:
    """One at-a-glance row (off, on, speedup) and the speedup when both ran."""
    off = cells.get((OFF_BACKEND, seqlen))
    off_ms = as_number(off.get("median_ms")) if off is not None and ran(off) else None
    off_cell = duration(off_ms) if off_ms is not None else (status_cell(off) or "–")
    on = fastest_flash(cells, seqlen, flash)
    if on is not None:
        on_cell = f"{duration(on[1])} ({on[0]})"
    else:
        flash_cases = [cells.get((backend, seqlen)) for backend in flash]
        fits = not any(c is not None and c.get("status") == "does_not_fit" for c in flash_cases)
        on_cell = "n/a" if fits else STATUS_CELLS["does_not_fit"]
    speedup = off_ms / on[1] if off_ms is not None and on is not None and on[1] > 0 else None
    speedup_cell = f"**{significant(speedup)}×**" if speedup is not None else "–"
    return [length_label(seqlen), off_cell, on_cell, speedup_cell], speedup


def _glance_speedups(config: Record, flash: Sequence[str]) -> list[str]:
    """The on/off table for one config, led by a one-sentence answer."""
    _, seqlens, cells = config_grid(config)
    if not seqlens:
        return ["No measurements in this study."]
    rows, ran, off_failed = [], [], []
    for seqlen in seqlens:
        row, speedup = _off_on_row(cells, seqlen, flash)
        rows.append(row)
        if speedup is not None:
            ran.append((seqlen, speedup))
        off = cells.get((OFF_BACKEND, seqlen))
        if off is not None and off.get("status") == "does_not_fit" and fastest_flash(cells, seqlen, flash):
            off_failed.append(length_label(seqlen))
    name = md(as_text(config.get("name")) or "first config")
    lines = [f"**{name}** ({md(config_summary(config))}):", ""]
    lines += [_answer_sentence(ran, off_failed), ""]
    header = ["context", f"FlashAttention off ({OFF_BACKEND})", "FlashAttention on (fastest)", "speedup"]
    return [*lines, *table(header, rows), ""]


def _answer_sentence(ran: Sequence[tuple[int, float]], off_failed: Sequence[str]) -> str:
    """'FlashAttention on runs 5.68×–13.2× as fast as off from 1K to 16K; at 32K off does not fit ...'."""
    parts = []
    if ran:
        low, high = min(s for _, s in ran), max(s for _, s in ran)
        span = (
            f"{significant(low)}×"
            if significant(low) == significant(high)
            else f"{significant(low)}×–{significant(high)}×"
        )
        first, last = length_label(ran[0][0]), length_label(ran[-1][0])
        where = f"at {first}" if first == last else f"from {first} to {last}"
        parts.append(f"FlashAttention on runs **{span}** as fast as off {where}")
    if off_failed:
        parts.append(f"at {', '.join(off_failed)} off does not fit in memory while on runs")
    if not parts:
        return "No length where both FlashAttention on and off ran."
    return "; ".join(parts) + "."


def _glance_frontier(study: Record, config_name: str | None) -> list[str]:
    """Measured frontier of the materialised backends, predicted value beside it."""
    entries = [e for e in frontier_for(study, config_name) if e.get("backend") in materialised_backends(study)]
    entries = entries or [e for e in records(study.get("frontier")) if e.get("backend") in materialised_backends(study)]
    if not entries:
        return []
    memory = as_number(mapping(study.get("gpu")).get("memory_bytes"))
    within = f" in {format_bytes(memory)}" if memory is not None else ""
    lines = [f"Largest context standard attention fits{within}:", ""]
    for entry in entries:
        measured, failure = as_count(entry.get("measured_tokens")), as_count(entry.get("first_failure_tokens"))
        text = f"- **{md(entry.get('backend'))}**: "
        text += f"**{token_count(measured)} tokens** measured" if measured is not None else "not measured"
        if failure is not None:
            text += f" (first failure at {token_count(failure)})"
        predicted = as_count(entry.get("predicted_tokens"))
        if predicted is not None:
            text += f"; the memory model predicted {token_count(predicted)}"
        if len({e.get("config") for e in entries}) > 1 and entry.get("config"):
            text += f" [{md(entry.get('config'))}]"
        lines.append(text + ".")
    return [*lines, ""]


def _glance(study: Record) -> list[str]:
    """The answer block: on/off speedup per length, then where standard attention stops fitting."""
    configs = records(study.get("configs"))
    lines = ["## At a glance", ""]
    if configs:
        lines += _glance_speedups(configs[0], flash_backends(study))
    else:
        lines += ["No configs in this study.", ""]
    first_name = as_text(configs[0].get("name")) if configs else None
    return lines + _glance_frontier(study, first_name)


# ---------------------------------------------------------------- Markdown: per-config tables


def _latency_cell(case: Record | None, peak_tflops: float | None) -> str:
    """'0.358 ms (48.0 TFLOP/s, 6.91%)', or the status marker."""
    marker = status_cell(case)
    if marker is not None or case is None:
        return marker or "–"
    median = as_number(case.get("median_ms"))
    if median is None:
        return "–"
    extras = []
    tflops = as_number(case.get("tflops"))
    if tflops is not None:
        extras.append(f"{significant(tflops)} TFLOP/s")
        # No measured ceiling means no honest share: omit rather than guess.
        if peak_tflops is not None and peak_tflops > 0:
            share = as_number(case.get("peak_share"))
            share = tflops / peak_tflops if share is None else share
            extras.append(f"{significant(100 * share)}%")
    return f"{duration(median)} ({', '.join(extras)})" if extras else duration(median)


def _memory_cell(case: Record | None, eager_ms: float | None) -> str:
    """'143 MiB, 5.68×' (speedup over eager at the same length), or the status marker."""
    marker = status_cell(case)
    if marker is not None or case is None:
        return marker or "–"
    parts = []
    peak = as_number(case.get("peak_bytes"))
    if peak is not None:
        parts.append(format_bytes(peak))
    speedup = as_number(case.get("speedup_vs_eager"))
    median = as_number(case.get("median_ms"))
    if speedup is None and eager_ms is not None and median:
        speedup = eager_ms / median
    if speedup is not None:
        parts.append(f"{significant(speedup)}×")
    return ", ".join(parts) or "–"


def _config_section(study: Record, config: Record, index: int) -> list[str]:
    """Latency table, memory/speedup table and the reasons for empty cells of one config."""
    name = as_text(config.get("name")) or f"config {index + 1}"
    backends, seqlens, cells = config_grid(config)
    lines = [f"## {md(name)}", "", md(config_summary(config)) + ".", ""]
    if not seqlens:
        return [*lines, "No cases measured.", ""]
    header = ["backend", *(length_label(n) for n in seqlens)]
    peak = matmul_peak(study, config.get("dtype"))
    ceiling = (
        f", share of the measured {md(config.get('dtype'))} matmul peak of {significant(peak)} TFLOP/s" if peak else ""
    )
    lines += ["### Latency", "", f"Median forward time (TFLOP/s{ceiling}).", ""]
    rows = [[md(b), *(_latency_cell(cells.get((b, n)), peak) for n in seqlens)] for b in backends]
    lines += [*table(header, rows), ""]
    eager_ms = {n: as_number(c.get("median_ms")) if ran(c := cells.get((OFF_BACKEND, n))) else None for n in seqlens}
    lines += ["### Peak memory and speedup", "", f"Peak memory, speedup over {OFF_BACKEND} at the same length.", ""]
    rows = [[md(b), *(_memory_cell(cells.get((b, n)), eager_ms[n]) for n in seqlens)] for b in backends]
    lines += [*table(header, rows), ""]
    return lines + reason_notes(records(config.get("cases")), backend_of, seqlens)


# ---------------------------------------------------------------- Markdown: frontier, fused limits, transformers


def _frontier_section(study: Record) -> list[str]:
    """Predicted vs measured frontier table, with each prediction's memory breakdown."""
    entries = records(study.get("frontier"))
    if not entries:
        return []
    by_config = len({e.get("config") for e in entries}) > 1
    header = ["backend", *(["config"] if by_config else []), "predicted", "naive", "measured", "first failure"]
    header += ["gap", "explanation"]
    rows = []
    for entry in entries:
        row = [md(entry.get("backend")), *([md(entry.get("config"))] if by_config else [])]
        keys = ("predicted_tokens", "naive_tokens", "measured_tokens", "first_failure_tokens")
        row += [token_count(as_count(entry.get(key))) for key in keys]
        row += [gap(entry.get("gap_fraction")), md(entry.get("explanation") or "")]
        rows.append(row)
    lines = ["## Memory frontier of standard attention", ""]
    lines += ["Largest context that fits, in tokens; gap = (predicted − measured) / measured.", ""]
    return [*lines, *table(header, rows, text_columns=(0, 1, -1) if by_config else (0, -1)), "", *_breakdowns(entries)]


def _breakdowns(entries: Sequence[Record]) -> list[str]:
    """'eager at 20,480 tokens: scores 25.1 GiB + ... = 60.2 GiB of 78.2 GiB free'."""
    lines = []
    for entry in entries:
        items = [
            (str(item[0]), size)
            for item in entry.get("predicted_items") or []
            if isinstance(item, (list, tuple)) and len(item) == 2 and (size := as_number(item[1])) is not None
        ]
        if not items:
            continue
        parts = " + ".join(f"{md(label)} {format_bytes(size)}" for label, size in items)
        text = f"- **{md(entry.get('backend'))}** at {token_count(as_count(entry.get('predicted_tokens')))} tokens: {parts}"
        text += f" = {format_bytes(sum(size for _, size in items))}"
        free = as_number(entry.get("free_bytes"))
        lines.append(text + (f" of {format_bytes(free)} free" if free is not None else ""))
    return ["Memory the model predicts at its frontier:", "", *lines, ""] if lines else []


def _fused_section(study: Record) -> list[str]:
    """One line per fused backend: how far it goes."""
    limits = records(study.get("fused_limits"))
    if not limits:
        return []
    lines = ["## How far fused attention goes", ""]
    for limit in limits:
        statement = as_text(limit.get("statement"))
        if statement is None:
            statement = f"fits up to {token_count(as_count(limit.get('max_tokens')))} tokens"
        where = f" ({md(limit.get('config'))})" if limit.get("config") else ""
        lines.append(f"- **{md(limit.get('backend'))}**{where}: {md(statement)}")
    return [*lines, ""]


def _hf_row(run: Record) -> str:
    """'eager · prefill'."""
    return f"{run.get('attn_implementation')} · {run.get('phase')}"


def _hf_cell(run: Record | None) -> str:
    """'12.6 ms, 4.66 GiB', or the status marker."""
    marker = status_cell(run)
    if marker is not None or run is None:
        return marker or "–"
    parts = [duration(as_number(run.get("median_ms")))]
    if as_number(run.get("peak_bytes")) is not None:
        parts.append(format_bytes(as_number(run.get("peak_bytes"))))
    return ", ".join(parts)


def _transformers_section(study: Record) -> list[str]:
    """One table per model preset: rows implementation × phase, columns sequence length."""
    runs = records(study.get("transformers"))
    if not runs:
        return []
    lines = ["## transformers", "", "Median time and peak memory per `attn_implementation` and phase.", ""]
    presets: dict[tuple[str, Any], list[Record]] = {}
    for run in runs:
        presets.setdefault((str(run.get("preset")), run.get("layers")), []).append(run)
    for (preset, layers), group in presets.items():
        rows, seqlens, cells = grid(group, _hf_row)
        layer_count = as_count(layers)
        title = md(preset) + ("" if layer_count is None else f", {layer_count} layer{'s' if layer_count != 1 else ''}")
        header = ["implementation · phase", *(length_label(n) for n in seqlens)]
        body = [[md(r), *(_hf_cell(cells.get((r, n))) for n in seqlens)] for r in rows]
        lines += [f"### {title}", "", *table(header, body), ""]
        lines += reason_notes(group, _hf_row, seqlens)
    return lines


def render_markdown(study: Mapping[str, Any]) -> str:
    """The study as GitHub-flavoured Markdown: answer first, then per-config tables, frontier, decode, transformers."""
    lines = _header(study) + _glance(study)
    for index, config in enumerate(records(study.get("configs"))):
        lines += _config_section(study, config, index)
    lines += _frontier_section(study) + _fused_section(study) + decode_section(study) + _transformers_section(study)
    return "\n".join(lines).rstrip() + "\n"
