"""Render the study document (FlashAttention on vs off, memory frontier) as Markdown, PNG plots and JSON.

The study document is the plain dict described by schema ``attnperf-study/1``. Every key other than
``configs`` is optional here, and a malformed value is treated as missing rather than raised on:
a report should still come out of a partial run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from pytest_attnperf.units import format_bytes, format_ms

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Record = Mapping[str, Any]

# "FlashAttention on" is the fastest of these that ran; "off" is the materialised eager path.
FLASH_BACKENDS = ("flash-attn", "sdpa-flash", "flash-attn-3")
OFF_BACKEND = "eager"
# Backends that materialise the score matrix, so they have a memory frontier worth drawing.
MATERIALISED_BACKENDS = ("eager", "sdpa-math")

_STATUS_CELLS = {"does_not_fit": "**does not fit**", "unavailable": "n/a", "error": "error"}
_STATUS_NOTES = {"does_not_fit": "does not fit", "unavailable": "n/a", "error": "error"}
_MAX_REASON_CHARS = 300
_COLOURS = {
    "eager": "#d62728",
    "sdpa-math": "#ff7f0e",
    "sdpa-efficient": "#9467bd",
    "sdpa-flash": "#1f77b4",
    "flash-attn": "#2ca02c",
    "flash-attn-3": "#17becf",
    "flex": "#8c564b",
    "sdpa-cudnn": "#e377c2",
}
_SPARE_COLOURS = ("#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_BAND_BOTTOM = 0.87  # axes fraction where the does-not-fit band starts
_MARKERS = ("o", "s", "D", "^", "v", "<", ">", "p", "h", "*")


# ---------------------------------------------------------------- reading the document


def _num(value: object) -> float | None:
    """A finite number, or None for anything else (None, NaN, bools, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> int | None:
    """An integral count, or None."""
    number = _num(value)
    return int(number) if number is not None else None


def _records(value: object) -> list[Record]:
    """The mappings in a list-valued key; missing or malformed gives an empty list."""
    if not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _mapping(value: object) -> Record:
    """A mapping-valued key, or an empty mapping."""
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    """Non-empty text, or None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _ok(case: Record | None) -> TypeGuard[Record]:
    """Whether a case ran and produced numbers."""
    return case is not None and case.get("status") == "ok"


def _grid(cases: Iterable[Record], row_key: Callable[[Record], str]) -> tuple[list[str], list[int], dict[Any, Record]]:
    """Rows in order of first appearance, sorted lengths, and (row, seqlen) -> case."""
    rows: list[str] = []
    seqlens: set[int] = set()
    cells: dict[Any, Record] = {}
    for case in cases:
        row, seqlen = row_key(case), _int(case.get("seqlen"))
        if seqlen is None:
            continue
        if row not in rows:
            rows.append(row)
        seqlens.add(seqlen)
        cells[(row, seqlen)] = case
    return rows, sorted(seqlens), cells


def _backend(case: Record) -> str:
    """The backend name of a case."""
    return _str(case.get("backend")) or "?"


def _config_grid(config: Record) -> tuple[list[str], list[int], dict[Any, Record]]:
    """Backends, lengths and cells of one config."""
    return _grid(_records(config.get("cases")), _backend)


def _matmul_peak(study: Record, dtype: object) -> float | None:
    """The measured matmul ceiling for a dtype, when the study has one."""
    return _num(_mapping(study.get("matmul_peak_tflops")).get(str(dtype)))


def _frontier_for(study: Record, config_name: str | None) -> list[Record]:
    """Frontier entries of one config (entries that name no config apply to all)."""
    entries = _records(study.get("frontier"))
    return [e for e in entries if e.get("config") is None or e.get("config") == config_name]


# ---------------------------------------------------------------- formatting


def _sig(value: float) -> str:
    """Three significant digits, trailing zeros kept (1.00, 12.9, 342)."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:#.3g}".rstrip(".")


def _ms(milliseconds: float | None) -> str:
    """Like format_ms, but seconds above one second (transformers runs can be long)."""
    if milliseconds is not None and milliseconds >= 1000:
        return f"{milliseconds / 1000:.3g} s"
    return format_ms(milliseconds)


def _tokens(count: int | None) -> str:
    """A token count with thousands separators (exact, not rounded)."""
    return "–" if count is None else f"{count:,}"


def _seqlen_label(seqlen: int) -> str:
    """1024 -> 1K, 32768 -> 32K; lengths that are not whole K stay exact."""
    if seqlen >= 1 << 20 and seqlen % (1 << 20) == 0:
        return f"{seqlen >> 20}M"
    if seqlen >= 1024 and seqlen % 1024 == 0:
        return f"{seqlen // 1024}K"
    return f"{seqlen:,}"


def _slugify(name: str) -> str:
    """File-name slug: 'fp16 causal d128' -> 'fp16-causal-d128'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _md(text: object) -> str:
    """Text safe inside a Markdown table cell or list item: one line, no HTML, no table breaks."""
    flat = " ".join(str(text).split())
    if len(flat) > _MAX_REASON_CHARS:
        flat = flat[: _MAX_REASON_CHARS - 1] + "…"
    flat = re.sub(r"([\\`*_\[\]|])", r"\\\1", flat)
    return flat.replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """Inline code that survives backticks inside the text."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: Sequence[int] = (0,)) -> list[str]:
    """A GitHub table: text columns left-aligned, numbers right-aligned."""
    rule = " | ".join(
        "---" if i in text_columns or i - len(header) in text_columns else "---:" for i in range(len(header))
    )
    lines = ["| " + " | ".join(header) + " |", f"| {rule} |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _version(name: str, value: object) -> str | None:
    """'torch 2.11.0' style entry; cuDNN's integer is spelt as a version."""
    text = _str(value)
    if text is None:
        return None
    if name == "cuDNN" and text.isdigit():
        number = int(text)
        # cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN 8 used major*1000.
        major, rest = divmod(number, 10000 if number >= 90000 else 1000)
        text = f"{major}.{rest // 100}.{rest % 100}"
    return f"{name} {text}"


# ---------------------------------------------------------------- Markdown: header and answer


def _gpu_name(study: Record) -> str:
    """The device name, or a placeholder."""
    return _str(_mapping(study.get("gpu")).get("name")) or "unknown device"


def _header(study: Record) -> list[str]:
    """Title plus GPU, software, ceilings and the command that produced the study."""
    gpu = _mapping(study.get("gpu"))
    lines = [f"# Attention study: FlashAttention on vs off on {_md(_gpu_name(study))}", ""]
    hardware = [_str(gpu.get("generation"))]
    capability = gpu.get("capability")
    if isinstance(capability, (list, tuple)) and len(capability) == 2:
        hardware.append(f"compute capability {capability[0]}.{capability[1]}")
    if _int(gpu.get("sm_count")) is not None:
        hardware.append(f"{_int(gpu.get('sm_count'))} SMs")
    if _num(gpu.get("memory_bytes")) is not None:
        hardware.append(f"{format_bytes(_num(gpu.get('memory_bytes')))} memory")
    if _str(gpu.get("device")):
        hardware.append(_code(str(gpu.get("device"))))
    lines.append("- **Device:** " + ", ".join(_md(h) if not h.startswith("`") else h for h in hardware if h))
    versions = [("driver", "driver"), ("CUDA", "cuda"), ("cuDNN", "cudnn"), ("torch", "torch")]
    versions += [("triton", "triton"), ("flash-attn", "flash_attn")]
    software = [v for label, key in versions if (v := _version(label, gpu.get(key)))]
    if software:
        lines.append("- **Software:** " + _md(" · ".join(software)))
    peaks = _mapping(study.get("matmul_peak_tflops"))
    ceilings = [f"{dtype} {_sig(value)}" for dtype, v in peaks.items() if (value := _num(v)) is not None]
    if ceilings:
        lines.append("- **Dense matmul peak, measured here (TFLOP/s):** " + _md(", ".join(ceilings)))
    command, created = _str(study.get("command")), _str(study.get("created"))
    if command or created:
        produced = _code(command) if command else "(command not recorded)"
        lines.append(f"- **Produced by:** {produced}" + (f" at {_md(created)}" if created else ""))
    return [*lines, ""]


def _fastest_flash(cells: Mapping[Any, Record], seqlen: int) -> tuple[str, float] | None:
    """The fastest FlashAttention backend that ran at this length, with its median."""
    timings = [
        (backend, median)
        for backend in FLASH_BACKENDS
        if _ok(case := cells.get((backend, seqlen))) and (median := _num(case.get("median_ms"))) is not None
    ]
    return min(timings, key=lambda item: item[1]) if timings else None


def _status_cell(case: Record | None) -> str | None:
    """The marker for a cell without numbers, or None when the case ran."""
    if case is None:
        return "–"
    status = _str(case.get("status")) or "unknown"
    if status == "ok":
        return None
    return _STATUS_CELLS.get(status, _md(status.replace("_", " ")))


def _off_on_row(cells: Mapping[Any, Record], seqlen: int) -> tuple[list[str], float | None]:
    """One at-a-glance row (off, on, speedup) and the speedup when both ran."""
    off = cells.get((OFF_BACKEND, seqlen))
    off_ms = _num(off.get("median_ms")) if off is not None and _ok(off) else None
    off_cell = _ms(off_ms) if off_ms is not None else (_status_cell(off) or "–")
    on = _fastest_flash(cells, seqlen)
    if on is not None:
        on_cell = f"{_ms(on[1])} ({on[0]})"
    else:
        flash_cases = [cells.get((backend, seqlen)) for backend in FLASH_BACKENDS]
        fits = not any(c is not None and c.get("status") == "does_not_fit" for c in flash_cases)
        on_cell = "n/a" if fits else _STATUS_CELLS["does_not_fit"]
    speedup = off_ms / on[1] if off_ms is not None and on is not None and on[1] > 0 else None
    speedup_cell = f"**{_sig(speedup)}×**" if speedup is not None else "–"
    return [_seqlen_label(seqlen), off_cell, on_cell, speedup_cell], speedup


def _config_summary(config: Record) -> str:
    """'float16, causal, batch 1, 32 heads (8 KV heads), head_dim 128'."""
    parts = [_str(config.get("dtype"))]
    causal = config.get("causal")
    parts.append(None if causal is None else ("causal" if causal else "not causal"))
    for label, key in (("batch", "batch"), ("heads", "heads"), ("head_dim", "head_dim")):
        value = _int(config.get(key))
        if value is not None:
            parts.append(f"{value} heads" if label == "heads" else f"{label} {value}")
    kv_heads, heads = _int(config.get("kv_heads")), _int(config.get("heads"))
    if kv_heads is not None and kv_heads != heads:
        parts.append(f"{kv_heads} KV heads")
    return ", ".join(p for p in parts if p)


def _glance_speedups(config: Record) -> list[str]:
    """The on/off table for one config, led by a one-sentence answer."""
    _, seqlens, cells = _config_grid(config)
    if not seqlens:
        return ["No measurements in this study."]
    rows, ran, off_failed = [], [], []
    for seqlen in seqlens:
        row, speedup = _off_on_row(cells, seqlen)
        rows.append(row)
        if speedup is not None:
            ran.append((seqlen, speedup))
        off = cells.get((OFF_BACKEND, seqlen))
        if off is not None and off.get("status") == "does_not_fit" and _fastest_flash(cells, seqlen):
            off_failed.append(_seqlen_label(seqlen))
    name = _md(_str(config.get("name")) or "first config")
    lines = [f"**{name}** ({_md(_config_summary(config))}):", ""]
    lines += [_answer_sentence(ran, off_failed), ""]
    header = ["context", f"FlashAttention off ({OFF_BACKEND})", "FlashAttention on (fastest)", "speedup"]
    return [*lines, *_table(header, rows), ""]


def _answer_sentence(ran: Sequence[tuple[int, float]], off_failed: Sequence[str]) -> str:
    """'FlashAttention on runs 5.68×–13.2× as fast as off from 1K to 16K; at 32K off does not fit ...'."""
    parts = []
    if ran:
        low, high = min(s for _, s in ran), max(s for _, s in ran)
        span = f"{_sig(low)}×" if _sig(low) == _sig(high) else f"{_sig(low)}×–{_sig(high)}×"
        first, last = _seqlen_label(ran[0][0]), _seqlen_label(ran[-1][0])
        where = f"at {first}" if first == last else f"from {first} to {last}"
        parts.append(f"FlashAttention on runs **{span}** as fast as off {where}")
    if off_failed:
        parts.append(f"at {', '.join(off_failed)} off does not fit in memory while on runs")
    if not parts:
        return "No length where both FlashAttention on and off ran."
    return "; ".join(parts) + "."


def _glance_frontier(study: Record, config_name: str | None) -> list[str]:
    """Measured frontier of the materialised backends, predicted value beside it."""
    entries = [e for e in _frontier_for(study, config_name) if e.get("backend") in MATERIALISED_BACKENDS]
    entries = entries or [e for e in _records(study.get("frontier")) if e.get("backend") in MATERIALISED_BACKENDS]
    if not entries:
        return []
    memory = _num(_mapping(study.get("gpu")).get("memory_bytes"))
    within = f" in {format_bytes(memory)}" if memory is not None else ""
    lines = [f"Largest context standard attention fits{within}:", ""]
    for entry in entries:
        measured, failure = _int(entry.get("measured_tokens")), _int(entry.get("first_failure_tokens"))
        text = f"- **{_md(entry.get('backend'))}**: "
        text += f"**{_tokens(measured)} tokens** measured" if measured is not None else "not measured"
        if failure is not None:
            text += f" (first failure at {_tokens(failure)})"
        predicted = _int(entry.get("predicted_tokens"))
        if predicted is not None:
            text += f"; the memory model predicted {_tokens(predicted)}"
        if len({e.get("config") for e in entries}) > 1 and entry.get("config"):
            text += f" [{_md(entry.get('config'))}]"
        lines.append(text + ".")
    return [*lines, ""]


def _glance(study: Record) -> list[str]:
    """The answer block: on/off speedup per length, then where standard attention stops fitting."""
    configs = _records(study.get("configs"))
    lines = ["## At a glance", ""]
    if configs:
        lines += _glance_speedups(configs[0])
    else:
        lines += ["No configs in this study.", ""]
    first_name = _str(configs[0].get("name")) if configs else None
    return lines + _glance_frontier(study, first_name)


# ---------------------------------------------------------------- Markdown: per-config tables


def _latency_cell(case: Record | None, peak_tflops: float | None) -> str:
    """'0.358 ms (48.0 TFLOP/s, 6.91%)', or the status marker."""
    marker = _status_cell(case)
    if marker is not None or case is None:
        return marker or "–"
    median = _num(case.get("median_ms"))
    if median is None:
        return "–"
    extras = []
    tflops = _num(case.get("tflops"))
    if tflops is not None:
        extras.append(f"{_sig(tflops)} TFLOP/s")
        # No measured ceiling means no honest share: omit rather than guess.
        if peak_tflops is not None and peak_tflops > 0:
            share = _num(case.get("peak_share"))
            share = tflops / peak_tflops if share is None else share
            extras.append(f"{_sig(100 * share)}%")
    return f"{_ms(median)} ({', '.join(extras)})" if extras else _ms(median)


def _memory_cell(case: Record | None, eager_ms: float | None) -> str:
    """'143 MiB, 5.68×' (speedup over eager at the same length), or the status marker."""
    marker = _status_cell(case)
    if marker is not None or case is None:
        return marker or "–"
    parts = []
    peak = _num(case.get("peak_bytes"))
    if peak is not None:
        parts.append(format_bytes(peak))
    speedup = _num(case.get("speedup_vs_eager"))
    median = _num(case.get("median_ms"))
    if speedup is None and eager_ms is not None and median:
        speedup = eager_ms / median
    if speedup is not None:
        parts.append(f"{_sig(speedup)}×")
    return ", ".join(parts) or "–"


def _reason_notes(cases: Iterable[Record], row_key: Callable[[Record], str], seqlens: Sequence[int]) -> list[str]:
    """Why cells have no numbers: one line per (status, reason), naming rows and lengths once."""
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}
    for case in cases:
        status = _str(case.get("status")) or "unknown"
        seqlen = _int(case.get("seqlen"))
        if status == "ok" or seqlen is None:
            continue
        reason = _str(case.get("reason")) or "no reason recorded"
        groups.setdefault((status, reason), {}).setdefault(row_key(case), []).append(seqlen)
    lines = []
    for (status, reason), rows in groups.items():
        named = []
        for row, lengths in rows.items():
            # A row that failed everywhere for one reason needs no list of lengths.
            every = sorted(set(lengths)) == list(seqlens)
            named.append(_md(row) if every else f"{_md(row)} ({', '.join(_seqlen_label(n) for n in sorted(lengths))})")
        label = _STATUS_NOTES.get(status, status.replace("_", " "))
        lines.append(f"- *{_md(label)}* — {', '.join(named)}: {_md(reason)}")
    return ["Cells without numbers:", "", *lines, ""] if lines else []


def _config_section(study: Record, config: Record, index: int) -> list[str]:
    """Latency table, memory/speedup table and the reasons for empty cells of one config."""
    name = _str(config.get("name")) or f"config {index + 1}"
    backends, seqlens, cells = _config_grid(config)
    lines = [f"## {_md(name)}", "", _md(_config_summary(config)) + ".", ""]
    if not seqlens:
        return [*lines, "No cases measured.", ""]
    header = ["backend", *(_seqlen_label(n) for n in seqlens)]
    peak = _matmul_peak(study, config.get("dtype"))
    ceiling = f", share of the measured {_md(config.get('dtype'))} matmul peak of {_sig(peak)} TFLOP/s" if peak else ""
    lines += ["### Latency", "", f"Median forward time (TFLOP/s{ceiling}).", ""]
    rows = [[_md(b), *(_latency_cell(cells.get((b, n)), peak) for n in seqlens)] for b in backends]
    lines += [*_table(header, rows), ""]
    eager_ms = {n: _num(c.get("median_ms")) if _ok(c := cells.get((OFF_BACKEND, n))) else None for n in seqlens}
    lines += ["### Peak memory and speedup", "", f"Peak memory, speedup over {OFF_BACKEND} at the same length.", ""]
    rows = [[_md(b), *(_memory_cell(cells.get((b, n)), eager_ms[n]) for n in seqlens)] for b in backends]
    lines += [*_table(header, rows), ""]
    return lines + _reason_notes(_records(config.get("cases")), _backend, seqlens)


# ---------------------------------------------------------------- Markdown: frontier, fused limits, transformers


def _gap(value: object) -> str:
    """Signed percentage: -0.0123 -> '-1.23%'."""
    gap = _num(value)
    return "–" if gap is None else f"{'+' if gap > 0 else ''}{_sig(100 * gap)}%"


def _frontier_section(study: Record) -> list[str]:
    """Predicted vs measured frontier table, with each prediction's memory breakdown."""
    entries = _records(study.get("frontier"))
    if not entries:
        return []
    by_config = len({e.get("config") for e in entries}) > 1
    header = ["backend", *(["config"] if by_config else []), "predicted", "naive", "measured", "first failure"]
    header += ["gap", "explanation"]
    rows = []
    for entry in entries:
        row = [_md(entry.get("backend")), *([_md(entry.get("config"))] if by_config else [])]
        keys = ("predicted_tokens", "naive_tokens", "measured_tokens", "first_failure_tokens")
        row += [_tokens(_int(entry.get(key))) for key in keys]
        row += [_gap(entry.get("gap_fraction")), _md(entry.get("explanation") or "")]
        rows.append(row)
    lines = ["## Memory frontier of standard attention", ""]
    lines += ["Largest context that fits, in tokens; gap = (predicted − measured) / measured.", ""]
    return [*lines, *_table(header, rows, text_columns=(0, 1, -1) if by_config else (0, -1)), "", *_breakdowns(entries)]


def _breakdowns(entries: Sequence[Record]) -> list[str]:
    """'eager at 20,480 tokens: scores 25.1 GiB + ... = 60.2 GiB of 78.2 GiB free'."""
    lines = []
    for entry in entries:
        items = [
            (str(item[0]), size)
            for item in entry.get("predicted_items") or []
            if isinstance(item, (list, tuple)) and len(item) == 2 and (size := _num(item[1])) is not None
        ]
        if not items:
            continue
        parts = " + ".join(f"{_md(label)} {format_bytes(size)}" for label, size in items)
        text = f"- **{_md(entry.get('backend'))}** at {_tokens(_int(entry.get('predicted_tokens')))} tokens: {parts}"
        text += f" = {format_bytes(sum(size for _, size in items))}"
        free = _num(entry.get("free_bytes"))
        lines.append(text + (f" of {format_bytes(free)} free" if free is not None else ""))
    return ["Memory the model predicts at its frontier:", "", *lines, ""] if lines else []


def _fused_section(study: Record) -> list[str]:
    """One line per fused backend: how far it goes."""
    limits = _records(study.get("fused_limits"))
    if not limits:
        return []
    lines = ["## How far fused attention goes", ""]
    for limit in limits:
        statement = _str(limit.get("statement"))
        if statement is None:
            statement = f"fits up to {_tokens(_int(limit.get('max_tokens')))} tokens"
        where = f" ({_md(limit.get('config'))})" if limit.get("config") else ""
        lines.append(f"- **{_md(limit.get('backend'))}**{where}: {_md(statement)}")
    return [*lines, ""]


def _hf_row(run: Record) -> str:
    """'eager · prefill'."""
    return f"{run.get('attn_implementation')} · {run.get('phase')}"


def _hf_cell(run: Record | None) -> str:
    """'12.6 ms, 4.66 GiB', or the status marker."""
    marker = _status_cell(run)
    if marker is not None or run is None:
        return marker or "–"
    parts = [_ms(_num(run.get("median_ms")))]
    if _num(run.get("peak_bytes")) is not None:
        parts.append(format_bytes(_num(run.get("peak_bytes"))))
    return ", ".join(parts)


def _transformers_section(study: Record) -> list[str]:
    """One table per model preset: rows implementation × phase, columns sequence length."""
    runs = _records(study.get("transformers"))
    if not runs:
        return []
    lines = ["## transformers", "", "Median time and peak memory per `attn_implementation` and phase.", ""]
    presets: dict[tuple[str, Any], list[Record]] = {}
    for run in runs:
        presets.setdefault((str(run.get("preset")), run.get("layers")), []).append(run)
    for (preset, layers), group in presets.items():
        rows, seqlens, cells = _grid(group, _hf_row)
        count = _int(layers)
        title = _md(preset) + ("" if count is None else f", {count} layer{'s' if count != 1 else ''}")
        header = ["implementation · phase", *(_seqlen_label(n) for n in seqlens)]
        table = [[_md(r), *(_hf_cell(cells.get((r, n))) for n in seqlens)] for r in rows]
        lines += [f"### {title}", "", *_table(header, table), ""]
        lines += _reason_notes(group, _hf_row, seqlens)
    return lines


def render_markdown(study: Mapping[str, Any]) -> str:
    """The study as GitHub-flavoured Markdown: answer first, then per-config tables, frontier, transformers."""
    lines = _header(study) + _glance(study)
    for index, config in enumerate(_records(study.get("configs"))):
        lines += _config_section(study, config, index)
    lines += _frontier_section(study) + _fused_section(study) + _transformers_section(study)
    return "\n".join(lines).rstrip() + "\n"


def render_json(study: Mapping[str, Any]) -> str:
    """The study as stable JSON (sorted keys, indent 2); NaN and infinity raise ValueError."""
    return json.dumps(study, sort_keys=True, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------- plots


def _colour(backend: str, index: int) -> str:
    """A fixed colour per known backend, so plots of different configs agree."""
    return _COLOURS.get(backend, _SPARE_COLOURS[index % len(_SPARE_COLOURS)])


def _bytes_tick(value: float, _position: object = None) -> str:
    """Axis label for a byte count: '8 MiB', '2 GiB'."""
    return format_bytes(value).replace(".00 ", " ")


def _ms_tick(value: float, _position: object = None) -> str:
    """Axis label for milliseconds: '10 us', '1 ms'."""
    return _ms(value)


def _limits(values: Sequence[float], floor: float, ceiling: float) -> tuple[float, float]:
    """Log-axis limits with headroom above for the does-not-fit band."""
    if not values:
        return floor, ceiling
    return min(values) / 2.5, max(values) * 16


def _series(cells: Mapping[Any, Record], backend: str, seqlens: Sequence[int], key: str) -> tuple[list[Any], list[int]]:
    """(seqlen, value) points where a backend ran, and the lengths where it did not fit."""
    points = []
    failed = []
    for seqlen in seqlens:
        case = cells.get((backend, seqlen))
        value = _num(case.get(key)) if _ok(case) else None
        if value is not None and value > 0:  # log axes: nothing to draw at zero
            points.append((seqlen, value))
        elif case is not None and case.get("status") == "does_not_fit":
            failed.append(seqlen)
    return points, failed


def _draw_backends(ax: Axes, config: Record, value_key: str) -> tuple[list[float], list[str], bool]:
    """One line per backend, crosses in a top band where it does not fit; returns values, undrawn backends, band."""
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    backends, seqlens, cells = _config_grid(config)
    series = {backend: _series(cells, backend, seqlens, value_key) for backend in backends}
    failing = {n: [b for b in backends if n in series[b][1]] for n in seqlens}
    banded = any(failing.values())
    if banded:
        # A shaded band (over the grid, under the lines) says "no value here": crosses are not read off the y axis.
        band_patch = Rectangle((0, _BAND_BOTTOM), 1, 1 - _BAND_BOTTOM, transform=ax.transAxes, color="0.94", zorder=1.8)
        ax.add_patch(band_patch)
        ax.text(0.01, 0.985, "does not fit", transform=ax.transAxes, fontsize=8, color="0.35", va="top")
    band = blended_transform_factory(ax.transData, ax.transAxes)
    values: list[float] = []
    missing: list[str] = []
    for index, backend in enumerate(backends):
        colour, marker = _colour(backend, index), _MARKERS[index % len(_MARKERS)]
        points, failed = series[backend]
        if points:
            xs, ys = [x for x, _ in points], [y for _, y in points]
            # Later backends get smaller markers, so identical values (fused kernels' memory) stay visible nested.
            size = 9 - 0.6 * min(index, 7)
            ax.plot(xs, ys, marker=marker, color=colour, label=backend, linewidth=1.8, markersize=size)
            values += ys
        for number, seqlen in enumerate(failed):
            # Fan out the crosses of several backends failing at one length instead of stacking them.
            crowd = failing[seqlen]
            x = seqlen * 2 ** (0.16 * (crowd.index(backend) - (len(crowd) - 1) / 2))
            label = backend if not points and number == 0 else None
            ax.scatter(
                [x], [0.935], marker="X", s=90, color=colour, transform=band, clip_on=False, zorder=5, label=label
            )
        if not points and not failed:
            missing.append(backend)
    return values, missing, banded


def _draw_frontier(ax: Axes, study: Record, config: Record) -> None:
    """Vertical dotted line at each measured frontier of the materialised backends."""
    backends = _config_grid(config)[0]
    for entry in _frontier_for(study, _str(config.get("name"))):
        backend, tokens = str(entry.get("backend")), _int(entry.get("measured_tokens"))
        if backend not in MATERIALISED_BACKENDS or tokens is None:
            continue
        index = backends.index(backend) if backend in backends else len(backends)
        label = f"{backend} fits up to {tokens:,} tokens"
        ax.axvline(tokens, color=_colour(backend, index), linestyle=":", linewidth=1.8, label=label)


def _style_axes(ax: Axes, seqlens: Sequence[int]) -> None:
    """Log–log axes with 1K/4K/... ticks and a grid."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(seqlens)))
    ax.set_xticklabels([_seqlen_label(n) for n in seqlens])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    if seqlens:
        ax.set_xlim(min(seqlens) / 1.5, max(seqlens) * 1.5)
    ax.set_xlabel("context length (tokens)")
    ax.grid(True, which="major", alpha=0.3)


def _finish(ax: Axes, missing: Sequence[str], banded: bool) -> None:
    """Legend outside the axes (so it never covers a line) and a note of backends not drawn."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if banded:
        handles.append(Line2D([], [], marker="X", color="0.3", linestyle="none", markersize=9))
        labels.append("does not fit")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    if missing:
        note = "not drawn (n/a or error): " + ", ".join(missing)
        ax.annotate(note, xy=(1.02, 0.0), xycoords="axes fraction", fontsize=8, color="0.35", va="bottom")


def _y_formatter(ax: Axes, label: Callable[[float], str], banded: bool) -> Any:
    """Tick labels for the y axis, blank inside the does-not-fit band (no value is meant there)."""
    from matplotlib.ticker import FuncFormatter

    def format_tick(value: float, _position: object = None) -> str:
        fraction = ax.transLimits.transform(ax.transScale.transform((1.0, value)))[1]
        return "" if banded and fraction > _BAND_BOTTOM else label(value)

    return FuncFormatter(format_tick)


def _latency_axis(ax: Axes, values: list[float], banded: bool) -> str:
    """Log y axis in ms; returns the plot's subject."""
    ax.set_yscale("log")
    ax.set_ylim(*_limits(values, 1e-2, 1e2))
    ax.yaxis.set_major_formatter(_y_formatter(ax, _ms_tick, banded))
    ax.set_ylabel("median forward latency")
    return "forward latency vs context length"


def _memory_axis(ax: Axes, values: list[float], banded: bool, study: Record) -> str:
    """Log-2 y axis in bytes with the card's HBM as a dashed line; returns the plot's subject."""
    from matplotlib.ticker import LogLocator
    from matplotlib.transforms import blended_transform_factory

    memory = _num(_mapping(study.get("gpu")).get("memory_bytes"))
    ax.set_yscale("log", base=2)
    ax.set_ylim(*_limits(values + ([memory] if memory else []), 1 << 20, 1 << 30))
    ax.yaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.yaxis.set_major_formatter(_y_formatter(ax, _bytes_tick, banded))
    ax.set_ylabel("peak memory")
    if memory:
        ax.axhline(memory, color="0.2", linestyle="--", linewidth=1.2)
        anchor = blended_transform_factory(ax.transAxes, ax.transData)
        label = f"HBM of {_gpu_name(study)} ({format_bytes(memory)})"
        ax.text(0.01, memory * 1.12, label, transform=anchor, fontsize=9, color="0.2", va="bottom")
    return "peak memory vs context length"


def _plot(study: Record, config: Record, kind: str, path: Path) -> None:
    """Write one latency or memory plot of one config."""
    from matplotlib import pyplot as plt

    name = _str(config.get("name")) or "config"
    figure, ax = plt.subplots(figsize=(9.5, 5.2))
    try:
        values, missing, banded = _draw_backends(ax, config, "median_ms" if kind == "latency" else "peak_bytes")
        _draw_frontier(ax, study, config)
        _style_axes(ax, _config_grid(config)[1])
        what = _latency_axis(ax, values, banded) if kind == "latency" else _memory_axis(ax, values, banded, study)
        ax.set_title(f"{_gpu_name(study)} · {name}\n{what} ({_config_summary(config)})", fontsize=11)
        _finish(ax, missing, banded)
        figure.savefig(path, dpi=130, bbox_inches="tight")
    finally:
        plt.close(figure)


def render_plots(study: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write latency-<config>.png and memory-<config>.png per config into out_dir; return the paths."""
    import matplotlib

    # Headless: CI runners and pytest sessions have no display.
    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for index, config in enumerate(_records(study.get("configs"))):
        slug = _slugify(_str(config.get("name")) or "") or f"config-{index + 1}"
        if slug in used:
            slug = f"{slug}-{index + 1}"
        used.add(slug)
        for kind in ("latency", "memory"):
            path = out_dir / f"{kind}-{slug}.png"
            _plot(study, config, kind, path)
            written.append(path)
    return written
