"""Reading result files: what a region kind gets (Context), a row of the table of kinds (Kind), the parsers
of what the tools print (Markdown tables, pytest summaries, the plugin's terminal table)."""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from render.format import join

RESULTS = Path("docs/results")
SCRIPT = "python benchmarks/render_results.py"


class RenderError(Exception):
    """A region cannot be rendered: a missing or malformed source file, a bad region header."""


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


@dataclass
class Context:
    """What a region kind gets: the repository, the Markdown file it writes into, its result folder."""

    root: Path
    doc: Path  # relative to root
    folder: str  # under docs/results/
    options: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)  # the kind's files -> the command that writes each
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
        """A result file's text, remembered as a source of the region."""
        path = self.root / self.path(name)
        if not path.is_file():
            raise RenderError(f"{self.path(name).as_posix()} does not exist")
        if name not in self.used:
            self.used.append(name)
        if name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")

    def load(self, name: str) -> Any:
        """A result file parsed by its suffix (.json, .json.gz, .yaml); any other file's text."""
        text = self.read(name)
        try:
            if name.endswith((".json", ".json.gz")):
                return json.loads(text)
            if name.endswith(".yaml"):
                return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except json.JSONDecodeError as error:
            raise self.error(f"not valid JSON ({error})", name) from None
        except yaml.YAMLError as error:
            raise self.error(f"not valid YAML ({error})", name) from None
        return text

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
        """The command line that made a result file."""
        if name not in self.commands:
            raise RenderError(
                f"{name} is not among the files of its row of KINDS: add it with the stage that writes it"
            )
        return self.commands[name]

    def source_line(self) -> str:
        """The closing line of a block region: each file it read and the command that made it."""
        sources = [f"{self.link(name)} (`{self.command(name)}`)" for name in self.used]
        return f"<sub>Generated by `{SCRIPT}` from {join(sources)}.</sub>"


@dataclass(frozen=True)
class Kind:
    """A row of KINDS: which files a region kind reads, how it parses the first, how it writes the region."""

    render: Callable[[Context, Any], list[str]]  # (context, the parsed data) -> the region's lines
    files: dict[str, str]  # each file it may read -> the gpu_session.sh stage (or kinds.STAGE_COMMANDS key) writing it
    parse: Callable[[Context, str], Any] = Context.load
    option: str | None = None  # a region option naming another file of the folder to parse instead of the first


def first_table(ctx: Context, name: str) -> list[dict[str, str]]:
    """A parser for KINDS: the rows of a result file's first Markdown table."""
    return ctx.tables(name)[0]
