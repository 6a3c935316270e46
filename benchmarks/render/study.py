"""The study (`attnperf report`): FlashAttention on vs off, where standard attention stops fitting, transformers."""

from __future__ import annotations

import math
import re
from typing import Any

from render.format import (
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
    table,
    test_label,
)
from render.source import Context

DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def study_config(ctx: Context, study: dict[str, Any]) -> dict[str, Any]:
    """The study's configuration the region names (config=, underscores for spaces; default fp16 causal d128)."""
    name = ctx.options.get("config", "fp16 causal d128")
    for config in study.get("configs", []):
        if config.get("name") == name:
            return dict(config)
    raise ctx.error(f"no config named {name!r}", "study.json")


def cases_of(config: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """(backend, context length) -> the configuration's case."""
    return {(case["backend"], case["seqlen"]): case for case in config.get("cases", [])}


def ran_ok(case: dict[str, Any] | None) -> bool:
    """Whether a case ran and has a median."""
    return case is not None and case.get("status") == "ok" and case.get("median_ms") is not None


def _cell(case: dict[str, Any] | None, tflops: bool = False) -> str:
    if case is None:
        return "–"
    if not ran_ok(case):
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
    config = study_config(ctx, study)
    cases = cases_of(config)
    seqlens = sorted({seqlen for _, seqlen in cases})
    fastest = {}
    for seqlen in seqlens:
        ran = [case for (_, length), case in cases.items() if length == seqlen and ran_ok(case)]
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
    config = study_config(ctx, study)
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
        if c["backend"] not in ("eager", "sdpa-math") and ran_ok(c) and c.get("peak_bytes")
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
