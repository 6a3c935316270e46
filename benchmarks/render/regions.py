"""The generated regions of a Markdown file: finding them, rendering each from its kind, rewriting the file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from render.kinds import KINDS, command
from render.source import RESULTS, Context, RenderError

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
    first = next(iter(kind.files))
    main = options.get(kind.option, first) if kind.option else first  # e.g. file=gate-validation-live.json
    stage = options.get("stage")  # stage=: a region whose files another stage wrote
    commands = {name: command(stage or writer) for name, writer in kind.files.items()}
    if stage:
        commands.setdefault(main, command(stage))
    ctx = Context(root=root, doc=doc, folder=positional[0], options=options, commands=commands, main=main)
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
