"""Typed-in GPU figures: anything outside a generated region that looks like a measurement."""

from __future__ import annotations

import re
from pathlib import Path

from render.regions import Problem, regions

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
