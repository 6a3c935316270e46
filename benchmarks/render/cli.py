"""The command line: rewrite every region of README.md and docs/*.md, or check them (--check)."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Sequence
from pathlib import Path

import render
from render.figures import typed_in_figures
from render.regions import regions, rewrite
from render.source import SCRIPT

ROOT = Path(__file__).resolve().parents[2]


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
    parser = argparse.ArgumentParser(description=(render.__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a region is stale or a GPU figure is typed in"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this script's repository)")
    args = parser.parse_args(argv)
    return run(args.root.resolve(), args.check)
