"""Regenerate every GPU figure quoted in README.md and docs/*.md from the committed result files.

    python benchmarks/render_results.py           # rewrite the regions in place
    python benchmarks/render_results.py --check   # exit 1 on a stale region or a typed-in GPU figure

The tool is the package benchmarks/render/ (its __init__ says how a region is written, kinds.py lists the kinds).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run by its path (python benchmarks/render_results.py, or loaded by a test): the package is beside it.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from render.cli import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
