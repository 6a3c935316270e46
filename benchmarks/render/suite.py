"""The kernel suite's recorded runs (the record stage: baselines and reports) and the gated runs against them."""

from __future__ import annotations

import re
from typing import Any

from render.format import fmt_bytes, fmt_bytes_range, fmt_ms, join, seqlen_label, table
from render.source import Context, summary_line

SUITE_ID = "tests/suite/test_attention.py::"
PREFILL_ORDER = ("eager", "sdpa-math", "sdpa-efficient", "sdpa-flash", "flash-attn", "torch-varlen", "flex",
                 "sdpa-cudnn", "flash-attn-4")  # fmt: skip


DECODE_ORDER = ("eager", "sdpa-math", "sdpa-efficient", "torch-varlen", "flex", "sdpa-flash", "flash-attn",
                "sdpa-cudnn", "flash-attn-4")  # fmt: skip


def _forward_cases(data: Any) -> dict[tuple[str, int], Any]:
    """(backend, context length) -> baseline entry of the suite's test_forward."""
    cases = {}
    for test_id, entry in data["entries"].items():
        if test_id.removeprefix(SUITE_ID).startswith("test_forward["):
            cases[(entry["backend"], int((entry.get("shape") or {})["k_len"]))] = entry
    return cases


def _fits(entry: Any) -> bool:
    return bool(entry.get("fits", True))


def _median_and_peak(entry: Any) -> str:
    """A baseline entry as one table cell: median time · peak memory, or why there is none."""
    if entry is None:
        return "–"
    return (
        f"{fmt_ms(entry['latency_ms']['median'])} · {fmt_bytes(entry['peak_bytes'])}"
        if _fits(entry)
        else "does not fit"
    )


def prefill(ctx: Context, data: Any) -> list[str]:
    """FlashAttention on vs off for the prompt: every backend's median and peak at each length, from the baselines."""
    cases = _forward_cases(data)
    lengths = sorted({length for _, length in cases})
    backends = [name for name in PREFILL_ORDER if any((name, n) in cases for n in lengths)]

    rows = [[f"`{b}`", *[_median_and_peak(cases.get((b, n))) for n in lengths]] for b in backends]
    speedups = []
    for n in lengths:
        off, on = cases.get(("eager", n)), cases.get(("flash-attn", n))
        if off and on and _fits(off) and _fits(on):
            ratio = off["latency_ms"]["median"] / on["latency_ms"]["median"]
            memory = off["peak_bytes"] / on["peak_bytes"]
            speedups.append(f"{seqlen_label(n)}: {ratio:.1f}× faster, {memory:.0f}× less memory")
        elif off and on and not _fits(off):
            speedups.append(f"{seqlen_label(n)}: standard attention does not fit, `flash-attn` runs")
    shape = next(iter(cases.values()))["shape"]
    runs = join(sorted(str(runs) for runs in {entry.get("runs") for entry in cases.values()}))
    return [
        *table(["backend", *[seqlen_label(n) for n in lengths]], rows, right=range(1, len(lengths) + 1)),
        "",
        f"Median forward time · peak memory over the inputs, {shape['dtype']}, causal, batch {shape['batch']}, "
        f"{shape['heads']} heads, head_dim {shape['head_dim']}; each median is the centre of "
        f"{runs} independent runs (`attnperf update --runs 3`). "
        f"FlashAttention on (`flash-attn`) vs off (`eager`, materialised): {'; '.join(speedups)}.",
    ]


def frontier(ctx: Context, data: Any) -> list[str]:
    """Where the materialising backends stop fitting, and what the fused ones need there."""
    cases = _forward_cases(data)
    lines = []
    for backend in ("eager", "sdpa-math"):
        lengths = sorted(n for b, n in cases if b == backend)
        misfits = [n for n in lengths if not _fits(cases[(backend, n)])]
        fitting = [n for n in lengths if _fits(cases[(backend, n)])]
        if misfits and fitting:
            lines.append(
                f"`{backend}` fits at {seqlen_label(fitting[-1])} (peak {fmt_bytes(cases[(backend, fitting[-1])]['peak_bytes'])}) "
                f"and no longer at {seqlen_label(misfits[0])}"
            )
    longest = max(n for _, n in cases)
    fused = [
        cases[(b, longest)]["peak_bytes"] for b in PREFILL_ORDER if (b, longest) in cases and _fits(cases[(b, longest)])
    ]
    return [
        f"On the {data['device']['name']}'s {fmt_bytes(data['device']['memory_bytes'])}: {'; '.join(lines)}. "
        f"Every fused backend runs {seqlen_label(longest)} in {fmt_bytes_range(min(fused), max(fused))} over the inputs."
    ]


def decode(ctx: Context, report: Any) -> list[str]:
    """One decode step over a KV cache (plain and paged): median and share of the copy bandwidth, from a recorded run."""
    cells: dict[tuple[str, str, int], str] = {}
    for result in report["results"]:
        shape = result.get("shape") or {}
        if shape.get("workload") not in ("decode", "paged") or not result.get("median_ms"):
            continue
        share = result.get("bandwidth_share")
        cell = fmt_ms(result["median_ms"]) + (f" · {share * 100:.0f} %" if share else "")
        cells[(shape["workload"], result["backend"], int(shape["k_len"]))] = cell
    lengths = sorted({n for _, _, n in cells})
    rows = [
        [workload, f"`{backend}`", *[cells.get((workload, backend, n), "–") for n in lengths]]
        for workload in ("decode", "paged")
        for backend in DECODE_ORDER
        if any((workload, backend, n) in cells for n in lengths)
    ]
    header = ["workload", "backend", *[f"{seqlen_label(n)} cache" for n in lengths]]
    return [
        *table(header, rows, right=range(2, len(lengths) + 2)),
        "",
        "One new token per sequence (batch 1, 32 heads, head_dim 128, fp16): median time · the bytes it must move "
        "(Q, the cache it reads, O) per second, as a share of the copy bandwidth measured in the same run. "
        "Paged: the cache in 256-token pages scattered in memory.",
    ]


def record(ctx: Context, text: str) -> list[str]:
    """The three update runs: outcome, wall time, and the sampling's share of the last one."""
    runs = re.findall(r"^run (\d+) of (\d+): exit (\d+), wall (\d+) s, (.*)$", text, flags=re.M)
    finished = [run for run in runs if run[2] == "0"]
    report = ctx.load("record/report-run3.json.gz")
    sampling = sum((r.get("timing_info") or {}).get("sampling_wall_ms", 0.0) for r in report["results"]) / 1e3
    walls = [int(run[3]) for run in finished]
    return [
        f"{len(finished)} runs of the kernel suite, each {finished[-1][4].split(' in ')[0]}; wall "
        f"{', '.join(f'{w} s' for w in walls)} (the first compiles FlexAttention's kernels). In the last run the "
        f"timed sampling took {sampling:.0f} s ({sampling / walls[-1] * 100:.0f} % of its wall time)."
    ]


def gated_runs(ctx: Context, first: str) -> list[str]:
    """Gated runs against the recorded baselines: each one's pytest summary."""
    summaries = [summary_line(first), summary_line(ctx.read("gated/gate-forward-2.log"))]
    failed = sum("failed" in summary for summary in summaries)
    return [
        f"{failed} failed of {len(summaries)} gated runs of `test_forward` against the recorded baselines: "
        + "; ".join(f"`{summary}`" for summary in summaries)
        + "."
    ]


HF_ID = "tests/suite/test_transformers.py::"
HF_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")


def transformers(ctx: Context, data: Any) -> list[str]:
    """The transformers suite's recorded entries: each model x attn_implementation, prefill and decode, per length."""
    cases: dict[tuple[str, str, str, int], Any] = {}
    for test_id, entry in data["entries"].items():
        name = test_id.removeprefix(HF_ID)
        if name == test_id or not name.startswith(("test_prefill[", "test_decode[")):
            continue
        shape = entry["shape"]
        length = int(shape.get("cache_len") or shape["seqlen"])
        cases[(name.split("[", 1)[0].removeprefix("test_"), shape["model"], shape["implementation"], length)] = entry
    if not cases:
        raise ValueError(f"{ctx.path}: no transformers suite entries")
    lengths = sorted({key[3] for key in cases})
    models = sorted({key[1] for key in cases})

    lines: list[str] = []
    for workload, what in (
        ("prefill", "the prompt's forward pass"),
        ("decode", "one new token over a KV cache of that length"),
    ):
        rows = [
            [
                f"{model} `{implementation}`",
                *[_median_and_peak(cases.get((workload, model, implementation, n))) for n in lengths],
            ]
            for model in models
            for implementation in HF_IMPLEMENTATIONS
            if any((workload, model, implementation, n) in cases for n in lengths)
        ]
        lines += [
            f"**{workload}** ({what}):",
            "",
            *table(
                ["model `attn_implementation`", *map(seqlen_label, lengths)], rows, right=range(1, len(lengths) + 1)
            ),
            "",
        ]
    runs = join(sorted(str(runs) for runs in {entry.get("runs") for entry in cases.values()}))
    layers = join(sorted({str(entry["shape"].get("layers")) for entry in cases.values()}))
    return [
        *lines,
        f"Median time · peak memory of a {layers}-layer model of each preset (fp16, batch 1); each median is the centre "
        f"of {runs} independent runs (`attnperf update --runs 3` of `tests/suite/test_transformers.py`).",
    ]
