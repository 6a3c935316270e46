"""Is this file safe to parse? A baseline file is a regular file, UTF-8, and within caps on its size and its
number of YAML items, checked before libyaml sees it, so time and memory stay bounded on any input.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .baseline_schema import BaselineFileError

# libyaml composes the whole document before anything is checked, at ~50 bytes of memory per byte of YAML, so
# the file's size and its number of items (':', ',', '-', '?') are capped, derived from the plugin's own entries:
# the 124 entries `attnperf update` wrote into baselines/nvidia-h200.yaml hold 115 items and 1,714 bytes each on
# average (the largest, a varlen case with its kernel list, 576 and 5,864). A file may hold twice what 20,000 such
# entries do (a large suite: backends x lengths x workloads x dtypes), so a hostile file costs at most what a
# large legitimate one does.
ENTRY_ITEMS, ENTRY_BYTES = 115, 1714
LARGE_SUITE_ENTRIES = 20_000
MAX_ITEMS = 2 * LARGE_SUITE_ENTRIES * ENTRY_ITEMS
MAX_FILE_BYTES = 2 * LARGE_SUITE_ENTRIES * ENTRY_BYTES
# A flood of keys in one mapping (a million duplicates) costs libyaml a whole composition before the duplicate is
# seen: lines are counted first (~1 % of a load). A baseline file has four keys at the top and, one level in,
# its entries' test ids beside the device's and environment's few keys.
MAX_ENTRIES = MAX_ITEMS // ENTRY_ITEMS
MAX_TOP_LEVEL_LINES = 64
_TOP_LEVEL_LINE = re.compile(r"^[^\s#]", re.MULTILINE)
_SECOND_LEVEL_LINE = re.compile(r"^  [^\s#]", re.MULTILINE)


def check_item_counts(text: str, path: Path) -> None:
    """Refuse a text with more YAML items, top-level lines or entry keys than a baseline file may hold."""
    items = sum(text.count(mark) for mark in ":,-?")
    if items > MAX_ITEMS:
        raise BaselineFileError(
            path,
            f"holds {items:,} YAML items, more than the {MAX_ITEMS:,} a baseline file may (about "
            f"{MAX_ITEMS // ENTRY_ITEMS:,} entries as the plugin writes them): not a baseline file, or a suite to "
            "split over several --attnperf-baselines folders",
        )
    top_level = len(_TOP_LEVEL_LINE.findall(text))
    if top_level > MAX_TOP_LEVEL_LINES:
        raise BaselineFileError(
            path,
            f"has {top_level:,} lines at the top level; a baseline file has four keys there (schema_version, device, "
            "environment, entries)",
        )
    second_level = len(_SECOND_LEVEL_LINE.findall(text))
    if second_level > MAX_ENTRIES + 1000:
        raise BaselineFileError(
            path,
            f"has {second_level:,} keys one level in, more than the {MAX_ENTRIES:,} entries a baseline file may hold",
        )


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _not_regular(path: Path, mode: int) -> BaselineFileError | None:
    """A baseline is a regular file (or a link to one): reading a pipe or a device would wait forever."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    return BaselineFileError(path, f"is {kind}, not a regular file: a baseline file must be a plain YAML file")


def read_baseline_text(path: Path) -> str | None:
    """The file's text, None if it does not exist; a non-UTF-8 or oversized file is a BaselineFileError."""
    try:
        refused = _not_regular(path, os.stat(path).st_mode)  # before opening: opening a FIFO blocks
        if refused is not None:
            raise refused
        # Non-blocking, and checked again on the open descriptor: the name may be swapped for a pipe in between.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(descriptor, "rb") as handle:
            refused = _not_regular(path, os.fstat(descriptor).st_mode)
            if refused is not None:
                raise refused
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BaselineFileError(path, f"cannot be read: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BaselineFileError(
            path,
            f"is larger than {MAX_FILE_BYTES:,} bytes (about {MAX_FILE_BYTES // ENTRY_BYTES:,} entries as the plugin "
            "writes them): not a baseline file, or a suite to split over several --attnperf-baselines folders",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BaselineFileError(
            path, f"is not UTF-8 text (byte {error.start}: {data[error.start : error.start + 1]!r})", line=line
        ) from None
