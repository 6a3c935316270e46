"""The study (`attnperf report`) and the timing-fidelity runs: do_bench, Nsight Compute, the timing modes."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from render.format import (
    f1,
    f3,
    fmt_bytes,
    fmt_bytes_range,
    fmt_ms,
    fmt_pct,
    fmt_range,
    fmt_ratio,
    join,
    plural,
    seqlen_label,
    sig,
    span,
    table,
    test_label,
)
from render.source import Context, PytestSummary, RenderError, attnperf_rows, markdown_tables, parse_ms, summary_line

DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def _study_config(ctx: Context, study: dict[str, Any]) -> dict[str, Any]:
    name = ctx.options.get("config", "fp16 causal d128")
    for config in study.get("configs", []):
        if config.get("name") == name:
            return dict(config)
    raise ctx.error(f"no config named {name!r}", "study.json")


def _cases(config: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(case["backend"], case["seqlen"]): case for case in config.get("cases", [])}


def _ok(case: dict[str, Any] | None) -> bool:
    return case is not None and case.get("status") == "ok" and case.get("median_ms") is not None


def _cell(case: dict[str, Any] | None, tflops: bool = False) -> str:
    if case is None:
        return "–"
    if not _ok(case):
        return {"does_not_fit": "**does not fit**", "unavailable": "n/a"}.get(case.get("status", ""), "error")
    return fmt_ms(case["median_ms"]) + (f" ({sig(case['tflops'])} TFLOP/s)" if tflops and case.get("tflops") else "")


def _environment(study: dict[str, Any]) -> str:
    gpu = study.get("gpu", {})
    cudnn = gpu.get("cudnn")
    if isinstance(cudnn, str) and cudnn.isdigit():
        cudnn = f"{int(cudnn) // 10000}.{int(cudnn) % 10000 // 100}"
    parts = [f"torch {gpu.get('torch')}", f"CUDA {gpu.get('cuda')}", f"cuDNN {cudnn}"]
    parts += [
        f"{key.replace('_', '-')} {gpu[key]}" for key in ("flash_attn", "flash_attn_3", "flash_attn_4") if gpu.get(key)
    ]
    parts.append(f"triton {gpu.get('triton')}")
    return f"{gpu.get('name', 'the GPU')} ({', '.join(parts)})"


def answer(ctx: Context, study: Any) -> list[str]:
    """FlashAttention on vs off: eager, flash-attn, sdpa-flash, the speedup and the fastest backend per length."""
    config = _study_config(ctx, study)
    cases = _cases(config)
    seqlens = sorted({seqlen for _, seqlen in cases})
    fastest = {}
    for seqlen in seqlens:
        ran = [case for (_, length), case in cases.items() if length == seqlen and _ok(case)]
        if ran:
            fastest[seqlen] = min(ran, key=lambda case: case["median_ms"])
    names = {case["backend"] for case in fastest.values()}
    one_fastest = next(iter(names)) if len(names) == 1 else None
    flash_version = study.get("gpu", {}).get("flash_attn")
    header = [
        "context",
        "off: eager (matmul, softmax, matmul)",
        f"on: flash-attn {flash_version}" if flash_version else "on: flash-attn",
        "on: sdpa-flash",
        "speedup (flash-attn)",
        f"fastest: {one_fastest}" if one_fastest else "fastest",
    ]
    rows = []
    for seqlen in seqlens:
        flash, best = cases.get(("flash-attn", seqlen)), fastest.get(seqlen)
        speedup = flash.get("speedup_vs_eager") if flash else None
        best_cell = _cell(best, tflops=seqlen == seqlens[-1])
        if best is not None and one_fastest is None:
            best_cell += f" ({best['backend']})"
        eager, sdpa = _cell(cases.get(("eager", seqlen))), _cell(cases.get(("sdpa-flash", seqlen)))
        flash_cell = _cell(flash, tflops=seqlen == seqlens[-1])
        rows.append([seqlen_label(seqlen), eager, flash_cell, sdpa, f"{sig(speedup)}×" if speedup else "–", best_cell])
    dtype = DTYPES.get(config["dtype"], config["dtype"])
    heads = f"{config['heads']} heads"
    if config.get("kv_heads") not in (None, config["heads"]):
        heads += f" ({config['kv_heads']} KV heads)"
    shape = (
        f"{dtype}, {'causal' if config.get('causal') else 'not causal'}, batch {config['batch']}, {heads}, "
        f"head_dim {config['head_dim']}, forward"
    )
    return [
        f"Measured with `attnperf report` on an {_environment(study)}, "
        f"`{ctx.command('study.json')}` on the GPU machine.",
        f"Full tables, {plural(len(study.get('configs', [])), 'configuration')}, plots and the frontier explanation: "
        f"{ctx.link('README.md')}.",
        "",
        f"{shape}, median of CUDA-event samples:",
        "",
        *table(header, rows, right=range(1, 6)),
    ]


def _score_matrices(entry: dict[str, Any], config: dict[str, Any], tokens: int) -> float:
    """How many score matrices (batch x heads x N x N in the input dtype) fit in the free memory above q, k, v."""
    size = {"float16": 2, "bfloat16": 2, "float32": 4}[config["dtype"]]
    heads, kv_heads = config["heads"], config.get("kv_heads") or config["heads"]
    inputs = config["batch"] * tokens * (heads + 2 * kv_heads) * config["head_dim"] * size
    score = config["batch"] * heads * tokens * tokens * size
    return float((entry["free_bytes"] - inputs) / score)


def frontier(ctx: Context, study: Any) -> list[str]:
    """Where standard attention stops fitting: measured, first failure, the memory model, the naive model."""
    config = _study_config(ctx, study)
    entries = [entry for entry in study.get("frontier", []) if entry.get("config") == config["name"]]
    if not entries:
        raise ctx.error(f"no frontier for {config['name']!r}")
    causal = "causal" if config.get("causal") else "not causal"
    steps = {entry["first_failure_tokens"] - entry["measured_tokens"] for entry in entries}
    step = f"bisected to {next(iter(steps))} tokens" if len(steps) == 1 else "bisected"
    keys = ("measured_tokens", "first_failure_tokens", "predicted_tokens", "naive_tokens")
    rows = [[f"{entry['backend']} ({causal})", *(f"{entry[key]:,}" for key in keys)] for entry in entries]
    dtype = DTYPES.get(config["dtype"], config["dtype"])
    notes = []
    for entry in entries:
        optimism = entry["naive_tokens"] / entry["measured_tokens"] - 1
        low = _score_matrices(entry, config, entry["first_failure_tokens"])
        high = _score_matrices(entry, config, entry["measured_tokens"])
        notes.append(
            f"- **{entry['backend']}**: the naive model is {fmt_pct(optimism)} too optimistic; what fits means "
            f"{fmt_range(f'{low:.1f}', f'{high:.1f}')} {dtype} score matrices' worth of memory above q, k and v at the peak."
        )
    if all(entry["predicted_tokens"] == entry["measured_tokens"] for entry in entries):
        model = "The memory model's prediction equals the measured frontier for every backend"
    else:
        model = "The memory model predicts " + join([f"{e['backend']} {e['predicted_tokens']:,}" for e in entries])
    model += " in this fresh process"
    if ctx.exists("ci/ci-gate.log"):
        found = re.findall(
            rf"frontier {re.escape(config['name'])} \| ([\w-]+): ([\d,]+) tokens \(predicted ([\d,]+)\)",
            ctx.read("ci/ci-gate.log"),
        )
        if found:
            study_measured = {entry["backend"]: f"{entry['measured_tokens']:,}" for entry in entries}
            moved = any(study_measured.get(backend) != measured for backend, measured, _ in found)
            model += (
                "; inside pytest after the whole suite (the CI run's `--attnperf-report`) the same bisection gave "
                + join(
                    [f"{backend} {measured} tokens (predicted {predicted})" for backend, measured, predicted in found]
                )
                + (": what fits depends on the allocator's state, not only on the shape" if moved else "")
            )
    fused = [
        c
        for c in config.get("cases", [])
        if c["backend"] not in ("eager", "sdpa-math") and _ok(c) and c.get("peak_bytes")
    ]
    longest = max((case["seqlen"] for case in fused), default=None)
    if longest is not None:
        peaks = [case["peak_bytes"] for case in fused if case["seqlen"] == longest]
        notes.append(
            f"- **fused kernels** ({join(sorted({case['backend'] for case in fused if case['seqlen'] == longest}))}) "
            f"need {fmt_bytes_range(min(peaks), max(peaks))} above their inputs at {seqlen_label(longest)}."
        )
    header = ["backend", "measured", "first failure", "memory model", 'naive "scores + probabilities" model']
    return [
        f"Largest context standard attention fits in this GPU's {fmt_bytes(entries[0]['free_bytes'])} of free memory "
        f"({step}):",
        "",
        *table(header, rows, right=range(1, 5)),
        "",
        *notes,
        "",
        model + ".",
    ]


def transformers_table(ctx: Context, study: Any) -> list[str]:
    """One model's prefill/decode medians per attn_implementation, and how much they moved against the baseline run."""
    preset = ctx.options.get("model", "Llama-3-8B")
    rows = [row for row in study.get("transformers", []) if row.get("preset") == preset]
    if not rows:
        raise ctx.error(f"no transformers rows for {preset!r}")
    implementations = list(dict.fromkeys(row["attn_implementation"] for row in rows))
    cells = {(row["attn_implementation"], row["phase"], row["seqlen"]): row for row in rows}
    lines = []
    for phase, seqlen, memory in (
        ("prefill", 4096, False),
        ("prefill", 16384, True),
        ("prefill", 32768, False),
        ("decode", 32768, False),
    ):
        line = [f"{phase} {seqlen_label(seqlen)}" if phase == "prefill" else f"decode, {seqlen_label(seqlen)} cache"]
        for implementation in implementations:
            row = cells.get((implementation, phase, seqlen))
            if row is None:
                line.append("–")
            elif row.get("status") != "ok" or row.get("median_ms") is None:
                line.append("**does not fit**" if row.get("status") == "does_not_fit" else "n/a")
            else:
                memory_cell = f" ({fmt_bytes(row['peak_bytes'])})" if memory and row.get("peak_bytes") else ""
                line.append(fmt_ms(row["median_ms"]) + memory_cell)
        lines.append(line)
    results = ctx.load("hf-gate.json").get("results", [])
    shape = next((r["shape"] for r in results if (r.get("shape") or {}).get("model") == preset), None)
    what = preset
    if shape:
        what = f"{preset} shape ({shape['heads']} heads, {shape['kv_heads']} KV heads), {shape['layers']} layers, {shape['dtype']}"
    both = [r for r in results if r.get("median_ms") and r.get("baseline_median_ms")]
    moved = [r for r in both if abs(r["median_ms"] / r["baseline_median_ms"] - 1) > 0.05]
    worst = max(both, key=lambda r: abs(math.log(r["median_ms"] / r["baseline_median_ms"])), default=None)
    stability = ""
    if worst is not None:
        stability = (
            f" These medians are one run: against the baseline run recorded just before it, {len(moved)} of the "
            f"{len(both)} transformers cases that ran in both moved by more than 5 % (the most: "
            f"{test_label(worst['test_id'])}, {fmt_ratio(worst['median_ms'] / worst['baseline_median_ms'])})."
        )
    return [
        f"{what}; table for both models in {ctx.link('README.md', 'transformers')}.{stability}",
        "",
        *table(["phase", *implementations], lines, right=range(1, len(implementations) + 1)),
    ]


def fidelity_rows(ctx: Context, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cases that ran, cases that did not fit) of fidelity.md, each with the plugin/do_bench ratio."""
    # The stage logs stderr into the same file: a library's warning printed between two rows (FlashAttention-4's
    # CuTe DSL note) is dropped, so the table reads as one.
    lines = ctx.read(name).splitlines()
    rows = [index for index, line in enumerate(lines) if line.lstrip().startswith("|")]
    kept = [line for index, line in enumerate(lines) if not rows or index in rows or not rows[0] < index < rows[-1]]
    tables = markdown_tables("\n".join(kept))
    if not tables:
        raise ctx.error("no table")
    ran, unfit = [], []
    for row in tables[0]:
        plugin = parse_ms(row.get("plugin (CUDA events)", ""))
        reference = parse_ms(row.get("do_bench (median)", ""))
        case = {"backend": row["backend"], "seqlen": int(row["length"]), "plugin": plugin, "do_bench": reference}
        if plugin is None or reference is None:
            unfit.append(case)
        else:
            ran.append({**case, "ratio": plugin / reference})
    return ran, unfit


def _within(cases: Iterable[dict[str, Any]], band: float) -> int:
    return sum(abs(case["ratio"] - 1) <= band + 1e-12 for case in cases)


def _case_name(case: dict[str, Any]) -> str:
    return f"{case['backend']} {seqlen_label(case['seqlen'])}"


def _outside(ran: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases more than 3 % from do_bench, the lowest ratio first."""
    return sorted((case for case in ran if abs(case["ratio"] - 1) > 0.03), key=lambda case: case["ratio"])


def fidelity_summary(ctx: Context, cases: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[str]:
    """One sentence for the README: how many cases agree with do_bench within ±3 %, and which do not."""
    ran, outside = cases[0], _outside(cases[0])
    listed = "; outside it, plugin/do_bench: " + join([f"{_case_name(c)} {fmt_ratio(c['ratio'])}" for c in outside])
    return [
        f"The plugin's medians agree with `triton.testing.do_bench` within ±3 % for {_within(ran, 0.03)} of the "
        f"{len(ran)} cases that fit (fp16, causal, B=1, H=32, D=128, forward){listed if outside else ''}."
    ]


def fidelity(ctx: Context, cases: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[str]:
    """The do_bench comparison: counts within ±3 % and ±2.5 %, the cases outside, and the same cases in the study."""
    (ran, unfit), outside = cases, _outside(cases[0])
    ratios = [case["ratio"] for case in ran]
    lines = [
        f"- {len(ran)} of the {len(ran) + len(unfit)} cases fit ({join([_case_name(case) for case in unfit])} do not). "
        f"{_within(ran, 0.03)} of the {len(ran)} agree within ±3 % and {_within(ran, 0.025)} within ±2.5 % "
        f"(plugin/do_bench {ratios and span(ratios, f3)}).",
        "- Outside ±3 %: "
        + join(
            [
                f"{_case_name(c)} {fmt_ratio(c['ratio'])} (plugin {fmt_ms(c['plugin'])}, do_bench {fmt_ms(c['do_bench'])})"
                for c in outside
            ]
        )
        + ".",
    ]
    if ctx.exists("study.json"):
        study_cases = _cases(_study_config(ctx, ctx.load("study.json")))
        again = [
            f"{_case_name(case)} {fmt_ms(study_cases[(case['backend'], case['seqlen'])]['median_ms'])}"
            for case in outside
            if _ok(study_cases.get((case["backend"], case["seqlen"])))
        ]
        if again:
            lines.append(f"- The same cases in the plugin's study run: {join(again)}.")
    return lines


def ncu_rows(ctx: Context, name: str) -> list[dict[str, Any]]:
    """The cases of ncu-fidelity.md: the plugin's median against Nsight Compute's kernel sum."""
    rows = []
    for row in ctx.tables(name)[0]:
        backend, _, length = row["case"].rpartition("-")
        plugin, kernel = float(row["plugin median (ms)"]), float(row["ncu kernel sum (ms)"])
        rows.append(
            {"backend": backend, "seqlen": int(length), "plugin": plugin, "ncu": kernel, "kernels": int(row["kernels"]),
             "ratio": plugin / kernel}
        )  # fmt: skip
    return rows


def ncu(ctx: Context, rows: list[dict[str, Any]]) -> list[str]:
    """Plugin medians against Nsight Compute's kernel time, per length; how many within ±3 %."""
    lines = []
    shortest = min(row["seqlen"] for row in rows)
    for seqlen in sorted({row["seqlen"] for row in rows}):
        single = sorted((r for r in rows if r["seqlen"] == seqlen and r["kernels"] == 1), key=lambda r: -r["ratio"])
        multi = [r for r in rows if r["seqlen"] == seqlen and r["kernels"] > 1]
        parts = []
        if single:
            gap = f"; plugin − ncu {span([(r['plugin'] - r['ncu']) * 1e3 for r in single], f1)} µs"
            ratios = ", ".join(f"{r['backend']} {r['ratio']:.3f}" for r in single)
            parts.append(
                f"single-kernel backends {span([r['ratio'] for r in single], f3)} ({ratios}"
                f"{gap if seqlen == shortest else ''})"
            )
        parts.extend(f"{r['backend']} ({r['kernels']} kernels) {r['ratio']:.3f}" for r in multi)
        lines.append(f"- {seqlen_label(seqlen)}: " + "; ".join(parts) + ".")
    return [*lines, f"- **Within ±3 %: {_within(rows, 0.03)} of the {len(rows)} cases.**"]


def modes_sections(ctx: Context, name: str) -> list[dict[str, Any]]:
    """The sections of modes.log: the extra option, its table rows, its summary and skip lines."""
    sections: list[dict[str, Any]] = []
    for chunk in re.split(r"^=== ", ctx.read(name), flags=re.M)[1:]:
        option, _, body = chunk.partition("\n")
        skips = [(int(count), reason) for count, reason in re.findall(r"SKIPPED \[(\d+)\] [^:]+:\d+: (.+)", body)]
        summary = PytestSummary.parse(summary_line(body))
        sections.append({"option": option.strip(), "rows": attnperf_rows(body), "summary": summary, "skips": skips})
    if not sections:
        raise ctx.error("no '=== option' sections", name)
    return sections


def modes(ctx: Context, sections: list[dict[str, Any]]) -> list[str]:
    """Graph mode and the training modes at 1K/4K: outcome counts per mode, and which cases are missing."""
    everyone = {row["test"] for section in sections for row in section["rows"]}
    rows = []
    for section in sections:
        missing = sorted(everyone - {row["test"] for row in section["rows"]}, key=test_label)
        skip = "; ".join(
            f"{count} skipped: {reason.split(' needs ')[0]} not installed"
            if " needs " in reason
            else f"{count}: {reason}"
            for count, reason in section["skips"]
        )
        outcome = section["summary"].text()
        rows.append(
            [f"`{section['option']}`", outcome, join([test_label(test) for test in missing]) or "–", skip or "–"]
        )
    return table(["option", "outcome", "cases missing from its table", "skips"], rows)


def graph_vs_ncu(ctx: Context, ncu_cases: list[dict[str, Any]]) -> list[str]:
    """The 1K single-kernel cases: event-timed eager mode, CUDA-graph mode (modes.log) and ncu's kernel time."""
    ncu = {(r["backend"], r["seqlen"]): r for r in ncu_cases if r["kernels"] == 1}
    graph = next((s for s in modes_sections(ctx, "modes.log") if "cuda-graph" in s["option"]), None)
    if graph is None:
        raise ctx.error("no CUDA-graph section", "modes.log")
    rows: list[list[str]] = []
    graph_ratios: dict[int, list[float]] = {}
    plain_ratios: dict[int, list[float]] = {}
    for row in graph["rows"]:
        key = (row["backend"], int(row["len"]))
        median = parse_ms(row["median"])
        if key not in ncu or median is None:
            continue
        reference = ncu[key]
        graph_ratios.setdefault(key[1], []).append(median / reference["ncu"])
        plain_ratios.setdefault(key[1], []).append(reference["ratio"])
        events = f"{fmt_ms(reference['plugin'])} ({fmt_ratio(reference['ratio'])})"
        graphed = f"{fmt_ms(median)} ({fmt_ratio(median / reference['ncu'])})"
        rows.append([f"{key[0]} {seqlen_label(key[1])}", fmt_ms(reference["ncu"]), events, graphed])
    if not rows:
        raise RenderError("no case is in both the CUDA-graph run and the ncu comparison")
    ratios = "; ".join(
        f"{seqlen_label(seqlen)} {span(plain, f3)} with events, {span(graph_ratios[seqlen], f3)} with the graph"
        for seqlen, plain in sorted(plain_ratios.items())
    )
    return [
        *table(["case", "ncu kernel time", "plugin, events", "plugin, CUDA graph"], rows, right=(1, 2, 3)),
        "",
        f"Over ncu's kernel time (events and CUDA graph were timed in different processes): {ratios}.",
    ]
