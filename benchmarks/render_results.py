"""Regenerate every GPU figure quoted in README.md and docs/*.md from the committed result files.

The project's rule is "numbers come from data": a GPU figure in the prose is written by a renderer of
this script from a file under docs/results/, never typed in. In the Markdown, a generated region is

    <!-- results:NAME FOLDER [key=value ...] -->
    ...generated text...
    <!-- /results:NAME -->

NAME picks a renderer (``RENDERERS``), FOLDER is the result folder under docs/results/ (``h100``,
``h200x2``; an H200 section is the same region with ``h200``). A region whose opening comment is
followed by a line break is a block (its own lines); otherwise it is inline, inside a sentence.
Each block ends with a line naming its source files and the ``benchmarks/gpu_session.sh`` stage that
made them.

    python benchmarks/render_results.py           # rewrite the regions in place
    python benchmarks/render_results.py --check   # exit 1 on a stale region or a typed-in GPU figure

Adding a GPU: copy the $OUT of a ``gpu_session.sh`` run (file names as the stages write them) into
docs/results/<gpu>/ and add regions naming that folder; ``STAGES`` maps each file to its stage.

``--check`` also scans README.md and docs/*.md outside the regions for anything that looks like a
GPU figure (see ``FIGURE_PATTERNS``) and fails on it, unless ``ALLOWED`` names it as a non-GPU
number (a CPU figure, an option default, a formula constant). It reads files only: no torch.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("docs/results")
SCRIPT = "python benchmarks/render_results.py"

# The gpu_session.sh stage that writes each result file (its name as the stage writes it into $OUT).
STAGES = {
    "study.json": "study",
    "study.log": "study",
    "hf-gate.json": "hf",
    "hf-gate.log": "hf",
    "fidelity.md": "fidelity",
    "ncu-fidelity.md": "ncu",
    "sensitivity.md": "sensitivity",
    "false-alarms.txt": "false_alarms",
    "main-job.log": "main",
    "modes.log": "modes",
    "gpu-faults.md": "faults",
    "property-gpu.md": "property",
    "xdist.txt": "xdist",
    "ci/ci-gate.log": "ci",
    "gate-validation.json": "sensitivity",
    "calibrate.log": "calibrate",
    "cost.md": "cost",
    "gate-simulation.json": "simulation",
    "record/record.txt": "record",
    "record/nvidia-h200.yaml": "record",
    "record/report-run3.json.gz": "record",
    "record/nvidia-h100-80gb-hbm3.yaml": "record",
    "gate-validation-rejudged.json": "rejudge",
    "gate-validation-live.json": "gate_validation_live",
    "gated/gate-forward-1.log": "gated",
    "gated/gate-forward-2.log": "gated",
    "hostile-probe.md": "hostile",
    "load-tax.txt": "load_tax",
    "foreign-suite.md": "foreign_suite",
    "memory-repeat.md": "memory_repeat",
    **{f"cost/cost-{run}-{cache}.json": "gate_cost" for run in ("before", "after") for cache in ("cold", "warm")},
}
# How a stage is run when it needs more than its name; "simulation" is a CPU script, not a GPU stage.
STAGE_COMMANDS = {
    "false_alarms": "RUNS=10 bash benchmarks/gpu_session.sh false_alarms",
    "simulation": "python benchmarks/gate_simulation.py --out docs/results/simulation",
    "record": "SUITE=tests/suite/test_attention.py bash benchmarks/gpu_session.sh record",
    "gate_validation_live": "python benchmarks/gate_validation_live.py all --out $OUT",
    # What ran on the H100 in December 2026 (docs/results/h100/2026-12/README.md), each in one call:
    "record_h100": 'SUITE="--attnperf-cache-dir=/tmp/cc-after tests/suite/test_attention.py" '
    "bash benchmarks/gpu_session.sh record",
    "gate_live_h100": "GATE_VALIDATION_CASES=flash-attn-32K,sdpa-cudnn-16K,sdpa-flash-4K,decode-flash-attn-16K "
    "TRIALS=5 BUDGET_S=230 bash benchmarks/gpu_session.sh gate_live",
    "rejudge": "python benchmarks/rejudge_sensitivity.py docs/results/h200 --baselines docs/results/h200/record/nvidia-h200.yaml",
    "gated": "pytest --attnperf --attnperf-missing=fail -q tests/suite/test_attention.py::test_forward",
    "hostile": "python benchmarks/hostile_probe.py --jobs 2 --out docs/results/cpu/hostile-probe.md",
    "load_tax": "python benchmarks/load_tax.py --runs 21 --baseline baselines/nvidia-h200.yaml",
    "foreign_suite": "python benchmarks/foreign_suite.py --runs 3",
    "memory_repeat": "python benchmarks/cpu_memory_repeat.py --runs 20 --tests tests/suite/test_attention.py",
    "cpu_history": "python benchmarks/history_runs.py --runs 6 --out docs/results/cpu/history",
    "gate_cost": "pytest --attnperf tests/suite/test_attention.py --attnperf-json=cost/RUN.json, then "
    "python benchmarks/gate_cost.py cost/RUN.json --cost cost/cost-RUN.json",
}
# A folder of JSON reports, one per CI-like run: made on the CPU by history_runs.py, on a GPU by its stage.
STAGES.update({"history/": "cpu_history", "history": "history"})


class RenderError(Exception):
    """A region cannot be rendered: a missing or malformed source file, a bad region header."""


# ---------------------------------------------------------------- formatting


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, trailing zeros kept (1.00, 82.1, 224)."""
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    if decimals <= 0:
        return f"{round(value):,}"
    text = f"{value:.{decimals}f}"
    # Rounding can add a digit (9.996 -> 10.00): format again with one decimal less.
    if len(text.replace("-", "").replace(".", "").lstrip("0")) > digits and decimals > 0:
        text = f"{value:.{decimals - 1}f}"
    return text


def fmt_ms(milliseconds: float) -> str:
    """Three significant digits, in µs below 0.1 ms: 0.423 ms, 59.1 µs, 82.1 ms."""
    if milliseconds < 0.1:
        return f"{sig(milliseconds * 1e3)} µs"
    return f"{sig(milliseconds)} ms"


def fmt_us(milliseconds: float) -> str:
    return f"{milliseconds * 1e3:.1f} µs"


def fmt_bytes(num_bytes: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(num_bytes) >= scale:
            return f"{sig(num_bytes / scale)} {unit}"
    return f"{int(num_bytes)} B"


def fmt_bytes_range(low: float, high: float) -> str:
    """256–264 MiB, or 256 MiB–1.2 GiB when the units differ."""
    first, second = fmt_bytes(low), fmt_bytes(high)
    if first == second:
        return first
    (a, unit_a), (b, unit_b) = first.split(" "), second.split(" ")
    return f"{a}–{b} {unit_a}" if unit_a == unit_b else f"{first}–{second}"


def gpu_of(text: str) -> str | None:
    """The GPU a plugin run names in its summary header ('attnperf: NVIDIA H100 80GB HBM3 (cuda:0)')."""
    match = re.search(r"attnperf: (.+?) \((?:cuda|cpu)", text)
    return match.group(1) if match else None


def fmt_ratio(ratio: float) -> str:
    return f"×{ratio:.3f}"


def fmt_pct(fraction: float, decimals: int = 1, sign: bool = False) -> str:
    text = f"{fraction * 100:+.{decimals}f}" if sign else f"{fraction * 100:.{decimals}f}"
    return text.replace("-", "−") + " %"


def fmt_range(low: str, high: str) -> str:
    return low if low == high else f"{low}–{high}"


def seqlen_label(seqlen: int) -> str:
    return f"{seqlen // 1024}K" if seqlen % 1024 == 0 else f"{seqlen:,}"


def join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def parse_ms(text: str) -> float | None:
    """'0.374 ms', '62.7 us', '62.7 µs', '0.4354' (ms) -> milliseconds; '-' or 'does not fit' -> None."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(ms|us|µs)?\s*", text)
    if match is None:
        return None
    value = float(match.group(1))
    return value / 1e3 if match.group(2) in ("us", "µs") else value


def test_label(test_id: str) -> str:
    """'test_forward[sdpa-math-16K]' -> 'sdpa-math 16K'; 'test_prefill[llama-2-7b-eager-16K]' -> 'llama-2-7b eager prefill 16K'."""
    match = re.search(r"test_(\w+)\[(.+)-(\d+K|\d+)\]$", test_id)
    if match is None:
        return test_id
    kind, name, length = match.groups()
    if kind == "forward":
        return f"{name} {length}"
    model, _, implementation = name.rpartition("-")
    return f"{model} {implementation} {kind} {length}" if model else f"{name} {kind} {length}"


# ---------------------------------------------------------------- reading result files


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table of a Markdown text, as rows keyed by the header cells."""
    tables: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines) - 1:
        header, rule = lines[index].strip(), lines[index + 1].strip()
        if header.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rule):
            names = [cell.strip() for cell in header.strip("|").split("|")]
            rows = []
            index += 2
            while index < len(lines) and lines[index].strip().startswith("|"):
                cells = [cell.strip() for cell in lines[index].strip().strip("|").split("|")]
                rows.append(dict(zip(names, cells, strict=False)))
                index += 1
            tables.append(rows)
        else:
            index += 1
    return tables


@dataclass
class PytestSummary:
    """What a pytest run's last line says."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0

    @classmethod
    def parse(cls, line: str) -> PytestSummary:
        counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", line)}
        return cls(
            passed=counts.get("passed", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            errors=counts.get("error", 0) + counts.get("errors", 0),
        )

    def text(self) -> str:
        parts = [f"{self.passed} passed", f"{self.skipped} skipped", f"{self.failed} failed"]
        if self.errors:
            parts.append(f"{self.errors} errors")
        return ", ".join(parts)


def attnperf_rows(text: str) -> list[dict[str, str]]:
    """The per-case rows of the plugin's terminal summary (columns separated by two or more spaces)."""
    rows = []
    for line in text.splitlines():
        if not re.match(r"test_\w+\[", line):
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 9:
            continue
        names: tuple[str, ...] = ("test", "backend", "len", "median", "tflops", "peak", "baseline", "ratio", "verdict")
        if len(cells) >= 10:  # since the clock-aware gate: the ratio at the baseline's clock before the verdict
            names = (*names[:8], "at_clock", "verdict")
        rows.append(dict(zip(names, cells, strict=False)))
    return rows


def summary_line(text: str) -> str:
    """The last pytest result line ('94 passed, 10 skipped, ... in 137.31s')."""
    lines = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line) and " in " in line]
    if not lines:
        raise RenderError("no pytest result line")
    return lines[-1]


# ---------------------------------------------------------------- regions and their context


@dataclass
class Context:
    """What a renderer gets: the repository, the Markdown file it writes into, its result folder."""

    root: Path
    doc: Path  # relative to root
    folder: str  # under docs/results/
    options: dict[str, str] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return RESULTS / self.folder / name

    def read(self, name: str) -> str:
        path = self.root / self.path(name)
        if not path.is_file():
            raise RenderError(f"{self.path(name)} does not exist")
        if name not in self.used:
            self.used.append(name)
        return path.read_text(encoding="utf-8")

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except json.JSONDecodeError as error:
            raise RenderError(f"{self.path(name)}: not valid JSON ({error})") from None

    def json_gz(self, name: str) -> Any:
        path = self.root / self.path(name)
        if not path.is_file():
            raise RenderError(f"{self.path(name)} does not exist")
        if name not in self.used:
            self.used.append(name)
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)

    def yaml(self, name: str) -> Any:
        try:
            return yaml.load(self.read(name), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as error:
            raise RenderError(f"{self.path(name)}: not valid YAML ({error})") from None

    def exists(self, name: str) -> bool:
        return (self.root / self.path(name)).is_file()

    def link(self, name: str, anchor: str = "") -> str:
        """A Markdown link to a result file, relative to the document, showing its repository path."""
        target = self.path(name).as_posix()
        href = os.path.relpath(target, self.doc.parent.as_posix() or ".")
        return f"[{target}]({Path(href).as_posix()}{'#' + anchor if anchor else ''})"

    def command(self, name: str) -> str:
        stage = self.options.get("stage") or STAGES.get(name)  # stage=: a region whose files another stage wrote
        if stage is None:
            raise RenderError(f"no gpu_session.sh stage is known for {name}: add it to STAGES")
        return STAGE_COMMANDS.get(stage, f"bash benchmarks/gpu_session.sh {stage}")

    def source_line(self) -> str:
        """The closing line of a block region: each file it read and the command that made it."""
        sources = []
        for name in self.used:
            sources.append(f"{self.link(name)} (`{self.command(name)}`)")
        return f"<sub>Generated by `{SCRIPT}` from {join(sources)}.</sub>"


Renderer = Callable[[Context], str]
RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    def register(function: Renderer) -> Renderer:
        RENDERERS[name] = function
        return function

    return register


def block(ctx: Context, *lines: str) -> str:
    """Block region text: the lines, a blank line and the source line."""
    return "\n".join([*lines, "", ctx.source_line()])


def table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    aligned = set(right)
    out = ["| " + " | ".join(header) + " |"]
    out.append("| " + " | ".join("---:" if index in aligned else "---" for index in range(len(header))) + " |")
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return out


# ---------------------------------------------------------------- the study (attnperf report)


def _study_config(ctx: Context, study: dict[str, Any]) -> dict[str, Any]:
    name = ctx.options.get("config", "fp16 causal d128")
    for config in study.get("configs", []):
        if config.get("name") == name:
            return dict(config)
    raise RenderError(f"{ctx.path('study.json')}: no config named {name!r}")


def _cases(config: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(case["backend"], case["seqlen"]): case for case in config.get("cases", [])}


def _ok(case: dict[str, Any] | None) -> bool:
    return case is not None and case.get("status") == "ok" and case.get("median_ms") is not None


def _cell(case: dict[str, Any] | None, tflops: bool = False) -> str:
    if case is None:
        return "–"
    if not _ok(case):
        return {"does_not_fit": "**does not fit**", "unavailable": "n/a"}.get(case.get("status", ""), "error")
    text = fmt_ms(case["median_ms"])
    if tflops and case.get("tflops"):
        text += f" ({sig(case['tflops'])} TFLOP/s)"
    return text


def _cudnn(value: object) -> str:
    if isinstance(value, str) and value.isdigit():
        number = int(value)
        return f"{number // 10000}.{number % 10000 // 100}"
    return str(value)


def _environment(study: dict[str, Any]) -> str:
    gpu = study.get("gpu", {})
    parts = [f"torch {gpu.get('torch')}", f"CUDA {gpu.get('cuda')}", f"cuDNN {_cudnn(gpu.get('cudnn'))}"]
    if gpu.get("flash_attn"):
        parts.append(f"flash-attn {gpu['flash_attn']}")
    if gpu.get("flash_attn_3"):
        parts.append(f"flash-attn-3 {gpu['flash_attn_3']}")
    if gpu.get("flash_attn_4"):
        parts.append(f"flash-attn-4 {gpu['flash_attn_4']}")
    parts.append(f"triton {gpu.get('triton')}")
    return f"{gpu.get('name', 'the GPU')} ({', '.join(parts)})"


def _shape_sentence(config: dict[str, Any]) -> str:
    dtype = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(config["dtype"], config["dtype"])
    causal = "causal" if config.get("causal") else "not causal"
    heads = f"{config['heads']} heads"
    if config.get("kv_heads") not in (None, config["heads"]):
        heads += f" ({config['kv_heads']} KV heads)"
    return f"{dtype}, {causal}, batch {config['batch']}, {heads}, head_dim {config['head_dim']}, forward"


@renderer("study-answer")
def render_study_answer(ctx: Context) -> str:
    """FlashAttention on vs off: eager, flash-attn, sdpa-flash, the speedup and the fastest backend per length."""
    study = ctx.json("study.json")
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
        last = seqlen == seqlens[-1]
        flash = cases.get(("flash-attn", seqlen))
        speedup = flash.get("speedup_vs_eager") if flash else None
        best = fastest.get(seqlen)
        best_cell = _cell(best, tflops=last)
        if best is not None and one_fastest is None:
            best_cell += f" ({best['backend']})"
        rows.append(
            [
                seqlen_label(seqlen),
                _cell(cases.get(("eager", seqlen))),
                _cell(flash, tflops=last),
                _cell(cases.get(("sdpa-flash", seqlen))),
                f"{sig(speedup)}×" if speedup else "–",
                best_cell,
            ]
        )
    return block(
        ctx,
        f"Measured with `attnperf report` on an {_environment(study)}, "
        f"`{ctx.command('study.json')}` on the GPU machine.",
        f"Full tables, {plural(len(study.get('configs', [])), 'configuration')}, plots and the frontier explanation: "
        f"{ctx.link('README.md')}.",
        "",
        f"{_shape_sentence(config)}, median of CUDA-event samples:",
        "",
        *table(header, rows, right=range(1, 6)),
    )


def _score_matrices(entry: dict[str, Any], config: dict[str, Any], tokens: int) -> float:
    """How many score matrices (batch x heads x N x N in the input dtype) fit in the free memory above q, k, v."""
    size = {"float16": 2, "bfloat16": 2, "float32": 4}[config["dtype"]]
    heads, kv_heads = config["heads"], config.get("kv_heads") or config["heads"]
    inputs = config["batch"] * tokens * (heads + 2 * kv_heads) * config["head_dim"] * size
    score = config["batch"] * heads * tokens * tokens * size
    return float((entry["free_bytes"] - inputs) / score)


@renderer("study-frontier")
def render_study_frontier(ctx: Context) -> str:
    """Where standard attention stops fitting: measured, first failure, the memory model, the naive model."""
    study = ctx.json("study.json")
    config = _study_config(ctx, study)
    entries = [entry for entry in study.get("frontier", []) if entry.get("config") == config["name"]]
    if not entries:
        raise RenderError(f"{ctx.path('study.json')}: no frontier for {config['name']!r}")
    causal = "causal" if config.get("causal") else "not causal"
    steps = {entry["first_failure_tokens"] - entry["measured_tokens"] for entry in entries}
    step = f"bisected to {next(iter(steps))} tokens" if len(steps) == 1 else "bisected"
    free = fmt_bytes(entries[0]["free_bytes"])
    rows = [
        [
            f"{entry['backend']} ({causal})",
            f"{entry['measured_tokens']:,}",
            f"{entry['first_failure_tokens']:,}",
            f"{entry['predicted_tokens']:,}",
            f"{entry['naive_tokens']:,}",
        ]
        for entry in entries
    ]
    dtype = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(config["dtype"], config["dtype"])
    notes = []
    for entry in entries:
        optimism = entry["naive_tokens"] / entry["measured_tokens"] - 1
        low = _score_matrices(entry, config, entry["first_failure_tokens"])
        high = _score_matrices(entry, config, entry["measured_tokens"])
        notes.append(
            f"- **{entry['backend']}**: the naive model is {fmt_pct(optimism)} too optimistic; what fits means "
            f"{fmt_range(f'{low:.1f}', f'{high:.1f}')} {dtype} score matrices' worth of memory above q, k and v at the peak."
        )
    exact = all(entry["predicted_tokens"] == entry["measured_tokens"] for entry in entries)
    model = (
        "The memory model's prediction equals the measured frontier for every backend"
        if exact
        else "The memory model predicts "
        + join([f"{entry['backend']} {entry['predicted_tokens']:,}" for entry in entries])
    )
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
        case
        for case in config.get("cases", [])
        if case["backend"] not in ("eager", "sdpa-math") and _ok(case) and case.get("peak_bytes")
    ]
    longest = max((case["seqlen"] for case in fused), default=None)
    if longest is not None:
        peaks = [case["peak_bytes"] for case in fused if case["seqlen"] == longest]
        notes.append(
            f"- **fused kernels** ({join(sorted({case['backend'] for case in fused if case['seqlen'] == longest}))}) "
            f"need {fmt_bytes_range(min(peaks), max(peaks))} above their inputs at {seqlen_label(longest)}."
        )
    return block(
        ctx,
        f"Largest context standard attention fits in this GPU's {free} of free memory ({step}):",
        "",
        *table(
            ["backend", "measured", "first failure", "memory model", 'naive "scores + probabilities" model'],
            rows,
            right=range(1, 5),
        ),
        "",
        *notes,
        "",
        model + ".",
    )


@renderer("transformers-table")
def render_transformers_table(ctx: Context) -> str:
    """One model's prefill/decode medians per attn_implementation, and how much they moved against the baseline run."""
    study = ctx.json("study.json")
    preset = ctx.options.get("model", "Llama-3-8B")
    rows = [row for row in study.get("transformers", []) if row.get("preset") == preset]
    if not rows:
        raise RenderError(f"{ctx.path('study.json')}: no transformers rows for {preset!r}")
    implementations = list(dict.fromkeys(row["attn_implementation"] for row in rows))
    cells = {(row["attn_implementation"], row["phase"], row["seqlen"]): row for row in rows}
    wanted = [("prefill", 4096, False), ("prefill", 16384, True), ("prefill", 32768, False), ("decode", 32768, False)]
    lines = []
    for phase, seqlen, memory in wanted:
        label = f"{phase} {seqlen_label(seqlen)}" if phase == "prefill" else f"decode, {seqlen_label(seqlen)} cache"
        line = [label]
        for implementation in implementations:
            row = cells.get((implementation, phase, seqlen))
            if row is None:
                line.append("–")
            elif row.get("status") != "ok" or row.get("median_ms") is None:
                line.append("**does not fit**" if row.get("status") == "does_not_fit" else "n/a")
            else:
                text = fmt_ms(row["median_ms"])
                if memory and row.get("peak_bytes"):
                    text += f" ({fmt_bytes(row['peak_bytes'])})"
                line.append(text)
        lines.append(line)
    gate = ctx.json("hf-gate.json")
    results = gate.get("results", [])
    shape = next((r["shape"] for r in results if (r.get("shape") or {}).get("model") == preset), None)
    if shape:
        what = (
            f"{preset} shape ({shape['heads']} heads, {shape['kv_heads']} KV heads), "
            f"{shape['layers']} layers, {shape['dtype']}"
        )
    else:
        what = preset
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
    return block(
        ctx,
        f"{what}; table for both models in {ctx.link('README.md', 'transformers')}.{stability}",
        "",
        *table(["phase", *implementations], lines, right=range(1, len(implementations) + 1)),
    )


# ---------------------------------------------------------------- timing fidelity


def _fidelity_rows(ctx: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cases that ran, cases that did not fit) of fidelity.md, each with the plugin/do_bench ratio."""
    # The stage logs stderr into the same file: a library's warning printed between two rows (FlashAttention-4's
    # CuTe DSL note) is dropped, so the table reads as one.
    lines = ctx.read("fidelity.md").splitlines()
    kept = [
        line
        for index, line in enumerate(lines)
        if line.lstrip().startswith("|")
        or not any(row.lstrip().startswith("|") for row in lines[:index])
        or not any(row.lstrip().startswith("|") for row in lines[index + 1 :])
    ]
    tables = markdown_tables("\n".join(kept))
    if not tables:
        raise RenderError(f"{ctx.path('fidelity.md')}: no table")
    ran, unfit = [], []
    for row in tables[0]:
        plugin = parse_ms(row.get("plugin (CUDA events)", ""))
        reference = parse_ms(row.get("do_bench (median)", ""))
        case = {"backend": row["backend"], "seqlen": int(row["length"]), "plugin": plugin, "do_bench": reference}
        if plugin is None or reference is None:
            unfit.append(case)
        else:
            case["ratio"] = plugin / reference
            ran.append(case)
    return ran, unfit


def _within(cases: Iterable[dict[str, Any]], band: float) -> int:
    return sum(abs(case["ratio"] - 1) <= band + 1e-12 for case in cases)


def _case_name(case: dict[str, Any]) -> str:
    return f"{case['backend']} {seqlen_label(case['seqlen'])}"


@renderer("fidelity-summary")
def render_fidelity_summary(ctx: Context) -> str:
    """One sentence for the README: how many cases agree with do_bench within ±3 %, and which do not."""
    ran, _ = _fidelity_rows(ctx)
    outside = sorted((case for case in ran if abs(case["ratio"] - 1) > 0.03), key=lambda case: case["ratio"])
    return block(
        ctx,
        f"The plugin's medians agree with `triton.testing.do_bench` within ±3 % for {_within(ran, 0.03)} of the "
        f"{len(ran)} cases that fit (fp16, causal, B=1, H=32, D=128, forward)"
        + (
            "; outside it, plugin/do_bench: "
            + join([f"{_case_name(case)} {fmt_ratio(case['ratio'])}" for case in outside])
            if outside
            else ""
        )
        + ".",
    )


@renderer("fidelity")
def render_fidelity(ctx: Context) -> str:
    """The do_bench comparison: counts within ±3 % and ±2.5 %, the cases outside, and the same cases in the study."""
    ran, unfit = _fidelity_rows(ctx)
    ratios = [case["ratio"] for case in ran]
    outside = sorted((case for case in ran if abs(case["ratio"] - 1) > 0.03), key=lambda case: case["ratio"])
    lines = [
        f"- {len(ran)} of the {len(ran) + len(unfit)} cases fit ({join([_case_name(case) for case in unfit])} do not). "
        f"{_within(ran, 0.03)} of the {len(ran)} agree within ±3 % and {_within(ran, 0.025)} within ±2.5 % "
        f"(plugin/do_bench {ratios and fmt_range(f'{min(ratios):.3f}', f'{max(ratios):.3f}')}).",
        "- Outside ±3 %: "
        + join(
            [
                f"{_case_name(case)} {fmt_ratio(case['ratio'])} (plugin {fmt_ms(case['plugin'])}, do_bench {fmt_ms(case['do_bench'])})"
                for case in outside
            ]
        )
        + ".",
    ]
    if ctx.exists("study.json"):
        study_cases = _cases(_study_config(ctx, ctx.json("study.json")))
        again = [
            f"{_case_name(case)} {fmt_ms(study_cases[(case['backend'], case['seqlen'])]['median_ms'])}"
            for case in outside
            if _ok(study_cases.get((case["backend"], case["seqlen"])))
        ]
        if again:
            lines.append(f"- The same cases in the plugin's study run: {join(again)}.")
    return block(ctx, *lines)


def _ncu_rows(ctx: Context) -> list[dict[str, Any]]:
    tables = markdown_tables(ctx.read("ncu-fidelity.md"))
    if not tables:
        raise RenderError(f"{ctx.path('ncu-fidelity.md')}: no table")
    rows = []
    for row in tables[0]:
        backend, _, length = row["case"].rpartition("-")
        plugin, kernel = float(row["plugin median (ms)"]), float(row["ncu kernel sum (ms)"])
        rows.append(
            {
                "backend": backend,
                "seqlen": int(length),
                "plugin": plugin,
                "ncu": kernel,
                "kernels": int(row["kernels"]),
                "ratio": plugin / kernel,
            }
        )
    return rows


def _ratio_range(cases: Sequence[dict[str, Any]]) -> str:
    ratios = [case["ratio"] for case in cases]
    return fmt_range(f"{min(ratios):.3f}", f"{max(ratios):.3f}")


@renderer("ncu")
def render_ncu(ctx: Context) -> str:
    """Plugin medians against Nsight Compute's kernel time, per length; how many within ±3 %."""
    rows = _ncu_rows(ctx)
    lines = []
    shortest = min(row["seqlen"] for row in rows)
    for seqlen in sorted({row["seqlen"] for row in rows}):
        single = sorted((r for r in rows if r["seqlen"] == seqlen and r["kernels"] == 1), key=lambda r: -r["ratio"])
        multi = [r for r in rows if r["seqlen"] == seqlen and r["kernels"] > 1]
        parts = []
        if single:
            gaps = [(r["plugin"] - r["ncu"]) * 1e3 for r in single]
            gap = f"; plugin − ncu {fmt_range(f'{min(gaps):.1f}', f'{max(gaps):.1f}')} µs" if seqlen == shortest else ""
            parts.append(
                f"single-kernel backends {_ratio_range(single)} ("
                + ", ".join(f"{r['backend']} {r['ratio']:.3f}" for r in single)
                + f"{gap})"
            )
        parts.extend(f"{r['backend']} ({r['kernels']} kernels) {r['ratio']:.3f}" for r in multi)
        lines.append(f"- {seqlen_label(seqlen)}: " + "; ".join(parts) + ".")
    lines.append(f"- **Within ±3 %: {_within(rows, 0.03)} of the {len(rows)} cases.**")
    return block(ctx, *lines)


def _modes(ctx: Context) -> list[dict[str, Any]]:
    """The sections of modes.log: the extra option, its table rows, its summary and skip lines."""
    sections: list[dict[str, Any]] = []
    for chunk in re.split(r"^=== ", ctx.read("modes.log"), flags=re.M)[1:]:
        option, _, body = chunk.partition("\n")
        skips = [(int(count), reason) for count, reason in re.findall(r"SKIPPED \[(\d+)\] [^:]+:\d+: (.+)", body)]
        sections.append(
            {
                "option": option.strip(),
                "rows": attnperf_rows(body),
                "summary": PytestSummary.parse(summary_line(body)),
                "skips": skips,
            }
        )
    if not sections:
        raise RenderError(f"{ctx.path('modes.log')}: no '=== option' sections")
    return sections


@renderer("modes")
def render_modes(ctx: Context) -> str:
    """Graph mode and the training modes at 1K/4K: outcome counts per mode, and which cases are missing."""
    sections = _modes(ctx)
    everyone = {row["test"] for section in sections for row in section["rows"]}
    rows = []
    for section in sections:
        missing = sorted(everyone - {row["test"] for row in section["rows"]}, key=test_label)
        summary = section["summary"]
        skip = "; ".join(
            f"{count} skipped: {reason.split(' needs ')[0]} not installed"
            if " needs " in reason
            else f"{count}: {reason}"
            for count, reason in section["skips"]
        )
        rows.append(
            [
                f"`{section['option']}`",
                summary.text(),
                join([test_label(test) for test in missing]) or "–",
                skip or "–",
            ]
        )
    return block(ctx, *table(["option", "outcome", "cases missing from its table", "skips"], rows))


@renderer("graph-vs-ncu")
def render_graph_vs_ncu(ctx: Context) -> str:
    """The 1K single-kernel cases: event-timed eager mode, CUDA-graph mode (modes.log) and ncu's kernel time."""
    ncu = {(r["backend"], r["seqlen"]): r for r in _ncu_rows(ctx) if r["kernels"] == 1}
    graph = next((s for s in _modes(ctx) if "cuda-graph" in s["option"]), None)
    if graph is None:
        raise RenderError(f"{ctx.path('modes.log')}: no CUDA-graph section")
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
        rows.append(
            [
                f"{key[0]} {seqlen_label(key[1])}",
                fmt_ms(reference["ncu"]),
                f"{fmt_ms(reference['plugin'])} ({fmt_ratio(reference['ratio'])})",
                f"{fmt_ms(median)} ({fmt_ratio(median / reference['ncu'])})",
            ]
        )
    if not rows:
        raise RenderError("no case is in both the CUDA-graph run and the ncu comparison")
    return block(
        ctx,
        *table(["case", "ncu kernel time", "plugin, events", "plugin, CUDA graph"], rows, right=(1, 2, 3)),
        "",
        "Over ncu's kernel time (events and CUDA graph were timed in different processes): "
        + "; ".join(
            f"{seqlen_label(seqlen)} {fmt_range(f'{min(plain):.3f}', f'{max(plain):.3f}')} with events, "
            f"{fmt_range(f'{min(graph_ratios[seqlen]):.3f}', f'{max(graph_ratios[seqlen]):.3f}')} with the graph"
            for seqlen, plain in sorted(plain_ratios.items())
        )
        + ".",
    )


# ---------------------------------------------------------------- the gate: false alarms, sensitivity, cost


def _false_alarm_runs(ctx: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    text = ctx.read("false-alarms.txt")
    runs = [
        {"run": int(run), "exit": int(status), "wall": float(wall), "summary": PytestSummary.parse(rest)}
        for run, status, wall, rest in re.findall(r"^run (\d+): exit (\d+), wall ([\d.]+) s, (.*)$", text, flags=re.M)
    ]
    reports = [
        {"run": int(run), "cases": int(cases), "kernel": float(kernel), "failures": failures.strip("[]").strip()}
        for run, cases, kernel, failures in re.findall(
            r"gate-run-(\d+)\.json: (\d+) cases, sampled kernel time ([\d.]+) s, failures (\[.*\])$", text, flags=re.M
        )
    ]
    if not runs:
        raise RenderError(f"{ctx.path('false-alarms.txt')}: no 'run N: exit S, wall W s' lines")
    return runs, reports


def _span(values: Iterable[int | float], fmt: Callable[[Any], str] = str) -> str:
    values = list(values)
    return fmt_range(fmt(min(values)), fmt(max(values)))


@renderer("false-alarms")
def render_false_alarms(ctx: Context) -> str:
    runs, reports = _false_alarm_runs(ctx)
    failing = [run for run in runs if run["exit"] != 0]
    counts = {run["summary"].text() for run in runs}
    listed = [report for report in reports if report["failures"]]
    head = (
        f"**{plural(len(failing), 'failing run')} of {len(runs)}**"
        if failing
        else f"**0 failures in {len(runs)} runs**"
    )
    return block(
        ctx,
        f"{head} (exit status {_span([run['exit'] for run in runs])}; "
        f"{'each: ' + next(iter(counts)) if len(counts) == 1 else join(sorted(counts), 'or')}); "
        f"the {len(reports)} JSON reports hold {_span([r['cases'] for r in reports])} cases each and list "
        f"{plural(len(listed), 'failure') if listed else 'no failure'}.",
    )


@renderer("cost")
def render_cost(ctx: Context) -> str:
    runs, reports = _false_alarm_runs(ctx)
    kernel = {report["run"]: report["kernel"] for report in reports}
    shares = [kernel[run["run"]] / run["wall"] for run in runs if run["run"] in kernel]
    return block(
        ctx,
        f"A full gated run of the attention suite ({_span([r['cases'] for r in reports])} cases) took "
        f"**{_span([run['wall'] for run in runs], lambda v: f'{v:.1f}')} s from `pytest` start to exit** over the "
        f"{len(runs)} runs. The sampled kernel time was {_span(kernel.values(), lambda v: f'{v:.1f}')} s of that "
        f"({_span([round(share * 100) for share in shares])} %).",
    )


def _first_int(text: str) -> int | None:
    """The first whole number in a text ('+10% of the median' -> 10), or None."""
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


@renderer("sensitivity")
def render_sensitivity(ctx: Context) -> str:
    """Detected/false-alarm counts per tolerance, the drift of the unchanged rows and what the injections added."""
    tables = markdown_tables(ctx.read("sensitivity.md"))
    if not tables:
        raise RenderError(f"{ctx.path('sensitivity.md')}: no table")
    rows = tables[0]
    tolerances = sorted(
        (column for column in rows[0] if re.fullmatch(r"detected at \d+% tolerance", column)),
        key=lambda column: -(_first_int(column) or 0),
    )
    if not tolerances:
        raise RenderError(f"{ctx.path('sensitivity.md')}: no 'detected at N% tolerance' columns")
    cases = list(dict.fromkeys((row["backend"], int(row["length"])) for row in rows))
    kinds = list(dict.fromkeys(row["injected"] for row in rows))
    by = {(row["backend"], int(row["length"]), row["injected"]): row for row in rows}
    none = next((kind for kind in kinds if not kind.startswith("+")), None)
    injected = sorted((kind for kind in kinds if kind != none), key=lambda kind: _first_int(kind) or 0)
    order = [*reversed(injected), *([none] if none is not None else [])]

    def label(kind: str) -> str:
        return f"detected at +{_first_int(kind)} %" if kind != none else "false alarms (no injection)"

    out = []
    for column in tolerances:
        line = [f"{_first_int(column)} %"]
        for kind in order:
            cells = [by[(backend, length, kind)][column] for backend, length in cases]
            totals = {cell.split("/")[1] for cell in cells}
            hits = [cell.split("/")[0] for cell in cells]
            total = next(iter(totals)) if len(totals) == 1 else "n"
            line.append(f"{hits[0]} of {total} everywhere" if len(set(hits)) == 1 else f"{', '.join(hits)} of {total}")
        out.append(line)

    def ratio(backend: str, length: int, kind: str) -> float:
        return float(by[(backend, length, kind)]["mean measured ratio"].lstrip("x"))

    lines = [
        *table(["tolerance", *[label(kind) for kind in order]], out),
        "",
        f"Cases, in this order: {join([f'{b} {seqlen_label(n)}' for b, n in cases])}; "
        f"{rows[0][tolerances[0]].split('/')[1]} trials per row, the baseline measured once in the same process.",
    ]
    if none is not None:
        lines.append(
            "Mean measured ratio to that baseline with nothing injected: "
            + ", ".join(fmt_ratio(ratio(b, n, none)) for b, n in cases)
            + "; what the injections added over that unchanged row: "
            + "; ".join(
                f"+{_first_int(kind)} % → "
                + ", ".join(fmt_pct(ratio(b, n, kind) / ratio(b, n, none) - 1, sign=True) for b, n in cases)
                for kind in injected
            )
            + "."
        )
    return block(ctx, *lines)


def _probability(value: float) -> str:
    return "below 0.0001" if value < 1e-4 else f"{value:.4f}"


@renderer("gate-simulation")
def render_gate_simulation(ctx: Context) -> str:
    """The CPU simulation of the old and the new gate, per case: false alarms and slowdowns caught."""
    data = ctx.json("gate-simulation.json")
    trials = int(data["trials"])
    rows = []
    for case in data["cases"]:
        old, new = case["old"], case["new"]
        rows.append(
            [
                case["case"],
                fmt_pct(case["sigma_b"], 2),
                fmt_pct(case["sigma_normalised"], 2),
                " / ".join(str(old["0.00"][tol]) for tol in ("0.10", "0.05", "0.03")),
                " / ".join(str(old["0.05"][tol]) for tol in ("0.10", "0.05", "0.03")),
                str(new["0.00"]),
                str(new["0.03"]),
                str(new["0.05"]),
                str(new["0.10"]),
            ]
        )
    caught = [case["new"]["0.05"] for case in data["cases"]]
    worst = min(data["cases"], key=lambda case: case["new"]["0.05"])
    return block(
        ctx,
        f"Out of {trials} simulated trials per cell (the old gate at tolerances 10 / 5 / 3 %; the new gate at its "
        "automatic tolerance):",
        "",
        *table(
            [
                "case",
                "between-run sd, raw",
                "normalised",
                "old: false alarms",
                "old: +5 % caught",
                "new: false alarms",
                "new: +3 %",
                "new: +5 %",
                "new: +10 %",
            ],
            rows,
            right=range(1, 9),
        ),
        "",
        f"The new gate catches +5 % in {min(caught)}–{max(caught)} of {trials} trials per case (fewest: "
        f"{worst['case']}); its model's probability of at least one false alarm in {data['suite_runs']} runs of "
        f"these {len(data['cases'])} cases is {_probability(data['p_any_false_alarm_in_10_suite_runs'])}. "
        "A simulation fitted to one H100's committed runs: it guides the design and proves nothing about a GPU.",
    )


@renderer("gate-validation")
def render_gate_validation(ctx: Context) -> str:
    """The GPU proof of the gate (issue 15's form): injected slowdowns caught, false alarms, gated runs.

    A file with ``injected_units`` (benchmarks/gate_validation_live.py) gives the delivered slowdown in wall
    time with cycles beside it, per row; the older files gave it at the baseline's clock, and say so.
    """
    data = ctx.json(ctx.options.get("file", "gate-validation.json"))
    if "injected_units" in data:
        return _render_live_validation(ctx, data)
    rows = [
        [
            row["case"],
            fmt_pct(row["intended"], 0, sign=True) if row.get("intended") is not None else "–",
            fmt_pct(row["injected"], 1, sign=True),
            f"{row['detected']} of {row['trials']}",
            f"{row['false_alarms']} of {row['false_alarm_trials']}",
            fmt_pct(row["tolerance"], 1) if row.get("tolerance") is not None else "–",
        ]
        for row in data["sensitivity"]
    ]
    runs = data.get("gated_runs") or {"runs": 0}
    delivered = "delivered (at the baseline's clock, not wall time)"
    header = ["case", "intended", delivered, "detected", "false alarms", "tolerance"]
    lines = table(header, rows, right=range(1, 6))
    if runs["runs"]:
        lines += [
            "",
            f"Gated runs of the whole suite on an unchanged build: {runs['failed']} failed of {runs['runs']}.",
        ]
    return block(ctx, *lines)


LIVE_ROWS = {"plus3": "+3 % work", "plus5": "+5 % work", "power": "power-heavier"}


def _render_live_validation(ctx: Context, data: dict[str, Any]) -> str:
    rows = [
        [
            row["case"],
            LIVE_ROWS.get(str(row.get("row")))
            or (f"{fmt_pct(row['intended'], 0, sign=True)} work" if row.get("intended") is not None else "–"),
            fmt_pct(row["injected"], 1, sign=True),
            fmt_pct(row["injected_cycles"], 1, sign=True) if row.get("injected_cycles") is not None else "–",
            f"{row['detected']} of {row['trials']}",
            f"{row['false_alarms']} of {row['false_alarm_trials']}",
            fmt_pct(row["tolerance"], 1) if row.get("tolerance") is not None else "–",
        ]
        for row in data["sensitivity"]
    ]
    header = ["case", "row", "delivered (wall time)", "in cycles", "detected", "false alarms (unchanged)", "tolerance"]
    runs = data["gated_runs"]
    lines = table(header, rows, right=range(2, 7))
    cards = ""
    if data.get("recorded_on") and data.get("gated_on"):
        same = set(data["recorded_on"]) == set(data["gated_on"])
        cards = f", {'on the card that recorded the baselines' if same else 'on another card than the one that recorded them'}"
    lines += [
        "",
        f"{runs['runs']} gated runs through `pytest --attnperf`{cards}: the unchanged rows failed in {runs['failed']}.",
    ]
    return block(ctx, *lines)


# ---------------------------------------------------------------- the H200: the kernel suite's three recorded runs

SUITE_ID = "tests/suite/test_attention.py::"
PREFILL_ORDER = (
    "eager",
    "sdpa-math",
    "sdpa-efficient",
    "sdpa-flash",
    "flash-attn",
    "torch-varlen",
    "flex",
    "sdpa-cudnn",
    "flash-attn-4",
)


def _recorded_baselines(ctx: Context) -> Any:
    """The baseline file a record stage wrote (region option baseline=, default the H200's)."""
    return ctx.yaml(ctx.options.get("baseline", "record/nvidia-h200.yaml"))


def _recorded_report(ctx: Context) -> Any:
    """The last run's JSON report of a record stage (region option report=, default the H200's third run)."""
    return ctx.json_gz(ctx.options.get("report", "record/report-run3.json.gz"))


def _suite_cases(entries: dict[str, Any], test: str, workload: str | None = None) -> dict[tuple[str, int], Any]:
    """(backend, context length) -> baseline entry of one suite test (and workload)."""
    cases = {}
    for test_id, entry in entries.items():
        name = test_id.removeprefix(SUITE_ID)
        shape = entry.get("shape") or {}
        if name.startswith(f"{test}[") and (workload is None or shape.get("workload") == workload):
            cases[(entry["backend"], int(shape["k_len"]))] = entry
    return cases


def _entry_cell(entry: Any) -> str:
    if not entry.get("fits", True):
        return "does not fit"
    return f"{fmt_ms(entry['latency_ms']['median'])} · {fmt_bytes(entry['peak_bytes'])}"


@renderer("h200-prefill")
@renderer("suite-prefill")  # the same for any card's recorded baselines (baseline=, report=)
def render_h200_prefill(ctx: Context) -> str:
    """FlashAttention on vs off for the prompt: every backend's median and peak at each length, from the baselines."""
    data = _recorded_baselines(ctx)
    cases = _suite_cases(data["entries"], "test_forward")
    lengths = sorted({length for _, length in cases})
    backends = [name for name in PREFILL_ORDER if any((name, n) in cases for n in lengths)]
    rows = [[f"`{b}`", *[_entry_cell(cases[(b, n)]) if (b, n) in cases else "–" for n in lengths]] for b in backends]
    speedups = []
    for n in lengths:
        off, on = cases.get(("eager", n)), cases.get(("flash-attn", n))
        if off and on and off.get("fits", True) and on.get("fits", True):
            ratio = off["latency_ms"]["median"] / on["latency_ms"]["median"]
            memory = off["peak_bytes"] / on["peak_bytes"]
            speedups.append(f"{seqlen_label(n)}: {ratio:.1f}× faster, {memory:.0f}× less memory")
        elif off and on and not off.get("fits", True):
            speedups.append(f"{seqlen_label(n)}: standard attention does not fit, `flash-attn` runs")
    shape = next(iter(cases.values()))["shape"]
    runs = {entry.get("runs") for entry in cases.values()}
    return block(
        ctx,
        *table(["backend", *[seqlen_label(n) for n in lengths]], rows, right=range(1, len(lengths) + 1)),
        "",
        f"Median forward time · peak memory over the inputs, {shape['dtype']}, causal, batch {shape['batch']}, "
        f"{shape['heads']} heads, head_dim {shape['head_dim']}; each median is the centre of "
        f"{join(sorted(str(r) for r in runs))} independent runs (`attnperf update --runs 3`). "
        f"FlashAttention on (`flash-attn`) vs off (`eager`, materialised): {'; '.join(speedups)}.",
    )


@renderer("h200-frontier")
@renderer("suite-frontier")  # the same for any card's recorded baselines (baseline=, report=)
def render_h200_frontier(ctx: Context) -> str:
    """Where the materialising backends stop fitting, and what the fused ones need there."""
    data = _recorded_baselines(ctx)
    cases = _suite_cases(data["entries"], "test_forward")
    memory = data["device"]["memory_bytes"]
    lines = []
    for backend in ("eager", "sdpa-math"):
        lengths = sorted(n for b, n in cases if b == backend)
        misfits = [n for n in lengths if not cases[(backend, n)].get("fits", True)]
        fitting = [n for n in lengths if cases[(backend, n)].get("fits", True)]
        if misfits and fitting:
            last = cases[(backend, fitting[-1])]
            lines.append(
                f"`{backend}` fits at {seqlen_label(fitting[-1])} (peak {fmt_bytes(last['peak_bytes'])}) and "
                f"no longer at {seqlen_label(misfits[0])}"
            )
    longest = max(n for _, n in cases)
    fused = [
        cases[(b, longest)]["peak_bytes"]
        for b in PREFILL_ORDER
        if (b, longest) in cases and cases[(b, longest)].get("fits", True)
    ]
    return block(
        ctx,
        f"On the {data['device']['name']}'s {fmt_bytes(memory)}: {'; '.join(lines)}. Every fused backend runs {seqlen_label(longest)} "
        f"in {fmt_bytes_range(min(fused), max(fused))} over the inputs.",
    )


DECODE_ORDER = (
    "eager",
    "sdpa-math",
    "sdpa-efficient",
    "torch-varlen",
    "flex",
    "sdpa-flash",
    "flash-attn",
    "sdpa-cudnn",
    "flash-attn-4",
)


@renderer("h200-decode")
@renderer("suite-decode")  # the same for any card's recorded baselines (baseline=, report=)
def render_h200_decode(ctx: Context) -> str:
    """One decode step over a KV cache (plain and paged): median and share of the copy bandwidth, from a recorded run."""
    report = _recorded_report(ctx)
    cells: dict[tuple[str, str, int], str] = {}
    for result in report["results"]:
        shape = result.get("shape") or {}
        if shape.get("workload") not in ("decode", "paged") or not result.get("median_ms"):
            continue
        share = result.get("bandwidth_share")
        cells[(shape["workload"], result["backend"], int(shape["k_len"]))] = fmt_ms(result["median_ms"]) + (
            f" · {share * 100:.0f} %" if share else ""
        )
    lengths = sorted({n for _, _, n in cells})
    rows = []
    for workload in ("decode", "paged"):
        for backend in DECODE_ORDER:
            if any((workload, backend, n) in cells for n in lengths):
                rows.append([workload, f"`{backend}`", *[cells.get((workload, backend, n), "–") for n in lengths]])
    return block(
        ctx,
        *table(
            ["workload", "backend", *[f"{seqlen_label(n)} cache" for n in lengths]],
            rows,
            right=range(2, len(lengths) + 2),
        ),
        "",
        "One new token per sequence (batch 1, 32 heads, head_dim 128, fp16): median time · the bytes it must move "
        "(Q, the cache it reads, O) per second, as a share of the copy bandwidth measured in the same run. "
        "Paged: the cache in 256-token pages scattered in memory.",
    )


@renderer("h200-record")
def render_h200_record(ctx: Context) -> str:
    """The three update runs: outcome, wall time, and the sampling's share of the last one."""
    runs = re.findall(
        r"^run (\d+) of (\d+): exit (\d+), wall (\d+) s, (.*)$", ctx.read("record/record.txt"), flags=re.M
    )
    finished = [run for run in runs if run[2] == "0"]
    report = ctx.json_gz("record/report-run3.json.gz")
    sampling = sum((r.get("timing_info") or {}).get("sampling_wall_ms", 0.0) for r in report["results"]) / 1e3
    walls = [int(run[3]) for run in finished]
    return block(
        ctx,
        f"{len(finished)} runs of the kernel suite, each {finished[-1][4].split(' in ')[0]}; wall "
        f"{', '.join(f'{w} s' for w in walls)} (the first compiles FlexAttention's kernels). In the last run the "
        f"timed sampling took {sampling:.0f} s ({sampling / walls[-1] * 100:.0f} % of its wall time).",
    )


@renderer("hostile-probe")
def render_hostile_probe(ctx: Context) -> str:
    """The hostile probe's verdict counts and its whole table (a CPU run of benchmarks/hostile_probe.py)."""
    text = ctx.read("hostile-probe.md")
    counts = next((line for line in text.splitlines() if re.match(r"- \d+ probes: ", line)), None)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    if counts is None or len(rows) < 3:
        raise RenderError(f"{ctx.path('hostile-probe.md')}: no verdict counts or no table")
    return block(ctx, counts.removeprefix("- "), "", *rows)


PROBE_VERDICTS = ("clear error", "acceptable", "DEFECT", "skipped", "harness error")
# A run line of the report's header (benchmarks/hostile_probe.py's RunInfo.line).
PROBE_RUN = re.compile(
    r"^  - (?P<date>.+?) \([\d.]+ min\), pytest-attnperf at commit (?P<commit>\S+): `.+`; "
    r"families (?P<families>.+) \(\d+ probes\)$"
)


@renderer("hostile-probe-families")
def render_hostile_probe_families(ctx: Context) -> str:
    """The hostile probe's verdicts per family (``families=a,b``: only those), with the run that made each family's rows."""
    name = "hostile-probe.md"
    text = ctx.read(name)
    counts: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].isdigit():
            verdict = cells[4].strip("*")
            if verdict not in PROBE_VERDICTS:
                raise RenderError(f"{ctx.path(name)}: unknown verdict {verdict!r} in row {cells[0]}")
            counts.setdefault(cells[1], dict.fromkeys(PROBE_VERDICTS, 0))[verdict] += 1
    runs = {}
    for match in map(PROBE_RUN.match, text.splitlines()):
        if match:
            runs.update(dict.fromkeys(match["families"].split(", "), f"{match['date']}, commit {match['commit']}"))
    wanted = ctx.options["families"].split(",") if "families" in ctx.options else list(counts)
    unknown = [family for family in wanted if family not in counts]
    if unknown or not wanted:
        raise RenderError(f"{ctx.path(name)}: no probes of the families {', '.join(unknown) or '(none given)'}")
    shown = list(PROBE_VERDICTS[:3]) + [
        verdict for verdict in PROBE_VERDICTS[3:] if any(counts[family][verdict] for family in wanted)
    ]
    lines = [
        "| family | probes | " + " | ".join(shown) + " | run |",
        "| --- | ---: | " + " | ".join("---:" for _ in shown) + " | --- |",
    ]
    for family in wanted:
        row = counts[family]
        lines.append(
            f"| {family} | {sum(row.values())} | "
            + " | ".join(f"**{row[v]}**" if v == "DEFECT" and row[v] else str(row[v]) for v in shown)
            + f" | {runs.get(family, '-')} |"
        )
    return block(ctx, *lines)


def _found(pattern: str, text: str, name: str) -> re.Match[str]:
    match = re.search(pattern, text, flags=re.M)
    if match is None:
        raise RenderError(f"{name}: no line matching {pattern!r}")
    return match


@renderer("load-tax")
def render_load_tax(ctx: Context) -> str:
    """What every pytest run pays with the plugin installed (benchmarks/load_tax.py on a CPU machine)."""
    text = ctx.read("load-tax.txt")
    ratio = _found(r"^ratio of medians \(plugin installed / -p no:attnperf\): ([\d.]+) \(([+-][\d.]+) s", text, "load-tax.txt")
    cpu = _found(r"^ratio of CPU-time medians \(information, not the goal\): ([\d.]+)", text, "load-tax.txt")
    torch = _found(r"^torch imported when loading the plugin: (\w+)", text, "load-tax.txt")
    help_cost = _found(r"^attnperf --help: ([+-][\d.]+) s over python -c pass", text, "load-tax.txt")
    show_cost = _found(r"^attnperf show [^:\n]+: ([+-][\d.]+) s over python -c pass", text, "load-tax.txt")
    packages = _found(r"^packages: (.+)$", text, "load-tax.txt").group(1)
    runs = _found(r"^pytest, plugin installed .* (\d+)$", text, "load-tax.txt").group(1)
    load = _found(r"^load average \(1 min\) before / after: ([\d.]+) / ([\d.]+)", text, "load-tax.txt")
    return block(
        ctx,
        f"A one-test suite with the plugin installed takes {ratio.group(1)}× the median wall time of the same run with "
        f"`-p no:attnperf` ({ratio.group(2)} s; CPU time {cpu.group(1)}×), torch imported at load: {torch.group(1)}; "
        f"`attnperf --help` costs {help_cost.group(1)} s over `python -c pass`, `attnperf show` of the H200 baselines "
        f"{show_cost.group(1)} s. Measured where the README's CPU install puts it (a virtual environment with "
        f"`pip install torch==2.13.0 && pip install -e .` and nothing else: {packages}), on a 2-core CPU machine "
        f"shared with other work (load average {load.group(1)} before, {load.group(2)} after); medians of {runs} "
        "interleaved runs.",
    )


@renderer("foreign-suite")
def render_foreign_suite(ctx: Context) -> str:
    """A suite nobody here wrote (einops'), with the plugin installed and with -p no:attnperf."""
    text = ctx.read("foreign-suite.md")
    rows = {row[""]: row for row in markdown_tables(text)[0]}
    plugin, bare = "`plugin installed`", "`-p no:attnperf`"
    identical = _found(r"^\*\*identical outcomes: (\w+)\*\*", text, "foreign-suite.md").group(1)
    runs = _found(r"^- runs per mode: (\d+)", text, "foreign-suite.md").group(1)
    wall = rows["wall time, whole process (s)"]
    return block(
        ctx,
        f"einops' own test suite (its PyPI source distribution, numpy and torch backends), {runs} runs per mode: "
        f"identical outcomes in every run: **{identical}** ({rows['passed'][plugin]} passed, {rows['failed'][plugin]} "
        f"failed, {rows['skipped'][plugin]} skipped with the plugin; {rows['passed'][bare]}, {rows['failed'][bare]}, "
        f"{rows['skipped'][bare]} without); median wall time {wall[plugin].split()[0]} s with the plugin installed, "
        f"{wall[bare].split()[0]} s with `-p no:attnperf`.",
    )


COST_RUNS = [(run, cache) for run in ("before", "after") for cache in ("cold", "warm")]
REST_PHASES = (  # "rest": an old report's
    *("peak_call", "timing_other", "tests_other", "outside_tests", "rest"),
    *("release", "machine_reference", "power", "out_of_memory", "test_setup", "test_teardown"),
)
COST_PHASES = [  # (column, the phases_s keys it sums)
    ("start-up s", ()),
    ("compile (first call) s", ("first_call",)),
    ("warm-up s", ("warmup",)),
    ("sampling s", ("sampling",)),
    ("references + check s", ("reference", "equivalence")),
    ("fingerprint s", ("fingerprint",)),
    ("rest s", REST_PHASES),
]


@renderer("gate-cost")
def render_gate_cost(ctx: Context) -> str:
    """A gated kernel-suite run's cost before and after, cold and warm compile cache (cost/cost-*.json)."""
    rows = []
    for run, cache in COST_RUNS:
        name = f"cost/cost-{run}-{cache}.json"
        if not ctx.exists(name):
            continue
        cost = ctx.json(name)
        try:
            phases, wall, kernel = cost["phases_s"], float(cost["wall_s"]), float(cost["sampled_kernel_s"])
            startup = cost["startup_s"]  # None: a report from before the cost block (its start-up is in the rest)
            cells = ["–" if startup is None else f"{float(startup):.1f}"] + [
                f"{sum(float(phases.get(key, 0.0)) for key in keys):.1f}" for _, keys in COST_PHASES[1:]
            ]
            rows.append(
                [run, cost["cache"], str(cost["cases"]), f"{wall:.1f}", f"{kernel:.1f}", *cells,
                 f"{float(cost.get('lead_spin_s', 0.0)):.1f}", f"{wall / kernel:.1f}×" if kernel else "-"]
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            raise RenderError(f"{ctx.path(name)}: not a gate_cost.py cost.json ({error!r} missing or malformed)") from None
    if not rows:
        raise RenderError(f"{ctx.path('cost')}: no cost-{{before,after}}-{{cold,warm}}.json file")
    header = ["code", "compile cache", "cases", "wall s", "sampled kernel s", *(c for c, _ in COST_PHASES),
              "of which lead spin s", "wall / kernel"]  # fmt: skip
    return block(ctx, *table(header, rows, right=range(2, len(header))))


@renderer("memory-repeat")
def render_memory_repeat(ctx: Context) -> str:
    """The CPU memory gate run again and again right after one update: its false alarms."""
    text = ctx.read("memory-repeat.md")
    summary = _found(r"^\*\*(\d+) runs, (\d+) cases each: (\d+) memory false alarms\*\*.*?from its baseline in any run: ([\d.]+ %)", text, "memory-repeat.md")
    runs, cases, alarms, deviation = summary.groups()
    return block(
        ctx,
        f"The repo's CPU kernel suite gated {runs} times right after one `--attnperf-update`, {cases} cases each: "
        f"**{alarms} memory false alarms**; the largest peak deviation from its baseline in any run: {deviation}.",
    )


@renderer("gated-runs")
def render_gated_runs(ctx: Context) -> str:
    """Gated runs against the recorded baselines: each one's pytest summary."""
    summaries = []
    for name in ("gated/gate-forward-1.log", "gated/gate-forward-2.log"):
        summaries.append(summary_line(ctx.read(name)))
    failed = sum("failed" in summary for summary in summaries)
    return block(
        ctx,
        f"{failed} failed of {len(summaries)} gated runs of `test_forward` against the recorded baselines: "
        + "; ".join(f"`{summary}`" for summary in summaries)
        + ".",
    )


@renderer("history")
def render_history(ctx: Context) -> str:
    """`attnperf history` of a folder of JSON reports (<folder>/history/, real runs), as docs/ci.md shows it."""
    from pytest_attnperf.runs.drift import DriftRule
    from pytest_attnperf.runs.history import build_series, find_reports, history_markdown
    from pytest_attnperf.runs.stored import ReportError

    folder = ctx.root / ctx.path("history/")
    try:
        reports, _ = find_reports([folder])
    except ReportError as error:
        raise RenderError(str(error)) from None
    if not reports:
        raise RenderError(f"no JSON report in {ctx.path('history/')}")
    ctx.used.append("history/" if ctx.folder == "cpu" else "history")
    return block(ctx, *history_markdown(build_series(reports), DriftRule()))


# ---------------------------------------------------------------- README: main job, xdist


@renderer("main-job")
def render_main_job(ctx: Context) -> str:
    text = ctx.read("main-job.log")
    summary = PytestSummary.parse(summary_line(text))
    wall = re.search(r"^exit (\d+) wall ([\d.]+) s$", text, flags=re.M)
    rows = attnperf_rows(text)
    unfit = [test_label(row["test"]) for row in rows if row["verdict"] == "does not fit"]
    other = summary.skipped - len(unfit)
    took = f"took {wall.group(2)} s and " if wall else ""
    gpu = gpu_of(text) or "the GPU machine"
    rest = (
        f"; the other {other} skipped tests are not in the table (flash-attn-3 is not installed there)"
        if other > 0
        else ""
    )
    return block(
        ctx,
        f"`pytest --attnperf --attnperf-missing=fail` on the {gpu} {took}gave "
        f"**{summary.text()}** ({ctx.link('main-job.log')}; {len(rows)} cases in its table; "
        f"skipped because they do not fit: {join(unfit)}{rest}).",
    )


@renderer("xdist")
def render_xdist(ctx: Context) -> str:
    text = ctx.read("xdist.txt")
    gpus = re.findall(r"^GPU \d+: (.+?) \(UUID", text, flags=re.M)
    runs = {
        workers: (float(wall), PytestSummary.parse(rest))
        for workers, wall, rest in re.findall(r"^-n (\d+): exit \d+, wall ([\d.]+) s, (.*)$", text, flags=re.M)
    }
    entries = re.search(r"wrote (\d+) entries", text)
    tables = markdown_tables(text)
    if not tables or len(runs) < 2:
        raise RenderError(f"{ctx.path('xdist.txt')}: expected the '-n N' lines and the comparison table")
    compare = tables[0]
    ratios = [float(row["median ratio"].lstrip("x")) for row in compare if row["median ratio"].startswith("x")]
    second = list(compare[0].keys())[2]
    elsewhere = sum("cuda:1" in row[second] for row in compare)
    differing = re.search(r"(\d+) verdicts differ", text)
    counts = {summary.text() for _, summary in runs.values()}
    (n_a, (wall_a, _)), (n_b, (wall_b, _)) = sorted(runs.items())[:2]
    return block(
        ctx,
        f"On {len(gpus)} × {join(sorted(set(gpus)))}: the baselines were recorded with `-n 2`"
        f"{f' ({entries.group(1)} entries)' if entries else ''}; the gated suite then took {wall_a:.1f} s with "
        f"`-n {n_a}` and {wall_b:.1f} s with `-n {n_b}` ({'both ' + next(iter(counts)) if len(counts) == 1 else join(sorted(counts))}); "
        f"the two reports hold {len(compare)} cases and {differing.group(1) if differing else '?'} verdicts differ "
        f"({elsewhere} of the {len(compare)} cases ran on cuda:1 under `-n {n_b}`); the `-n {n_b}` medians are "
        f"{fmt_range(fmt_ratio(min(ratios)), fmt_ratio(max(ratios)))} of the `-n {n_a}` ones "
        f"({fmt_pct(min(ratios) - 1, sign=True)} to {fmt_pct(max(ratios) - 1, sign=True)}).",
    )


# ---------------------------------------------------------------- reliability on the GPU


@renderer("gpu-faults")
def render_gpu_faults(ctx: Context) -> str:
    text = ctx.read("gpu-faults.md")
    tables = markdown_tables(text)
    if len(tables) < 3:
        raise RenderError(f"{ctx.path('gpu-faults.md')}: expected the OOM, sdpa-flash and workspace tables")
    tries, after, workspace = tables[0], tables[1], tables[2]
    before = re.search(r"allocated before the inputs: (\d+) B; with the 32K inputs: (\d+) B", text)
    freed = re.search(r"allocated once the 32K inputs are freed: (\d+) B \(before them: (\d+) B\)", text)
    results = {f"`{row['result'].split(' Tried')[0].rstrip('.')}`" for row in tries}
    allocated = {row["allocated after"] for row in tries}
    changes = {row["change"] for row in tries}
    reserved = {row["reserved after"] for row in tries}
    peaks = {row["peak during the try"] for row in tries}
    checks = re.findall(r"^- (PASS|FAIL): (.+)$", text, flags=re.M)
    alone = parse_ms(after[0]["median"]) or 0.0

    def moved(row: dict[str, str]) -> str:
        median = parse_ms(row["median"].split(" (")[0]) or 0.0
        return f"{fmt_ms_precise(median)} ({fmt_pct(median / alone - 1, 2, sign=True)})"

    def bytes_change(value: str) -> str:
        """'+4294967296 B (4 GiB)' -> '+4,294,967,296 B (4 GiB)'; '+0 B (0 B)' -> '+0 B'."""
        match = re.match(r"([+-])(\d+) B(?: \((.+)\))?", value)
        if match is None:
            return value
        sign, number, readable = match.groups()
        text = f"{sign}{int(number):,} B"
        return f"{text} ({readable})" if readable and int(number) else text

    def bytes_cell(value: str) -> str:
        number = re.match(r"[+-]?\d+", value)
        return f"{int(number.group()):,} B" if number else value

    oom = (
        f"{len(tries)} tries, each: {join(sorted(results), 'or')}; allocated after the try "
        f"{join([bytes_cell(a) for a in sorted(allocated)], 'or')} ({join(sorted(changes), 'or')}), reserved after "
        f"{join(sorted(reserved), 'or')}, peak during the try {join(sorted(peaks), 'or')}"
    )
    if before and freed:
        oom += (
            f"; allocated with the 32K inputs {int(before.group(2)):,} B; once they are freed {int(freed.group(1)):,} B "
            f"(before them: {int(freed.group(2)):,} B)"
        )
    rows = [
        [
            "out-of-memory in one case (eager at 32K, B=1 H=32 D=128 fp16 causal), five times",
            oom,
            "`benchmarks/gpu_faults.py` (a)",
        ],
        [
            "the case after the OOMs (sdpa-flash 4K)",
            f"right after them {moved(after[2])} against {fmt_ms_precise(alone)} measured alone before; "
            f"a second measurement alone: {moved(after[1])}",
            "`benchmarks/gpu_faults.py` (a)",
        ],
        [
            "a backend that allocates 4 GiB of workspace and raises",
            f"allocated {workspace[0]['moment']}: {bytes_cell(workspace[0]['allocated'])}; "
            + "; ".join(f"{row['moment']}: {bytes_change(row['change'])}" for row in workspace[1:]),
            "`benchmarks/gpu_faults.py` (b)",
        ],
    ]
    passed = sum(result == "PASS" for result, _ in checks)
    return block(
        ctx,
        *table(["fault", "seen", "script"], rows),
        "",
        f"The script's own checks: {passed} of {len(checks)} pass"
        + (f" (failing: {join([name for result, name in checks if result != 'PASS'])})" if passed < len(checks) else "")
        + ".",
    )


def fmt_ms_precise(milliseconds: float) -> str:
    return f"{milliseconds:.4f} ms"


@renderer("property-gpu")
def render_property_gpu(ctx: Context) -> str:
    text = ctx.read("property-gpu.md")
    head = re.search(r"^(\d+) random shapes in ([\d.]+) s", text, flags=re.M)
    tables = markdown_tables(text)
    if not tables or head is None:
        raise RenderError(f"{ctx.path('property-gpu.md')}: expected the 'N random shapes in S s' line and the table")
    rows = [
        [
            row["backend"],
            row["ran"],
            row["agreed"],
            row["fp32 false alarms (known, error <= 1e-4)"],
            row["failed"],
            row["skipped"],
        ]
        for row in tables[0]
    ]
    failures = re.findall(r"^- ([\w-]+), (.+)$", text.partition("## Failures")[2], flags=re.M)
    notes = []
    for backend in dict.fromkeys(name for name, _ in failures):
        mine = [detail for name, detail in failures if name == backend]
        parts = []
        no_key = [detail for detail in mine if "see no key" in detail]
        if no_key:
            errors = [float(e) for e in re.findall(r"max \|out - ref\| = ([\d.e+-]+)", " ".join(no_key))]
            parts.append(
                f"{len(no_key)} with query rows that see no key"
                + (f", max |out − ref| {fmt_range(f'{min(errors):.3g}', f'{max(errors):.3g}')}" if errors else "")
            )
        raised: dict[str, int] = {}
        for detail in mine:
            match = re.search(r"raised (\w+): (?:\w+: )?(\w+Error)?", detail)
            if match:
                name, detail = match.groups()
                key = f"`{name}` (`{detail}`)" if detail else f"`{name}`"
                raised[key] = raised.get(key, 0) + 1
        parts.extend(f"{count} raised {name}" for name, count in raised.items())
        notes.append(f"{backend} {len(mine)}: {', '.join(parts)}" if parts else f"{backend} {len(mine)}")
    return block(
        ctx,
        f"{head.group(1)} random shapes in {head.group(2)} s:",
        "",
        *table(["backend", "ran", "agreed", "fp32 false alarms", "failed", "skipped"], rows, right=range(1, 6)),
        "",
        f"Failures: {'; '.join(notes)}." if notes else "No failures.",
    )


# ---------------------------------------------------------------- regions in Markdown

OPEN = re.compile(r"<!-- results:(?P<name>[\w-]+)(?P<args>(?: [^ >]+)*) -->")
REGION = re.compile(
    r"(?P<open><!-- results:(?P<name>[\w-]+)(?P<args>(?: [^ >]+)*) -->)(?P<body>.*?)(?P<close><!-- /results:(?P=name) -->)",
    re.S,
)


@dataclass
class Region:
    name: str
    args: str
    body: str
    line: int
    start: int
    end: int  # of the body

    @property
    def inline(self) -> bool:
        return not self.body.startswith("\n")


def regions(text: str) -> Iterator[Region]:
    for match in REGION.finditer(text):
        yield Region(
            match.group("name"),
            match.group("args").strip(),
            match.group("body"),
            text.count("\n", 0, match.start()) + 1,
            match.start("body"),
            match.end("body"),
        )


def render_region(root: Path, doc: Path, region: Region) -> str:
    """The body the region should have."""
    function = RENDERERS.get(region.name)
    if function is None:
        raise RenderError(f"unknown renderer {region.name!r}; known: {', '.join(sorted(RENDERERS))}")
    words = region.args.split()
    positional = [word for word in words if "=" not in word]
    if len(positional) != 1:
        raise RenderError(f"results:{region.name} needs exactly one result folder (e.g. h100), got {region.args!r}")
    options = dict(word.split("=", 1) for word in words if "=" in word)
    options = {key: value.replace("_", " ") if key == "config" else value for key, value in options.items()}
    ctx = Context(root=root, doc=doc, folder=positional[0], options=options)
    if not (root / RESULTS / ctx.folder).is_dir():
        raise RenderError(f"no result folder {RESULTS / ctx.folder}")
    text = function(ctx).strip("\n")
    if region.inline:
        # Inside a sentence: the text and its source line, on one line.
        body, _, source = text.rpartition("\n\n")
        if "\n" in body.strip():
            raise RenderError(f"results:{region.name} renders several lines; give it lines of its own")
        return f"{body.strip()} {source}"
    return f"\n{text}\n"


@dataclass
class Problem:
    doc: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.doc.as_posix()}:{self.line}: {self.message}"


def rewrite(root: Path, doc: Path, text: str) -> tuple[str, list[Problem]]:
    """The document with every region rendered from the data, and the regions that could not be."""
    problems: list[Problem] = []
    pieces, position = [], 0
    for region in regions(text):
        try:
            body = render_region(root, doc, region)
        except (RenderError, KeyError, ValueError, TypeError, IndexError) as error:
            problems.append(Problem(doc, region.line, f"results:{region.name}: cannot render: {error}"))
            body = region.body
        pieces.append(text[position : region.start])
        pieces.append(body)
        position = region.end
    pieces.append(text[position:])
    # An opening comment without its closing one is not a region at all: say so.
    closed = {region.line for region in regions(text)}
    for match in OPEN.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if line not in closed:
            problems.append(
                Problem(doc, line, f"results:{match.group('name')} has no <!-- /results:{match.group('name')} -->")
            )
    return "".join(pieces), problems


# ---------------------------------------------------------------- typed-in GPU figures

# What looks like a GPU figure: a number with a unit of time, size, throughput or tokens, a percentage,
# a ratio (×1.09, x3.779, 7.2×, a bare 0.955), an "N of M" or "N/M" count, a pytest outcome count.
NUMBER = r"[+±−-]?\d[\d,]*(?:\.\d+)?"
FIGURE_PATTERNS = (
    rf"(?<![\w.-]){NUMBER}(?:\s?[–-]\s?{NUMBER})?(?:\s?(?:ms|µs|us|ns|s|TFLOP/s|GB/s|GiB|MiB|KiB|GB|MB|tokens|%)|\sB)(?![\w/])",
    r"(?<![\w.])×\d+(?:\.\d+)?",
    r"(?<![\w.])x\d+\.\d+",
    r"(?<![\w.])\d+(?:\.\d+)?×",
    r"(?<![\w.,])\d[\d,]* of (?:the )?\d[\d,]*(?![\w.])",
    r"(?<![\w./])\d+/\d+(?![\w./])",
    r"(?<![\w.])\d+ (?:passed|failed|skipped)\b",
    r"(?<![\w.])\d\.\d{3}(?![\w.])",
)
FIGURE = re.compile("|".join(f"(?:{pattern})" for pattern in FIGURE_PATTERNS))

# Numbers that match FIGURE_PATTERNS but are not GPU measurements: (file glob, pattern, why).
ALLOWED: tuple[tuple[str, str, str], ...] = (
    ("*", r"(?<![\d.])(?:±)?(?:3|5|10|25) ?%", "tolerance settings and the ±3 % target"),
    ("*", r"\b(?:25|100) ms\b", "--attnperf-warmup / --attnperf-rep defaults"),
    ("*", r"\b80GB\b", "part of the GPU's name (H100 80GB HBM3)"),
    (
        "README.md",
        r"\b(?:10|80|128(?:\.5)?|16) GiB\b|\b(?:128|16) GB\b",
        "`attnperf memory` arithmetic for Llama-2-70B, no GPU",
    ),
    (
        "docs/reliability.md",
        r"\d[\d,]* of (?:the )?[\d,]+ (?:fp32 |CPU )?(?:checks|output elements)",
        "CPU unit-test counts",
    ),
    ("docs/reliability.md", r"about 4 s each", "CPU compile time of flex per shape"),
    ("docs/reliability.md", r"durations 0 ms", "a bad option value in a CPU test"),
    ("README.md", r"FLOPs ×2\.5, ×3\.5", "FLOP multipliers of the training modes"),
    ("*", r"\ba 20 ms check\b", "the busy-CPU check's length, a constant of measure/cpu_load.py"),
    ("docs/reliability.md", r"SIGKILL after 10 s", "the cancelled update's grace, a constant of update_process.py"),
)
# Fenced blocks in these languages are code (commands, examples), not output: skipped.
CODE_LANGUAGES = {"python", "py", "bash", "sh", "shell", "yaml", "yml", "toml", "ini", "json"}


def _masked_lines(text: str) -> list[str]:
    """The document's lines with regions, HTML comments, code blocks, code spans and link targets blanked."""
    for region in regions(text):
        body = text[region.start : region.end]
        text = text[: region.start] + re.sub(r"[^\n]", " ", body) + text[region.end :]
    text = re.sub(r"<!--.*?-->", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    lines = text.split("\n")
    fence: str | None = None
    skipping = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = "```"
            skipping = stripped[3:].strip().lower() in CODE_LANGUAGES
            lines[index] = ""
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            if skipping or fence is None:
                lines[index] = ""
            continue
        line = re.sub(r"`[^`]*`", " ", line)
        lines[index] = re.sub(r"\]\([^)]*\)", "]", line)
    return lines


def typed_in_figures(doc: Path, text: str) -> list[Problem]:
    allowed = [re.compile(pattern) for glob, pattern, _ in ALLOWED if glob == "*" or doc.match(glob)]
    problems = []
    original = text.split("\n")
    for index, line in enumerate(_masked_lines(text)):
        for pattern in allowed:
            line = pattern.sub(" ", line)
        found = [match.group().strip() for match in FIGURE.finditer(line)]
        if found:
            problems.append(
                Problem(
                    doc,
                    index + 1,
                    f"GPU figure outside a generated region ({', '.join(found)}): {original[index].strip()}",
                )
            )
    return problems


# ---------------------------------------------------------------- command line


def documents(root: Path) -> list[Path]:
    """README.md and docs/*.md (the result files under docs/results/ are data, not prose)."""
    docs = [Path("README.md")] if (root / "README.md").is_file() else []
    docs += sorted(path.relative_to(root) for path in (root / "docs").glob("*.md"))
    return docs


def run(root: Path, check: bool, out: Callable[[str], None] = print) -> int:
    status = 0
    for doc in documents(root):
        text = (root / doc).read_text(encoding="utf-8")
        new, problems = rewrite(root, doc, text)
        if check:
            if new != text:
                stale = [
                    f"results:{old.name}"
                    for old, fresh in zip(regions(text), regions(new), strict=False)
                    if old.body != fresh.body
                ]
                out(f"{doc.as_posix()}: stale generated region(s): {', '.join(stale)}; run `{SCRIPT}`")
                out(
                    "".join(
                        difflib.unified_diff(
                            text.splitlines(keepends=True),
                            new.splitlines(keepends=True),
                            f"{doc.as_posix()} (committed)",
                            f"{doc.as_posix()} (from the data)",
                        )
                    )
                )
                status = 1
            problems += typed_in_figures(doc, text)
        elif new != text:
            (root / doc).write_text(new, encoding="utf-8")
            out(f"rewrote {doc.as_posix()}")
        for problem in problems:
            out(str(problem))
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a region is stale or a GPU figure is typed in"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this script's repository)")
    args = parser.parse_args(argv)
    return run(args.root.resolve(), args.check)


if __name__ == "__main__":
    sys.exit(main())
