"""The study as PNG plots: latency and peak memory against context length, one pair per config (matplotlib)."""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec.device_info import slugify
from ..spec.units import format_bytes
from .document import (
    Record,
    as_count,
    as_number,
    as_text,
    config_grid,
    config_summary,
    duration,
    frontier_for,
    gpu_name,
    length_label,
    mapping,
    materialised_backends,
    ran,
    records,
)
from .plan import DECODE_PART

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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


def _colour(backend: str, index: int) -> str:
    """A fixed colour per known backend, so plots of different configs agree."""
    return _COLOURS.get(backend, _SPARE_COLOURS[index % len(_SPARE_COLOURS)])


def _bytes_tick(value: float, _position: object = None) -> str:
    """Axis label for a byte count: '8 MiB', '2 GiB'."""
    return format_bytes(value).replace(".00 ", " ")


def _ms_tick(value: float, _position: object = None) -> str:
    """Axis label for milliseconds: '10 us', '1 ms'."""
    return duration(value)


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
        value = as_number(case.get(key)) if ran(case) else None
        if value is not None and value > 0:  # log axes: nothing to draw at zero
            points.append((seqlen, value))
        elif case is not None and case.get("status") == "does_not_fit":
            failed.append(seqlen)
    return points, failed


def _draw_backends(ax: Axes, config: Record, value_key: str) -> tuple[list[float], list[str], bool]:
    """One line per backend, crosses in a top band where it does not fit; returns values, undrawn backends, band."""
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    backends, seqlens, cells = config_grid(config)
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
        for position, seqlen in enumerate(failed):
            # Fan out the crosses of several backends failing at one length instead of stacking them.
            crowd = failing[seqlen]
            x = seqlen * 2 ** (0.16 * (crowd.index(backend) - (len(crowd) - 1) / 2))
            label = backend if not points and position == 0 else None
            ax.scatter(
                [x], [0.935], marker="X", s=90, color=colour, transform=band, clip_on=False, zorder=5, label=label
            )
        if not points and not failed:
            missing.append(backend)
    return values, missing, banded


def _draw_frontier(ax: Axes, study: Record, config: Record) -> None:
    """Vertical dotted line at each measured frontier of the materialised backends."""
    backends = config_grid(config)[0]
    for entry in frontier_for(study, as_text(config.get("name"))):
        backend, tokens = str(entry.get("backend")), as_count(entry.get("measured_tokens"))
        if backend not in materialised_backends(study) or tokens is None:
            continue
        index = backends.index(backend) if backend in backends else len(backends)
        label = f"{backend} fits up to {tokens:,} tokens"
        ax.axvline(tokens, color=_colour(backend, index), linestyle=":", linewidth=1.8, label=label)


def _style_axes(ax: Axes, seqlens: Sequence[int]) -> None:
    """Log–log axes with 1K/4K/... ticks and a grid."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(seqlens)))
    ax.set_xticklabels([length_label(n) for n in seqlens])
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

    memory = as_number(mapping(study.get("gpu")).get("memory_bytes"))
    ax.set_yscale("log", base=2)
    ax.set_ylim(*_limits(values + ([memory] if memory else []), 1 << 20, 1 << 30))
    ax.yaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.yaxis.set_major_formatter(_y_formatter(ax, _bytes_tick, banded))
    ax.set_ylabel("peak memory")
    if memory:
        ax.axhline(memory, color="0.2", linestyle="--", linewidth=1.2)
        anchor = blended_transform_factory(ax.transAxes, ax.transData)
        label = f"HBM of {gpu_name(study)} ({format_bytes(memory)})"
        ax.text(0.01, memory * 1.12, label, transform=anchor, fontsize=9, color="0.2", va="bottom")
    return "peak memory vs context length"


def _plot(study: Record, config: Record, kind: str, path: Path) -> None:
    """Write one latency or memory plot of one config."""
    from matplotlib import pyplot as plt

    name = as_text(config.get("name")) or "config"
    figure, ax = plt.subplots(figsize=(9.5, 5.2))
    try:
        values, missing, banded = _draw_backends(ax, config, "median_ms" if kind == "latency" else "peak_bytes")
        _draw_frontier(ax, study, config)
        _style_axes(ax, config_grid(config)[1])
        what = _latency_axis(ax, values, banded) if kind == "latency" else _memory_axis(ax, values, banded, study)
        ax.set_title(f"{gpu_name(study)} · {name}\n{what} ({config_summary(config)})", fontsize=11)
        _finish(ax, missing, banded)
        _save_whole(figure, path)
    finally:
        plt.close(figure)


def _save_whole(figure: Figure, path: Path) -> None:
    """Drawn in memory, then written whole: a run killed mid-save (a study's time limit) leaves the last whole plot,
    never a cut-off PNG."""
    from ..gate.baselines import write_atomic

    drawn = io.BytesIO()
    figure.savefig(drawn, format="png", dpi=130, bbox_inches="tight")
    write_atomic(path, drawn.getvalue())


def render_plots(study: Mapping[str, Any], out_dir: Path, parts: Collection[str] | None = None) -> list[Path]:
    """Write latency-<config>.png and memory-<config>.png per config, decode-<config>.png per decode config.

    ``parts`` (configuration names, ``DECODE_PART``): draw only those; a resumable study saves after each part, and
    a part's plots read nothing of the others (the device comes from the study), so the rest are already drawn."""
    import matplotlib

    # Headless: CI runners and pytest sessions have no display.
    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for index, config in enumerate(records(study.get("configs"))):
        slug = slugify(as_text(config.get("name")) or "", default=f"config-{index + 1}")
        if slug in used:
            slug = f"{slug}-{index + 1}"
        used.add(slug)
        if parts is not None and as_text(config.get("name")) not in parts:
            continue
        for kind in ("latency", "memory"):
            path = out_dir / f"{kind}-{slug}.png"
            _plot(study, config, kind, path)
            written.append(path)
    decode = records(mapping(study.get("decode")).get("configs")) if parts is None or DECODE_PART in parts else []
    for index, config in enumerate(decode):
        # Decode: latency against the KV cache's length, one plot per batch and workload.
        path = out_dir / f"decode-{slugify(as_text(config.get('name')) or '', default=f'config-{index + 1}')}.png"
        _plot(study, config, "latency", path)
        written.append(path)
    return written
