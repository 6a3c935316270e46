"""Regenerate every GPU figure quoted in README.md and docs/*.md from the committed result files.

The project's rule is "numbers come from data": a GPU figure in the prose is written by a region kind of
this script from a file under docs/results/, never typed in. In the Markdown, a generated region is

    <!-- results:NAME FOLDER [key=value ...] -->
    ...generated text...
    <!-- /results:NAME -->

NAME picks a row of ``KINDS``, FOLDER is the result folder under docs/results/ (``h100``, ``h200x2``;
an H200 section is the same region with ``h200``). A region whose opening comment is followed by a line
break is a block (its own lines); otherwise it is inline, inside a sentence. Each block ends with a line
naming its source files and the command that made them (``stage=`` names another ``gpu_session.sh`` stage).

    python benchmarks/render_results.py           # rewrite the regions in place
    python benchmarks/render_results.py --check   # exit 1 on a stale region or a typed-in GPU figure

Adding a GPU: copy the $OUT of a ``gpu_session.sh`` run (file names as the stages write them) into
docs/results/<gpu>/ and add regions naming that folder. Adding a kind of result: one function from the
parsed data to the region's lines, and one row of ``KINDS`` naming it, the files it reads and their stages.

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

# How a stage is run when it needs more than `bash benchmarks/gpu_session.sh STAGE`; some are CPU scripts.
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


class RenderError(Exception):
    """A region cannot be rendered: a missing or malformed source file, a bad region header."""


# ---------------------------------------------------------------- formatting numbers and text


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
    return f"{sig(milliseconds * 1e3)} µs" if milliseconds < 0.1 else f"{sig(milliseconds)} ms"


def fmt_ms_precise(milliseconds: float) -> str:
    return f"{milliseconds:.4f} ms"


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


def fmt_ratio(ratio: float) -> str:
    return f"×{ratio:.3f}"


def fmt_pct(fraction: float, decimals: int = 1, sign: bool = False) -> str:
    text = f"{fraction * 100:+.{decimals}f}" if sign else f"{fraction * 100:.{decimals}f}"
    return text.replace("-", "−") + " %"


def fmt_range(low: str, high: str) -> str:
    return low if low == high else f"{low}–{high}"


def span(values: Iterable[Any], fmt: Callable[[Any], str] = str) -> str:
    """The range of ``values``, each end formatted: '3', '31.2–35.0'."""
    values = list(values)
    return fmt_range(fmt(min(values)), fmt(max(values)))


def f3(value: float) -> str:
    return f"{value:.3f}"


def f1(value: float) -> str:
    return f"{value:.1f}"


def seqlen_label(seqlen: int) -> str:
    return f"{seqlen // 1024}K" if seqlen % 1024 == 0 else f"{seqlen:,}"


def join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """A Markdown table; the columns of ``right`` right-aligned."""
    aligned = set(right)
    out = ["| " + " | ".join(header) + " |"]
    out.append("| " + " | ".join("---:" if index in aligned else "---" for index in range(len(header))) + " |")
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return out


# ---------------------------------------------------------------- reading what the tools print


def parse_ms(text: str) -> float | None:
    """'0.374 ms', '62.7 us', '62.7 µs', '0.4354' (ms) -> milliseconds; '-' or 'does not fit' -> None."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(ms|us|µs)?\s*", text)
    if match is None:
        return None
    value = float(match.group(1))
    return value / 1e3 if match.group(2) in ("us", "µs") else value


def first_int(text: str) -> int | None:
    """The first whole number in a text ('+10% of the median' -> 10), or None."""
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def gpu_of(text: str) -> str | None:
    """The GPU a plugin run names in its summary header ('attnperf: NVIDIA H100 80GB HBM3 (cuda:0)')."""
    match = re.search(r"attnperf: (.+?) \((?:cuda|cpu)", text)
    return match.group(1) if match else None


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
        errors = counts.get("error", 0) + counts.get("errors", 0)
        return cls(counts.get("passed", 0), counts.get("failed", 0), counts.get("skipped", 0), errors)

    def text(self) -> str:
        parts = [f"{self.passed} passed", f"{self.skipped} skipped", f"{self.failed} failed"]
        return ", ".join(parts + ([f"{self.errors} errors"] if self.errors else []))


def attnperf_rows(text: str) -> list[dict[str, str]]:
    """The per-case rows of the plugin's terminal summary (columns separated by two or more spaces)."""
    rows = []
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if not re.match(r"test_\w+\[", line) or len(cells) < 9:
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


# ---------------------------------------------------------------- the region kinds' machinery


@dataclass
class Context:
    """What a region kind gets: the repository, the Markdown file it writes into, its result folder."""

    root: Path
    doc: Path  # relative to root
    folder: str  # under docs/results/
    options: dict[str, str] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # the kind's files -> the stage that writes each
    main: str = ""  # the file the kind parses
    used: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return RESULTS / self.folder / name

    def error(self, message: str, name: str | None = None) -> RenderError:
        """A RenderError naming the result file (default: the one the kind parses)."""
        return RenderError(f"{self.path(name or self.main).as_posix()}: {message}")

    def exists(self, name: str) -> bool:
        return (self.root / self.path(name)).is_file()

    def read(self, name: str) -> str:
        return self.load(name, text=True)  # type: ignore[no-any-return]

    def load(self, name: str, text: bool = False) -> Any:
        """A result file, parsed by its suffix (.json, .json.gz, .yaml; else its text); remembered as a source."""
        path = self.root / self.path(name)
        if not path.is_file():
            raise RenderError(f"{self.path(name).as_posix()} does not exist")
        if name not in self.used:
            self.used.append(name)
        if name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                content = handle.read()
        else:
            content = path.read_text(encoding="utf-8")
        try:
            if not text and name.endswith((".json", ".json.gz")):
                return json.loads(content)
            if not text and name.endswith((".yaml", ".yml")):
                return yaml.load(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise self.error(
                f"not valid {'JSON' if name.endswith(('.json', '.gz')) else 'YAML'} ({error})", name
            ) from None
        return content

    def tables(self, name: str, count: int = 1, what: str = "no table") -> list[list[dict[str, str]]]:
        """The Markdown tables of a result file; a RenderError saying ``what`` when it has fewer than ``count``."""
        tables = markdown_tables(self.read(name))
        if len(tables) < count:
            raise self.error(what, name)
        return tables

    def find(self, pattern: str, name: str | None = None) -> re.Match[str]:
        """The first line of a result file (default: the kind's) that matches ``pattern``."""
        match = re.search(pattern, self.read(name or self.main), flags=re.M)
        if match is None:
            raise self.error(f"no line matching {pattern!r}", name)
        return match

    def link(self, name: str, anchor: str = "") -> str:
        """A Markdown link to a result file, relative to the document, showing its repository path."""
        target = self.path(name).as_posix()
        href = os.path.relpath(target, self.doc.parent.as_posix() or ".")
        return f"[{target}]({Path(href).as_posix()}{'#' + anchor if anchor else ''})"

    def command(self, name: str) -> str:
        stage = self.options.get("stage") or self.stages.get(name)  # stage=: a region whose files another stage wrote
        if stage is None:
            raise RenderError(f"no stage is known for {name}: add it to the files of its row of KINDS")
        return STAGE_COMMANDS.get(stage, f"bash benchmarks/gpu_session.sh {stage}")

    def source_line(self) -> str:
        """The closing line of a block region: each file it read and the command that made it."""
        sources = [f"{self.link(name)} (`{self.command(name)}`)" for name in self.used]
        return f"<sub>Generated by `{SCRIPT}` from {join(sources)}.</sub>"


@dataclass(frozen=True)
class Kind:
    """A row of KINDS: which files a region kind reads, how it parses the first, how it writes the region."""

    render: Callable[[Context, Any], list[str]]  # (context, the parsed data) -> the region's lines
    files: dict[str, str]  # each file it may read -> the gpu_session.sh stage (or STAGE_COMMANDS key) that writes it
    parse: Callable[[Context, str], Any] = Context.load
    option: str | None = None  # a region option naming another file of the folder to parse instead of the first


# ---------------------------------------------------------------- the study (attnperf report)

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


def study_answer(ctx: Context, study: Any) -> list[str]:
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


def study_frontier(ctx: Context, study: Any) -> list[str]:
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


# ---------------------------------------------------------------- timing fidelity


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


def fidelity_summary(ctx: Context, fidelity: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[str]:
    """One sentence for the README: how many cases agree with do_bench within ±3 %, and which do not."""
    ran, outside = fidelity[0], _outside(fidelity[0])
    listed = "; outside it, plugin/do_bench: " + join([f"{_case_name(c)} {fmt_ratio(c['ratio'])}" for c in outside])
    return [
        f"The plugin's medians agree with `triton.testing.do_bench` within ±3 % for {_within(ran, 0.03)} of the "
        f"{len(ran)} cases that fit (fp16, causal, B=1, H=32, D=128, forward){listed if outside else ''}."
    ]


def fidelity(ctx: Context, fidelity: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[str]:
    """The do_bench comparison: counts within ±3 % and ±2.5 %, the cases outside, and the same cases in the study."""
    (ran, unfit), outside = fidelity, _outside(fidelity[0])
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


# ---------------------------------------------------------------- the gate: false alarms, sensitivity, cost


def false_alarm_runs(ctx: Context, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The 'run N: exit S, wall W s, <summary>' lines of false-alarms.txt, and what each JSON report held."""
    text = ctx.read(name)
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
        raise ctx.error("no 'run N: exit S, wall W s' lines")
    return runs, reports


def false_alarms(ctx: Context, data: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[str]:
    """How many gated runs of an unchanged build failed, and what their JSON reports list."""
    runs, reports = data
    failing = [run for run in runs if run["exit"] != 0]
    counts = {run["summary"].text() for run in runs}
    listed = [report for report in reports if report["failures"]]
    head = (
        f"**{plural(len(failing), 'failing run')} of {len(runs)}**"
        if failing
        else f"**0 failures in {len(runs)} runs**"
    )
    each = "each: " + next(iter(counts)) if len(counts) == 1 else join(sorted(counts), "or")
    return [
        f"{head} (exit status {span([run['exit'] for run in runs])}; {each}); the {len(reports)} JSON reports hold "
        f"{span([r['cases'] for r in reports])} cases each and list "
        f"{plural(len(listed), 'failure') if listed else 'no failure'}."
    ]


def cost(ctx: Context, data: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[str]:
    """The wall time of a gated run, and the sampled kernel time's share of it."""
    runs, reports = data
    kernel = {report["run"]: report["kernel"] for report in reports}
    shares = [kernel[run["run"]] / run["wall"] for run in runs if run["run"] in kernel]
    return [
        f"A full gated run of the attention suite ({span([r['cases'] for r in reports])} cases) took "
        f"**{span([run['wall'] for run in runs], f1)} s from `pytest` start to exit** over the "
        f"{len(runs)} runs. The sampled kernel time was {span(kernel.values(), f1)} s of that "
        f"({span([round(share * 100) for share in shares])} %)."
    ]


def sensitivity(ctx: Context, text: str) -> list[str]:
    """Detected/false-alarm counts per tolerance, the drift of the unchanged rows and what the injections added."""
    rows = ctx.tables(ctx.main)[0]
    tolerances = sorted(
        (column for column in rows[0] if re.fullmatch(r"detected at \d+% tolerance", column)),
        key=lambda column: -(first_int(column) or 0),
    )
    if not tolerances:
        raise ctx.error("no 'detected at N% tolerance' columns")
    cases = list(dict.fromkeys((row["backend"], int(row["length"])) for row in rows))
    kinds = list(dict.fromkeys(row["injected"] for row in rows))
    by = {(row["backend"], int(row["length"]), row["injected"]): row for row in rows}
    none = next((kind for kind in kinds if not kind.startswith("+")), None)
    injected = sorted((kind for kind in kinds if kind != none), key=lambda kind: first_int(kind) or 0)
    order = [*reversed(injected), *([none] if none is not None else [])]
    labels = [f"detected at +{first_int(kind)} %" if kind != none else "false alarms (no injection)" for kind in order]
    out = []
    for column in tolerances:
        line = [f"{first_int(column)} %"]
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
        *table(["tolerance", *labels], out),
        "",
        f"Cases, in this order: {join([f'{b} {seqlen_label(n)}' for b, n in cases])}; "
        f"{rows[0][tolerances[0]].split('/')[1]} trials per row, the baseline measured once in the same process.",
    ]
    if none is not None:
        added = "; ".join(
            f"+{first_int(kind)} % → "
            + ", ".join(fmt_pct(ratio(b, n, kind) / ratio(b, n, none) - 1, sign=True) for b, n in cases)
            for kind in injected
        )
        lines.append(
            "Mean measured ratio to that baseline with nothing injected: "
            + ", ".join(fmt_ratio(ratio(b, n, none)) for b, n in cases)
            + f"; what the injections added over that unchanged row: {added}."
        )
    return lines


def gate_simulation(ctx: Context, data: Any) -> list[str]:
    """The CPU simulation of the old and the new gate, per case: false alarms and slowdowns caught."""
    trials = int(data["trials"])
    rows = []
    for case in data["cases"]:
        old, new = case["old"], case["new"]
        old_cells = [" / ".join(str(old[level][tol]) for tol in ("0.10", "0.05", "0.03")) for level in ("0.00", "0.05")]
        new_cells = [str(new[level]) for level in ("0.00", "0.03", "0.05", "0.10")]
        rows.append(
            [case["case"], fmt_pct(case["sigma_b"], 2), fmt_pct(case["sigma_normalised"], 2), *old_cells, *new_cells]
        )
    caught = [case["new"]["0.05"] for case in data["cases"]]
    worst = min(data["cases"], key=lambda case: case["new"]["0.05"])
    probability = data["p_any_false_alarm_in_10_suite_runs"]
    header = ["case", "between-run sd, raw", "normalised", "old: false alarms", "old: +5 % caught", "new: false alarms",
              "new: +3 %", "new: +5 %", "new: +10 %"]  # fmt: skip
    return [
        f"Out of {trials} simulated trials per cell (the old gate at tolerances 10 / 5 / 3 %; the new gate at its "
        "automatic tolerance):",
        "",
        *table(header, rows, right=range(1, 9)),
        "",
        f"The new gate catches +5 % in {min(caught)}–{max(caught)} of {trials} trials per case (fewest: "
        f"{worst['case']}); its model's probability of at least one false alarm in {data['suite_runs']} runs of "
        f"these {len(data['cases'])} cases is {'below 0.0001' if probability < 1e-4 else f'{probability:.4f}'}. "
        "A simulation fitted to one H100's committed runs: it guides the design and proves nothing about a GPU.",
    ]


LIVE_ROWS = {"plus3": "+3 % work", "plus5": "+5 % work", "power": "power-heavier"}


def gate_validation(ctx: Context, data: Any) -> list[str]:
    """The GPU proof of the gate (issue 15's form): injected slowdowns caught, false alarms, gated runs.

    A file with ``injected_units`` (benchmarks/gate_validation_live.py) gives the delivered slowdown in wall
    time with cycles beside it, per row; the older files gave it at the baseline's clock, and say so.
    """
    live = "injected_units" in data
    rows = []
    for row in data["sensitivity"]:
        intended = fmt_pct(row["intended"], 0, sign=True) if row.get("intended") is not None else "–"
        if live:
            intended = LIVE_ROWS.get(str(row.get("row"))) or (intended if intended == "–" else f"{intended} work")
        cells = [row["case"], intended]
        cells.append(fmt_pct(row["injected"], 1, sign=True))
        if live:
            cycles = row.get("injected_cycles")
            cells.append(fmt_pct(cycles, 1, sign=True) if cycles is not None else "–")
        tolerance = fmt_pct(row["tolerance"], 1) if row.get("tolerance") is not None else "–"
        cells += [
            f"{row['detected']} of {row['trials']}",
            f"{row['false_alarms']} of {row['false_alarm_trials']}",
            tolerance,
        ]
        rows.append(cells)
    if not live:
        runs = data.get("gated_runs") or {"runs": 0}
        header = ["case", "intended", "delivered (at the baseline's clock, not wall time)", "detected", "false alarms",
                  "tolerance"]  # fmt: skip
        lines = table(header, rows, right=range(1, 6))
        if runs["runs"]:
            lines += [
                "",
                f"Gated runs of the whole suite on an unchanged build: {runs['failed']} failed of {runs['runs']}.",
            ]
        return lines
    runs = data["gated_runs"]
    cards = ""
    if data.get("recorded_on") and data.get("gated_on"):
        same = set(data["recorded_on"]) == set(data["gated_on"])
        cards = f", {'on the card that recorded the baselines' if same else 'on another card than the one that recorded them'}"
    header = ["case", "row", "delivered (wall time)", "in cycles", "detected", "false alarms (unchanged)", "tolerance"]
    return [
        *table(header, rows, right=range(2, 7)),
        "",
        f"{runs['runs']} gated runs through `pytest --attnperf`{cards}: the unchanged rows failed in {runs['failed']}.",
    ]


COST_RUNS = [(run, cache) for run in ("before", "after") for cache in ("cold", "warm")]
COST_PHASES = [  # (column, the phases_s keys it sums)
    ("start-up s", ()),
    ("compile (first call) s", ("first_call",)),
    ("warm-up s", ("warmup",)),
    ("sampling s", ("sampling",)),
    ("references + check s", ("reference", "equivalence")),
    ("fingerprint s", ("fingerprint",)),
    ("rest s", ("peak_call", "timing_other", "tests_other", "outside_tests", "rest")),  # rest: an old report's
]


def cost_rows(ctx: Context, name: str) -> list[list[str]]:
    """One table row per cost/cost-{before,after}-{cold,warm}.json of the folder (benchmarks/gate_cost.py)."""
    rows = []
    for run, cache in COST_RUNS:
        name = f"cost/cost-{run}-{cache}.json"
        if not ctx.exists(name):
            continue
        cost = ctx.load(name)
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
            raise ctx.error(f"not a gate_cost.py cost.json ({error!r} missing or malformed)", name) from None
    if not rows:
        raise ctx.error("no cost-{before,after}-{cold,warm}.json file", "cost")
    return rows


def gate_cost(ctx: Context, rows: list[list[str]]) -> list[str]:
    """A gated kernel-suite run's cost before and after, cold and warm compile cache."""
    header = ["code", "compile cache", "cases", "wall s", "sampled kernel s", *(c for c, _ in COST_PHASES),
              "of which lead spin s", "wall / kernel"]  # fmt: skip
    return table(header, rows, right=range(2, len(header)))


# ---------------------------------------------------------------- the kernel suite's recorded runs (record stage)

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


def suite_prefill(ctx: Context, data: Any) -> list[str]:
    """FlashAttention on vs off for the prompt: every backend's median and peak at each length, from the baselines."""
    cases = _forward_cases(data)
    lengths = sorted({length for _, length in cases})
    backends = [name for name in PREFILL_ORDER if any((name, n) in cases for n in lengths)]

    def cell(entry: Any) -> str:
        if entry is None:
            return "–"
        return (
            f"{fmt_ms(entry['latency_ms']['median'])} · {fmt_bytes(entry['peak_bytes'])}"
            if _fits(entry)
            else "does not fit"
        )

    rows = [[f"`{b}`", *[cell(cases.get((b, n))) for n in lengths]] for b in backends]
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


def suite_frontier(ctx: Context, data: Any) -> list[str]:
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


def suite_decode(ctx: Context, report: Any) -> list[str]:
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


def suite_record(ctx: Context, text: str) -> list[str]:
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


# ---------------------------------------------------------------- CPU runs: load tax, foreign suite, probes, history


def load_tax(ctx: Context, text: str) -> list[str]:
    """What every pytest run pays with the plugin installed (benchmarks/load_tax.py on a CPU machine)."""
    ratio = ctx.find(r"^ratio of medians \(plugin installed / -p no:attnperf\): ([\d.]+) \(([+-][\d.]+) s")
    cpu = ctx.find(r"^ratio of CPU-time medians \(information, not the goal\): ([\d.]+)")[1]
    torch = ctx.find(r"^torch imported when loading the plugin: (\w+)")[1]
    help_cost = ctx.find(r"^attnperf --help: ([+-][\d.]+) s over python -c pass")[1]
    show_cost = ctx.find(r"^attnperf show [^:\n]+: ([+-][\d.]+) s over python -c pass")[1]
    packages = ctx.find(r"^packages: (.+)$")[1]
    runs = ctx.find(r"^pytest, plugin installed .* (\d+)$")[1]
    load = ctx.find(r"^load average \(1 min\) before / after: ([\d.]+) / ([\d.]+)")
    return [
        f"A one-test suite with the plugin installed takes {ratio[1]}× the median wall time of the same run with "
        f"`-p no:attnperf` ({ratio[2]} s; CPU time {cpu}×), torch imported at load: {torch}; "
        f"`attnperf --help` costs {help_cost} s over `python -c pass`, `attnperf show` of the H200 baselines "
        f"{show_cost} s. Measured where the README's CPU install puts it (a virtual environment with "
        f"`pip install torch==2.13.0 && pip install -e .` and nothing else: {packages}), on a 2-core CPU machine "
        f"shared with other work (load average {load[1]} before, {load[2]} after); medians of {runs} "
        "interleaved runs."
    ]


def foreign_suite(ctx: Context, text: str) -> list[str]:
    """A suite nobody here wrote (einops'), with the plugin installed and with -p no:attnperf."""
    rows = {row[""]: row for row in ctx.tables(ctx.main)[0]}
    plugin, bare = "`plugin installed`", "`-p no:attnperf`"
    identical = ctx.find(r"^\*\*identical outcomes: (\w+)\*\*")[1]
    runs = ctx.find(r"^- runs per mode: (\d+)")[1]
    wall = rows["wall time, whole process (s)"]
    return [
        f"einops' own test suite (its PyPI source distribution, numpy and torch backends), {runs} runs per mode: "
        f"identical outcomes in every run: **{identical}** ({rows['passed'][plugin]} passed, {rows['failed'][plugin]} "
        f"failed, {rows['skipped'][plugin]} skipped with the plugin; {rows['passed'][bare]}, {rows['failed'][bare]}, "
        f"{rows['skipped'][bare]} without); median wall time {wall[plugin].split()[0]} s with the plugin installed, "
        f"{wall[bare].split()[0]} s with `-p no:attnperf`."
    ]


def memory_repeat(ctx: Context, text: str) -> list[str]:
    """The CPU memory gate run again and again right after one update: its false alarms."""
    runs, cases, alarms, deviation = ctx.find(
        r"^\*\*(\d+) runs, (\d+) cases each: (\d+) memory false alarms\*\*.*?from its baseline in any run: ([\d.]+ %)"
    ).groups()
    return [
        f"The repo's CPU kernel suite gated {runs} times right after one `--attnperf-update`, {cases} cases each: "
        f"**{alarms} memory false alarms**; the largest peak deviation from its baseline in any run: {deviation}."
    ]


def hostile_probe(ctx: Context, text: str) -> list[str]:
    """The hostile probe's verdict counts and its whole table (a CPU run of benchmarks/hostile_probe.py)."""
    counts = next((line for line in text.splitlines() if re.match(r"- \d+ probes: ", line)), None)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    if counts is None or len(rows) < 3:
        raise ctx.error("no verdict counts or no table")
    return [counts.removeprefix("- "), "", *rows]


PROBE_VERDICTS = ("clear error", "acceptable", "DEFECT", "skipped", "harness error")
# A run line of the report's header (benchmarks/hostile_probe.py's RunInfo.line).
PROBE_RUN = re.compile(
    r"^  - (?P<date>.+?) \([\d.]+ min\), pytest-attnperf at commit (?P<commit>\S+): `.+`; "
    r"families (?P<families>.+) \(\d+ probes\)$"
)


def hostile_probe_families(ctx: Context, text: str) -> list[str]:
    """The hostile probe's verdicts per family (``families=a,b``: only those), with the run that made each family's rows."""
    counts: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].isdigit():
            verdict = cells[4].strip("*")
            if verdict not in PROBE_VERDICTS:
                raise ctx.error(f"unknown verdict {verdict!r} in row {cells[0]}")
            counts.setdefault(cells[1], dict.fromkeys(PROBE_VERDICTS, 0))[verdict] += 1
    runs = {}
    for match in map(PROBE_RUN.match, text.splitlines()):
        if match:
            runs.update(dict.fromkeys(match["families"].split(", "), f"{match['date']}, commit {match['commit']}"))
    wanted = ctx.options["families"].split(",") if "families" in ctx.options else list(counts)
    unknown = [family for family in wanted if family not in counts]
    if unknown or not wanted:
        raise ctx.error(f"no probes of the families {', '.join(unknown) or '(none given)'}")
    shown = [*PROBE_VERDICTS[:3], *(v for v in PROBE_VERDICTS[3:] if any(counts[family][v] for family in wanted))]
    rows = [
        [family, str(sum(counts[family].values())),
         *(f"**{n}**" if v == "DEFECT" and n else str(n) for v, n in ((v, counts[family][v]) for v in shown)),
         runs.get(family, "-")]
        for family in wanted
    ]  # fmt: skip
    return table(["family", "probes", *shown, "run"], rows, right=range(1, len(shown) + 2))


def history_reports(ctx: Context, name: str) -> Any:
    """The JSON reports of <folder>/history/ (real runs), as pytest_attnperf's history reads them."""
    from pytest_attnperf.runs.history import find_reports
    from pytest_attnperf.runs.stored import ReportError

    try:
        reports, _ = find_reports([ctx.root / ctx.path(name)])
    except ReportError as error:
        raise RenderError(str(error)) from None
    if not reports:
        raise RenderError(f"no JSON report in {ctx.path(name).as_posix()}/")
    ctx.used.append(name if ctx.folder == "cpu" else "history")  # the CPU runs' stage is a script, not the GPU's
    return reports


def history(ctx: Context, reports: Any) -> list[str]:
    """`attnperf history` of a folder of JSON reports, as docs/ci.md shows it."""
    from pytest_attnperf.runs.drift import DriftRule
    from pytest_attnperf.runs.history import build_series, history_markdown

    return list(history_markdown(build_series(reports), DriftRule()))


# ---------------------------------------------------------------- the GPU session's other runs


def main_job(ctx: Context, text: str) -> list[str]:
    """The gated suite on the GPU machine: its outcome, wall time and the cases that do not fit."""
    summary = PytestSummary.parse(summary_line(text))
    wall = re.search(r"^exit (\d+) wall ([\d.]+) s$", text, flags=re.M)
    rows = attnperf_rows(text)
    unfit = [test_label(row["test"]) for row in rows if row["verdict"] == "does not fit"]
    other = summary.skipped - len(unfit)
    rest = f"; the other {other} skipped tests are not in the table (flash-attn-3 is not installed there)"
    return [
        f"`pytest --attnperf --attnperf-missing=fail` on the {gpu_of(text) or 'the GPU machine'} "
        f"{f'took {wall.group(2)} s and ' if wall else ''}gave **{summary.text()}** ({ctx.link(ctx.main)}; "
        f"{len(rows)} cases in its table; skipped because they do not fit: {join(unfit)}{rest if other > 0 else ''})."
    ]


def xdist(ctx: Context, text: str) -> list[str]:
    """The suite under pytest-xdist on two GPUs: wall times, verdicts and medians against one worker."""
    gpus = re.findall(r"^GPU \d+: (.+?) \(UUID", text, flags=re.M)
    runs = {
        workers: (float(wall), PytestSummary.parse(rest))
        for workers, wall, rest in re.findall(r"^-n (\d+): exit \d+, wall ([\d.]+) s, (.*)$", text, flags=re.M)
    }
    entries = re.search(r"wrote (\d+) entries", text)
    tables = markdown_tables(text)
    if not tables or len(runs) < 2:
        raise ctx.error("expected the '-n N' lines and the comparison table")
    compare = tables[0]
    ratios = [float(row["median ratio"].lstrip("x")) for row in compare if row["median ratio"].startswith("x")]
    second = list(compare[0].keys())[2]
    elsewhere = sum("cuda:1" in row[second] for row in compare)
    differing = re.search(r"(\d+) verdicts differ", text)
    counts = {summary.text() for _, summary in runs.values()}
    (n_a, (wall_a, _)), (n_b, (wall_b, _)) = sorted(runs.items())[:2]
    outcomes = "both " + next(iter(counts)) if len(counts) == 1 else join(sorted(counts))
    return [
        f"On {len(gpus)} × {join(sorted(set(gpus)))}: the baselines were recorded with `-n 2`"
        f"{f' ({entries.group(1)} entries)' if entries else ''}; the gated suite then took {wall_a:.1f} s with "
        f"`-n {n_a}` and {wall_b:.1f} s with `-n {n_b}` ({outcomes}); "
        f"the two reports hold {len(compare)} cases and {differing.group(1) if differing else '?'} verdicts differ "
        f"({elsewhere} of the {len(compare)} cases ran on cuda:1 under `-n {n_b}`); the `-n {n_b}` medians are "
        f"{span(ratios, fmt_ratio)} of the `-n {n_a}` ones "
        f"({fmt_pct(min(ratios) - 1, sign=True)} to {fmt_pct(max(ratios) - 1, sign=True)})."
    ]


def _bytes_change(value: str) -> str:
    """'+4294967296 B (4 GiB)' -> '+4,294,967,296 B (4 GiB)'; '+0 B (0 B)' -> '+0 B'."""
    match = re.match(r"([+-])(\d+) B(?: \((.+)\))?", value)
    if match is None:
        return value
    sign, number, readable = match.groups()
    text = f"{sign}{int(number):,} B"
    return f"{text} ({readable})" if readable and int(number) else text


def _bytes_cell(value: str) -> str:
    number = re.match(r"[+-]?\d+", value)
    return f"{int(number.group()):,} B" if number else value


def gpu_faults(ctx: Context, text: str) -> list[str]:
    """What an out-of-memory case and a raising backend leave behind (benchmarks/gpu_faults.py)."""
    tries, after, workspace = ctx.tables(ctx.main, 3, "expected the OOM, sdpa-flash and workspace tables")[:3]
    before = re.search(r"allocated before the inputs: (\d+) B; with the 32K inputs: (\d+) B", text)
    freed = re.search(r"allocated once the 32K inputs are freed: (\d+) B \(before them: (\d+) B\)", text)
    checks = re.findall(r"^- (PASS|FAIL): (.+)$", text, flags=re.M)
    alone = parse_ms(after[0]["median"]) or 0.0

    def seen(column: str, cell: Callable[[str], str] = str) -> str:
        return join([cell(value) for value in sorted({row[column] for row in tries})], "or")

    def moved(row: dict[str, str]) -> str:
        median = parse_ms(row["median"].split(" (")[0]) or 0.0
        return f"{fmt_ms_precise(median)} ({fmt_pct(median / alone - 1, 2, sign=True)})"

    results = {f"`{row['result'].split(' Tried')[0].rstrip('.')}`" for row in tries}
    oom = (
        f"{len(tries)} tries, each: {join(sorted(results), 'or')}; allocated after the try "
        f"{seen('allocated after', _bytes_cell)} ({seen('change')}), reserved after "
        f"{seen('reserved after')}, peak during the try {seen('peak during the try')}"
    )
    if before and freed:
        oom += (
            f"; allocated with the 32K inputs {int(before.group(2)):,} B; once they are freed {int(freed.group(1)):,} B "
            f"(before them: {int(freed.group(2)):,} B)"
        )
    script = "`benchmarks/gpu_faults.py`"
    rows = [
        ["out-of-memory in one case (eager at 32K, B=1 H=32 D=128 fp16 causal), five times", oom, f"{script} (a)"],
        [
            "the case after the OOMs (sdpa-flash 4K)",
            f"right after them {moved(after[2])} against {fmt_ms_precise(alone)} measured alone before; "
            f"a second measurement alone: {moved(after[1])}",
            f"{script} (a)",
        ],
        [
            "a backend that allocates 4 GiB of workspace and raises",
            f"allocated {workspace[0]['moment']}: {_bytes_cell(workspace[0]['allocated'])}; "
            + "; ".join(f"{row['moment']}: {_bytes_change(row['change'])}" for row in workspace[1:]),
            f"{script} (b)",
        ],
    ]
    passed = sum(result == "PASS" for result, _ in checks)
    failing = join([name for result, name in checks if result != "PASS"])
    return [
        *table(["fault", "seen", "script"], rows),
        "",
        f"The script's own checks: {passed} of {len(checks)} pass{f' (failing: {failing})' if passed < len(checks) else ''}.",
    ]


def property_gpu(ctx: Context, text: str) -> list[str]:
    """The property test on the GPU: random shapes per backend, and what the failures were."""
    head = re.search(r"^(\d+) random shapes in ([\d.]+) s", text, flags=re.M)
    tables = markdown_tables(text)
    if not tables or head is None:
        raise ctx.error("expected the 'N random shapes in S s' line and the table")
    columns = ("backend", "ran", "agreed", "fp32 false alarms (known, error <= 1e-4)", "failed", "skipped")
    rows = [[row[column] for column in columns] for row in tables[0]]
    failures = re.findall(r"^- ([\w-]+), (.+)$", text.partition("## Failures")[2], flags=re.M)
    notes = []
    for backend in dict.fromkeys(name for name, _ in failures):
        mine = [detail for name, detail in failures if name == backend]
        parts = []
        no_key = [detail for detail in mine if "see no key" in detail]
        if no_key:
            errors = [float(e) for e in re.findall(r"max \|out - ref\| = ([\d.e+-]+)", " ".join(no_key))]
            largest = f", max |out − ref| {span(errors, lambda e: f'{e:.3g}')}" if errors else ""
            parts.append(f"{len(no_key)} with query rows that see no key{largest}")
        raised: dict[str, int] = {}
        for detail in mine:
            match = re.search(r"raised (\w+): (?:\w+: )?(\w+Error)?", detail)
            if match:
                name, error = match.groups()
                key = f"`{name}` (`{error}`)" if error else f"`{name}`"
                raised[key] = raised.get(key, 0) + 1
        parts.extend(f"{count} raised {name}" for name, count in raised.items())
        notes.append(f"{backend} {len(mine)}: {', '.join(parts)}" if parts else f"{backend} {len(mine)}")
    return [
        f"{head.group(1)} random shapes in {head.group(2)} s:",
        "",
        *table(["backend", "ran", "agreed", "fp32 false alarms", "failed", "skipped"], rows, right=range(1, 6)),
        "",
        f"Failures: {'; '.join(notes)}." if notes else "No failures.",
    ]


def first_table(ctx: Context, name: str) -> list[dict[str, str]]:
    return ctx.tables(name)[0]


# ---------------------------------------------------------------- the region kinds

STUDY = {"study.json": "study"}
RECORDED_BASELINES = {"record/nvidia-h200.yaml": "record", "record/nvidia-h100-80gb-hbm3.yaml": "record"}
RECORDED_REPORT = {"record/report-run3.json.gz": "record"}
VALIDATION = {
    "gate-validation.json": "sensitivity",
    "gate-validation-rejudged.json": "rejudge",
    "gate-validation-live.json": "gate_validation_live",
}
# NAME of <!-- results:NAME FOLDER --> -> what it reads (the first file is parsed and handed to its function).
KINDS: dict[str, Kind] = {
    "study-answer": Kind(study_answer, STUDY),
    "study-frontier": Kind(study_frontier, {**STUDY, "ci/ci-gate.log": "ci"}),
    "transformers-table": Kind(transformers_table, {**STUDY, "hf-gate.json": "hf"}),
    "fidelity-summary": Kind(fidelity_summary, {"fidelity.md": "fidelity"}, fidelity_rows),
    "fidelity": Kind(fidelity, {"fidelity.md": "fidelity", **STUDY}, fidelity_rows),
    "ncu": Kind(ncu, {"ncu-fidelity.md": "ncu"}, ncu_rows),
    "modes": Kind(modes, {"modes.log": "modes"}, modes_sections),
    "graph-vs-ncu": Kind(graph_vs_ncu, {"ncu-fidelity.md": "ncu", "modes.log": "modes"}, ncu_rows),
    "false-alarms": Kind(false_alarms, {"false-alarms.txt": "false_alarms"}, false_alarm_runs),
    "cost": Kind(cost, {"false-alarms.txt": "false_alarms"}, false_alarm_runs),
    "sensitivity": Kind(sensitivity, {"sensitivity.md": "sensitivity"}, first_table),
    "gate-simulation": Kind(gate_simulation, {"gate-simulation.json": "simulation"}),
    "gate-validation": Kind(gate_validation, VALIDATION, option="file"),
    "gate-cost": Kind(gate_cost, {f"cost/cost-{run}-{cache}.json": "gate_cost" for run, cache in COST_RUNS}, cost_rows),
    "suite-prefill": Kind(suite_prefill, RECORDED_BASELINES, option="baseline"),
    "suite-frontier": Kind(suite_frontier, RECORDED_BASELINES, option="baseline"),
    "suite-decode": Kind(suite_decode, RECORDED_REPORT, option="report"),
    "suite-record": Kind(suite_record, {"record/record.txt": "record", **RECORDED_REPORT}),
    "gated-runs": Kind(gated_runs, {f"gated/gate-forward-{run}.log": "gated" for run in (1, 2)}),
    "load-tax": Kind(load_tax, {"load-tax.txt": "load_tax"}),
    "foreign-suite": Kind(foreign_suite, {"foreign-suite.md": "foreign_suite"}),
    "memory-repeat": Kind(memory_repeat, {"memory-repeat.md": "memory_repeat"}),
    "hostile-probe": Kind(hostile_probe, {"hostile-probe.md": "hostile"}),
    "hostile-probe-families": Kind(hostile_probe_families, {"hostile-probe.md": "hostile"}),
    "history": Kind(history, {"history/": "cpu_history", "history": "history"}, history_reports),
    "main-job": Kind(main_job, {"main-job.log": "main"}),
    "xdist": Kind(xdist, {"xdist.txt": "xdist"}),
    "gpu-faults": Kind(gpu_faults, {"gpu-faults.md": "faults"}),
    "property-gpu": Kind(property_gpu, {"property-gpu.md": "property"}),
}
# The H200's names of the suite's kinds, from before other cards recorded baselines too.
KINDS.update({f"h200-{name}": KINDS[f"suite-{name}"] for name in ("prefill", "frontier", "decode", "record")})


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
    kind = KINDS.get(region.name)
    if kind is None:
        raise RenderError(f"unknown region kind {region.name!r}; the accepted names: {', '.join(sorted(KINDS))}")
    words = region.args.split()
    positional = [word for word in words if "=" not in word]
    if len(positional) != 1:
        raise RenderError(f"results:{region.name} needs exactly one result folder (e.g. h100), got {region.args!r}")
    options = dict(word.split("=", 1) for word in words if "=" in word)
    options = {key: value.replace("_", " ") if key == "config" else value for key, value in options.items()}
    main = options.get(kind.option, next(iter(kind.files))) if kind.option else next(iter(kind.files))
    ctx = Context(root=root, doc=doc, folder=positional[0], options=options, stages=kind.files, main=main)
    if not (root / RESULTS / ctx.folder).is_dir():
        raise RenderError(f"no result folder {RESULTS / ctx.folder}")
    text = "\n".join([*kind.render(ctx, kind.parse(ctx, main)), "", ctx.source_line()]).strip("\n")
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
