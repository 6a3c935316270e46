"""A run's results in the formats dashboards read (no torch import).

- Bencher Metric Format (BMF, ``bencher run --adapter json --file``): one benchmark per case (its test
  id), with the measures ``latency`` (Bencher's built-in measure, in nanoseconds: the median, bounded
  by the first and third quartiles of the kept samples), ``tflops`` (TFLOP/s) and ``gbps`` (GB/s) where
  the case knows its FLOPs or bytes (their bounds are the latency quartiles turned into rates), and
  ``peak-memory`` (bytes). Bencher keeps one series per branch x testbed x measure, so one file holds
  one GPU model: name the testbed after it (``--testbed <gpu-slug>``).
- github-action-benchmark's ``customSmallerIsBetter``: a list of ``{name, unit, value, range, extra}``;
  per case its median in ms and, as a second entry, its peak memory in MiB (both smaller-is-better;
  throughput goes into ``extra``, since a rate is bigger-is-better).

Both read the document ``--attnperf-json`` writes, so a stored report converts the same way.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .stored import gpu_of

MIB = 2**20
FORMATS = ("bmf", "github-benchmark")


class ExportError(ValueError):
    """A report that cannot be exported in the asked format; the message says why."""


def _quartiles(case: Mapping[str, Any]) -> tuple[float, float] | None:
    """First and third quartile of the kept samples (ms), computed as the gate's IQR is."""
    samples = [value for value in case.get("samples_ms") or [] if isinstance(value, (int, float))]
    if len(samples) < 2:
        return None
    first, _, third = statistics.quantiles(samples, n=4, method="inclusive")
    return first, third


def _exported_cases(document: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """Cases with a median or a peak memory, all of one GPU model (a dashboard series is per machine)."""
    cases = [case for case in document.get("results", []) if case.get("median_ms") or case.get("peak_bytes")]
    models = sorted({gpu_of(case) for case in cases})
    if len(models) > 1:
        raise ExportError(
            f"{what}: the report holds cases of several GPU models ({', '.join(models)}); a dashboard keeps one "
            "series per machine, so export one report per GPU model"
        )
    return cases


def _rate_bounds(rate: float, median: float, quartiles: tuple[float, float] | None) -> dict[str, float]:
    """A rate at the median, bounded by the same rate at the latency quartiles (slower is lower)."""
    metric = {"value": rate}
    if quartiles is not None and quartiles[0] > 0:
        metric["lower_value"] = rate * median / quartiles[1]
        metric["upper_value"] = rate * median / quartiles[0]
    return metric


def bmf_document(document: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """The report in Bencher Metric Format: {test id: {measure slug: {value, lower_value, upper_value}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for case in _exported_cases(document, "Bencher Metric Format"):
        measures: dict[str, dict[str, float]] = {}
        median = case.get("median_ms")
        if median:
            quartiles = _quartiles(case)
            latency = {"value": median * 1e6}
            if quartiles is not None:
                latency["lower_value"], latency["upper_value"] = quartiles[0] * 1e6, quartiles[1] * 1e6
            measures["latency"] = latency
            if case.get("tflops"):
                measures["tflops"] = _rate_bounds(case["tflops"], median, quartiles)
            if case.get("gbps"):
                measures["gbps"] = _rate_bounds(case["gbps"], median, quartiles)
        if case.get("peak_bytes"):
            measures["peak-memory"] = {"value": float(case["peak_bytes"])}
        out[case["test_id"]] = measures
    return out


def _extra(case: Mapping[str, Any], device: str) -> str:
    lines = [f"GPU: {device}", f"verdict: {case.get('verdict', '-')}"]
    if case.get("tflops"):
        lines.append(f"TFLOP/s: {case['tflops']:.4g}")
    if case.get("gbps"):
        lines.append(f"GB/s: {case['gbps']:.4g}")
    if case.get("samples_ms"):
        lines.append(f"samples: {len(case['samples_ms'])}")
    return "\n".join(lines)


def github_benchmark_document(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report as github-action-benchmark's customSmallerIsBetter list."""
    entries: list[dict[str, Any]] = []
    for case in _exported_cases(document, "github-action-benchmark"):
        device = str(case.get("device") or gpu_of(case))
        median = case.get("median_ms")
        if median:
            entry: dict[str, Any] = {"name": case["test_id"], "unit": "ms", "value": median}
            quartiles = _quartiles(case)
            if quartiles is not None:
                entry["range"] = f"IQR {quartiles[0]:.6g}-{quartiles[1]:.6g} ms"
            entry["extra"] = _extra(case, device)
            entries.append(entry)
        if case.get("peak_bytes"):
            entries.append(
                {
                    "name": f"{case['test_id']} peak memory",
                    "unit": "MiB",
                    "value": case["peak_bytes"] / MIB,
                    "extra": f"GPU: {device}\nbytes: {case['peak_bytes']}",
                }
            )
    return entries


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "bmf": bmf_document,
    "github-benchmark": github_benchmark_document,
}


def export_text(document: Mapping[str, Any], fmt: str) -> str:
    if fmt not in CONVERTERS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    return json.dumps(CONVERTERS[fmt](document), indent=2, allow_nan=False) + "\n"


def export_targets(bmf: Path | None, github: Path | None) -> Sequence[tuple[str, Path, str]]:
    """(format, path, the option that asked for it) for each export a run writes."""
    targets = [("bmf", bmf, "--attnperf-bmf"), ("github-benchmark", github, "--attnperf-github-benchmark")]
    return [(fmt, path, source) for fmt, path, source in targets if path is not None]
