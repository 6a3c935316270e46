"""Per-GPU-model YAML baselines: schema, validated load, merge, locked atomic write.

One file per GPU model, ``<dir>/<gpu-slug>.yaml``. A bad file raises :class:`BaselineFileError`
naming the file, the line and key, and what was expected; it is never rewritten on error.
Writes go to a temporary file in the same folder, are flushed to disk and renamed over the
old file, under an exclusive lock, so a killed update leaves the old file or the new one and
two concurrent updates lose no entries.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..spec.shapes import MODES

SCHEMA_VERSION = 1
HEADER = (
    "# pytest-attnperf baselines for one GPU model. Written by `pytest --attnperf --attnperf-update`\n"
    "# (or `attnperf update`); review changes like code. Times in milliseconds, memory in bytes.\n"
)
LATENCY_KEYS = ("median", "iqr", "mean", "stdev", "min", "max", "samples", "quantiles")
QUANTILE_COUNT = 25  # the sample distribution the noise-aware gate compares with


class BaselineFileError(ValueError):
    """A baseline file that cannot be used as it is."""

    def __init__(self, path: Path, problem: str, *, line: int | None = None, key: str | None = None) -> None:
        location = str(path) + (f":{line}" if line else "")
        where = f" at {key!r}" if key else ""
        super().__init__(f"baseline file {location}{where}: {problem}")
        self.path, self.line, self.key, self.problem = path, line, key, problem


@dataclass(frozen=True)
class BaselineEntry:
    """What one test measured when its baseline was recorded."""

    backend: str | None
    shape: Mapping[str, Any] | None
    mode: str
    latency_ms: Mapping[str, Any] | None
    peak_bytes: int | None
    fits: bool
    recorded_at: str
    environment: Mapping[str, str | None]

    def as_yaml(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "mode": self.mode,
            "shape": dict(self.shape) if self.shape is not None else None,
            "fits": self.fits,
            "latency_ms": {key: self.latency_ms[key] for key in LATENCY_KEYS if key in self.latency_ms}
            if self.latency_ms
            else None,
            "peak_bytes": self.peak_bytes,
            "recorded_at": self.recorded_at,
            "environment": dict(self.environment),
        }

    @property
    def median_ms(self) -> float | None:
        return float(self.latency_ms["median"]) if self.latency_ms else None

    @property
    def quantiles_ms(self) -> tuple[float, ...]:
        return tuple(self.latency_ms.get("quantiles", ())) if self.latency_ms else ()


@dataclass
class BaselineFile:
    """The parsed contents of one GPU model's baseline file."""

    path: Path
    device: dict[str, Any]
    environment: dict[str, Any]
    entries: dict[str, BaselineEntry] = field(default_factory=dict)

    def to_text(self) -> str:
        document = {
            "schema_version": SCHEMA_VERSION,
            "device": self.device,
            "environment": self.environment,
            "entries": {test_id: self.entries[test_id].as_yaml() for test_id in sorted(self.entries)},
        }
        return HEADER + yaml.dump(document, Dumper=_FlowListDumper, sort_keys=False, width=200, allow_unicode=True)


class _FlowListDumper(yaml.SafeDumper):
    """Lists on one line ([9, 0], the 25 quantiles): one changed entry is one changed line in a diff."""


_FlowListDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def baseline_path(directory: Path, slug: str) -> Path:
    """``directory/<slug>.yaml``, refusing any slug that would leave the directory.

    The name's characters decide, not where links lead: a baseline file may be a symbolic link (one file
    shared by several folders), read and written through; a loop of links fails to read, naming the file.
    """
    if not slug or slug in (".", "..") or any(char in slug for char in "/\\\0") or slug.startswith("."):
        raise ValueError(f"refusing baseline name {slug!r}: it must be a plain file name")
    return directory / f"{slug}.yaml"


# ---------------------------------------------------------------- reading and validation


def _line_of(root: yaml.Node | None, keys: tuple[str, ...]) -> int | None:
    """1-based line of the node at ``keys`` in the composed YAML tree (for error messages)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == key:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            break
    return line


class _Validator:
    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.path, self.root = path, root

    def fail(self, keys: tuple[str, ...], problem: str) -> BaselineFileError:
        return BaselineFileError(self.path, problem, line=_line_of(self.root, keys), key=".".join(keys) or None)

    def mapping(self, value: Any, keys: tuple[str, ...], what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(keys, f"expected {what} (a mapping), found {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(keys, f"keys must be strings, found {key!r}")
        return value

    def known_keys(
        self, value: dict[str, Any], keys: tuple[str, ...], allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail((*keys, key), f"unknown key {key!r}; expected only: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(keys, f"missing key {key!r} (required: {', '.join(required)})")

    def number(self, value: Any, keys: tuple[str, ...], *, integer: bool = False, positive: bool = False) -> float:
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise self.fail(keys, f"expected {kind}, found {value!r}")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise self.fail(
                keys,
                f"expected a finite {'positive' if positive else 'non-negative'} {kind[2:].strip()}, found {value!r}",
            )
        return value

    def text(self, value: Any, keys: tuple[str, ...], *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(keys, f"expected a string, found {value!r}")
        return value


def _duplicate_key(node: yaml.Node | None) -> yaml.ScalarNode | None:
    """The first key that appears twice in one mapping of the composed tree (PyYAML keeps the last silently)."""
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    return key_node
                seen.add(key_node.value)
            children.append(value_node)
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    for child in children:
        found = _duplicate_key(child)
        if found is not None:
            return found
    return None


def parse_baseline_text(text: str, path: Path) -> BaselineFile:
    """Validate ``text`` as a baseline file; raise BaselineFileError naming line, key and expectation."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise BaselineFileError(path, f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    check = _Validator(path, root)
    duplicate = _duplicate_key(root)
    if duplicate is not None:
        raise BaselineFileError(
            path,
            f"duplicate key {duplicate.value!r}: each key may appear once (a merge that kept both sides?)",
            line=duplicate.start_mark.line + 1,
        )
    if document is None:
        raise BaselineFileError(
            path, "the file is empty; expected a mapping with schema_version, device, environment, entries"
        )
    top = check.mapping(document, (), "a baseline document")
    version = top.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise check.fail(
            ("schema_version",),
            f"schema version {version} was written by a newer pytest-attnperf; "
            f"this one reads version {SCHEMA_VERSION}: upgrade pytest-attnperf",
        )
    if not isinstance(version, int) or isinstance(version, bool) or version != SCHEMA_VERSION:
        raise check.fail(("schema_version",), f"expected schema_version: {SCHEMA_VERSION}, found {version!r}")
    check.known_keys(
        top, (), ("schema_version", "device", "environment", "entries"), ("schema_version", "device", "entries")
    )
    device = check.mapping(top["device"], ("device",), "the device description")
    check.text(device.get("name"), ("device", "name"))
    environment = check.mapping(top.get("environment") or {}, ("environment",), "the recording environment")
    entries_raw = check.mapping(top["entries"] if top["entries"] is not None else {}, ("entries",), "the entries")
    entries = {test_id: _parse_entry(check, test_id, raw) for test_id, raw in entries_raw.items()}
    return BaselineFile(path=path, device=device, environment=environment, entries=entries)


def _parse_entry(check: _Validator, test_id: str, raw: Any) -> BaselineEntry:
    keys = ("entries", test_id)
    entry = check.mapping(raw, keys, f"the entry of {test_id}")
    allowed = ("backend", "mode", "shape", "fits", "latency_ms", "peak_bytes", "recorded_at", "environment")
    check.known_keys(entry, keys, allowed, ("mode", "fits", "latency_ms", "peak_bytes"))
    mode = entry["mode"]
    if mode not in MODES:
        raise check.fail((*keys, "mode"), f"expected one of {', '.join(MODES)}, found {mode!r}")
    if not isinstance(entry["fits"], bool):
        raise check.fail((*keys, "fits"), f"expected true or false, found {entry['fits']!r}")
    latency: dict[str, Any] | None = None
    if entry["latency_ms"] is not None:
        latency_raw = check.mapping(entry["latency_ms"], (*keys, "latency_ms"), "latency statistics")
        check.known_keys(latency_raw, (*keys, "latency_ms"), LATENCY_KEYS, ("median",))
        latency = {
            key: check.number(
                value, (*keys, "latency_ms", key), integer=key == "samples", positive=key in ("median", "samples")
            )
            for key, value in latency_raw.items()
            if key != "quantiles"
        }
        if "quantiles" in latency_raw:
            quantiles = latency_raw["quantiles"]
            if not isinstance(quantiles, list) or not quantiles:
                raise check.fail((*keys, "latency_ms", "quantiles"), f"expected a list of numbers, found {quantiles!r}")
            latency["quantiles"] = [
                check.number(value, (*keys, "latency_ms", "quantiles"), positive=True) for value in quantiles
            ]
    peak = entry["peak_bytes"]
    if peak is not None:
        peak = int(check.number(peak, (*keys, "peak_bytes"), integer=True))
    shape = entry.get("shape")
    if shape is not None:
        shape = check.mapping(shape, (*keys, "shape"), "the attention shape")
    environment = check.mapping(entry.get("environment") or {}, (*keys, "environment"), "the recording environment")
    return BaselineEntry(
        backend=check.text(entry.get("backend"), (*keys, "backend"), optional=True),
        shape=shape,
        mode=mode,
        latency_ms=latency,
        peak_bytes=peak,
        fits=entry["fits"],
        recorded_at=check.text(entry.get("recorded_at", ""), (*keys, "recorded_at")) or "",
        environment=environment,
    )


def read_baseline_text(path: Path) -> str | None:
    """The file's text, None if it does not exist; a non-UTF-8 file is a BaselineFileError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BaselineFileError(path, f"cannot be read: {error.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BaselineFileError(
            path, f"is not UTF-8 text (byte {error.start}: {data[error.start : error.start + 1]!r})", line=line
        ) from None


def load_baseline(path: Path) -> BaselineFile | None:
    """The validated baseline file at ``path``, or None when there is none."""
    text = read_baseline_text(path)
    return None if text is None else parse_baseline_text(text, path)


# ---------------------------------------------------------------- writing


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path``'s sidecar lock file, across processes (xdist workers, CI jobs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; atomic rename still protects the file
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file next to ``path``, fsync it, rename it over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(temp_name, path.stat().st_mode & 0o777)
        else:
            os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@dataclass(frozen=True)
class Change:
    """One entry's old and new value, for the 'old -> new' report."""

    test_id: str
    old: BaselineEntry | None
    new: BaselineEntry


def merge_entries(
    path: Path,
    device: Mapping[str, Any],
    environment: Mapping[str, Any],
    new_entries: Mapping[str, BaselineEntry],
) -> list[Change]:
    """Merge ``new_entries`` into the file at ``path`` (keeping all others), atomically, under a lock."""
    with locked(path):
        current = load_baseline(path)  # a bad file raises here, before anything is written
        if current is None:
            current = BaselineFile(path=path, device=dict(device), environment={})
        changes = [
            Change(test_id, current.entries.get(test_id), entry) for test_id, entry in sorted(new_entries.items())
        ]
        current.entries.update(new_entries)
        current.device = dict(device)
        current.environment = dict(environment)
        write_atomic(path, current.to_text())
    return changes


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def round_significant(value: float, digits: int = 4) -> float:
    """Keep baselines diff-friendly: 4 significant digits are far below run-to-run noise."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))
