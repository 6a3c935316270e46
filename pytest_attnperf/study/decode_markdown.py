"""The study's decode section as Markdown: latency and GB/s against KV length, FlashAttention on vs off, and where a
whole model's KV cache stops fitting (no torch import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spec.units import format_bytes
from .cells import fastest_flash, gap, md, reason_notes, status_cell, table
from .document import (
    OFF_BACKEND,
    Record,
    as_count,
    as_number,
    as_text,
    backend_of,
    config_grid,
    duration,
    flash_backends,
    length_label,
    mapping,
    ran,
    records,
    significant,
    token_count,
)


def _bandwidth(case: Record, copy: float | None) -> str | None:
    """'812 GB/s, 19% of copy' (the share only where the copy bandwidth was measured)."""
    gbps = as_number(case.get("gbps"))
    if gbps is None:
        return None
    share = as_number(case.get("bandwidth_share"))
    if share is None and copy:
        share = gbps / copy
    return f"{significant(gbps)} GB/s" + (f", {significant(100 * share)}% of copy" if share is not None else "")


def _decode_cell(case: Record | None, copy: float | None) -> str:
    """'12.3 µs (812 GB/s, 19% of copy)', or the status marker."""
    marker = status_cell(case)
    if marker is not None or case is None:
        return marker or "–"
    median = as_number(case.get("median_ms"))
    if median is None:
        return "–"
    moved = _bandwidth(case, copy)
    return f"{duration(median)} ({moved})" if moved else duration(median)


def _limit(frontier: Record | None) -> tuple[int | None, str]:
    """The longest context a whole model's KV cache fits at, and whether it was measured or predicted."""
    if frontier is None:
        return None, ""
    measured = as_count(frontier.get("measured_tokens"))
    if measured is not None:
        return measured, "measured"
    return as_count(frontier.get("predicted_tokens")), "predicted"


def _frontier_for(decode: Record, batch: object) -> Record | None:
    return next((entry for entry in records(decode.get("kv_frontier")) if entry.get("batch") == batch), None)


def _glance(study: Record, decode: Record, config: Record, copy: float | None) -> list[str]:
    """Per length: off (eager), on (the fastest FlashAttention backend) with its GB/s, speedup, does the cache fit."""
    _, seqlens, cells = config_grid(config)
    limit, how = _limit(_frontier_for(decode, config.get("batch")))
    rows = []
    for seqlen in seqlens:
        off = cells.get((OFF_BACKEND, seqlen))
        off_ms = as_number(off.get("median_ms")) if off is not None and ran(off) else None
        on = fastest_flash(cells, seqlen, flash_backends(study))
        on_case = cells.get((on[0], seqlen)) if on else None
        on_cell = f"{duration(on[1])} ({on[0]})" if on else "n/a"
        moved = _bandwidth(on_case, copy) if on_case is not None else None
        speedup = f"**{significant(off_ms / on[1])}×**" if off_ms is not None and on and on[1] > 0 else "–"
        fits = "–" if limit is None else ("fits" if seqlen <= limit else "**does not fit**")
        off_cell = duration(off_ms) if off_ms is not None else (status_cell(off) or "–")
        rows.append([length_label(seqlen), off_cell, on_cell, moved or "–", speedup, fits])
    whole = f"whole model's KV cache ({how})" if how else "whole model's KV cache"
    header = ["KV length", f"off ({OFF_BACKEND})", "on (fastest FlashAttention)", "on: GB/s", "speedup", whole]
    return [f"**{md(as_text(config.get('name')) or 'decode')}**:", "", *table(header, rows), ""]


def _frontier_lines(decode: Record) -> list[str]:
    """One line per batch: weights + the whole KV cache fit up to N tokens, measured and as the calculator predicts."""
    model = md(as_text(decode.get("model")) or "the model")
    layers = as_count(decode.get("layers"))
    lines = []
    for entry in records(decode.get("kv_frontier")):
        per_token = as_number(entry.get("kv_bytes_per_token"))
        weights, free = as_number(entry.get("weights_bytes")), as_number(entry.get("free_bytes"))
        measured, failure = as_count(entry.get("measured_tokens")), as_count(entry.get("first_failure_tokens"))
        predicted = as_count(entry.get("predicted_tokens"))
        text = (
            f"- **batch {as_count(entry.get('batch'))}**: {model}'s weights ({format_bytes(weights)}) and its KV cache"
        )
        text += f" ({layers} layers, {format_bytes(per_token)} per token of context)" if layers and per_token else ""
        if measured is not None:
            text += f" fit up to **{token_count(measured)} tokens** measured"
            text += f" (first failure at {token_count(failure)})" if failure is not None else ""
            if predicted:
                text += f"; the memory calculator predicts {token_count(predicted)} ({gap(predicted / measured - 1 if measured else None)})"
        else:
            text += f" fit up to {token_count(predicted)} tokens by the memory calculator (not measured on this device)"
        lines.append(text + (f", {format_bytes(free)} free." if free is not None else "."))
    if not lines:
        return []
    intro = "The weights plus every layer's K and V at a context length, allocated as a static cache lays them out:"
    return ["### Where the KV cache stops fitting", "", intro, "", *lines, ""]


def _tables(decode: Record, copy: float | None) -> list[str]:
    """Every backend at every length, per batch and workload, with the reasons for empty cells."""
    lines = [
        "### Every backend",
        "",
        "Median time of one decode step (bytes moved over it, share of the copy bandwidth).",
        "",
    ]
    for config in records(decode.get("configs")):
        backends, seqlens, cells = config_grid(config)
        if not seqlens:
            continue
        header = ["backend", *(length_label(n) for n in seqlens)]
        rows = [[md(b), *(_decode_cell(cells.get((b, n)), copy) for n in seqlens)] for b in backends]
        page = as_count(config.get("page_size"))
        title = md(as_text(config.get("name")) or "decode") + (f" (pages of {page} tokens)" if page else "")
        lines += [f"#### {title}", "", *table(header, rows), ""]
        lines += reason_notes(records(config.get("cases")), backend_of, seqlens)
    return lines


def decode_section(study: Mapping[str, Any]) -> list[str]:
    """The decode section, or nothing when the study has none."""
    decode = mapping(study.get("decode"))
    configs = records(decode.get("configs"))
    if not configs:
        return []
    copy = as_number(decode.get("copy_bandwidth_gbps"))
    first = configs[0]
    shape = (
        f"{as_count(first.get('heads'))} query heads, {as_count(first.get('kv_heads'))} KV heads, "
        f"head_dim {as_count(first.get('head_dim'))}, {md(as_text(first.get('dtype')) or '')}"
    )
    lines = ["## Decode: one new token over a KV cache", ""]
    lines += [
        f"One attention layer of {md(as_text(decode.get('model')) or 'the model')} ({shape}): each sequence's newest "
        "token attends to its whole cache. Decode is bound by memory, not arithmetic: GB/s is the bytes one step must "
        "move (the KV cache read once per KV head, the query read, the output written) over its median time"
        + (f", next to this device's measured copy bandwidth of {significant(copy)} GB/s." if copy else "."),
        "",
    ]
    for config in configs:
        if config.get("workload") == "decode":
            lines += _glance(study, decode, config, copy)
    return lines + _frontier_lines(decode) + _tables(decode, copy)
