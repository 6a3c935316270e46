"""Reading a baseline file: one libyaml pass, validated, every error naming file, line and key.

The loader is PyYAML's safe loader (libyaml's C parser when present) with three additions made
while it constructs, so the document is parsed once: it remembers the line of every mapping key
(for error messages), refuses a key given twice in one mapping (PyYAML keeps the last silently)
and refuses aliases (``*name``): a baseline file never needs them, and a walk over a document
whose aliases nest ("billion laughs") would take exponential time. libyaml refuses nesting
deeper than 1,000 levels, and the file's size and number of items are capped before it is parsed
(:mod:`.baseline_limits`), so time and memory stay linear in the input and bounded. Statistics
that contradict each other are refused: none can silence the gate.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..spec.shapes import MODES
from .baseline_limits import check_item_counts, read_baseline_text
from .baseline_schema import (
    ENTRY_KEYS,
    LATENCY_KEYS,
    READABLE_VERSIONS,
    REFERENCE_KEYS,
    SCHEMA_VERSION,
    BaselineEntry,
    BaselineFile,
    BaselineFileError,
)
from .normalise import BETA_MAX
from .statistics import geometric_mean, log_spread

V1_LATENCY_KEYS = ("median", "iqr", "mean", "stdev", "min", "max", "samples", "quantiles")
V1_ENTRY_KEYS = ("backend", "mode", "shape", "fits", "latency_ms", "peak_bytes", "recorded_at", "environment")
CENTRE_TOLERANCE = 2e-3  # the stored centre and the geometric mean of the stored run medians (4 digits each)

_LARGEST_FLOAT = int(sys.float_info.max)  # a bigger YAML integer cannot become a float


_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """Safe loader that records key lines and refuses duplicate keys, aliases, merge keys and unreadable numbers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_lines: dict[int, dict[Any, int]] = {}  # id(mapping) -> key -> 1-based line
        self.root_line: int | None = None
        self.pending_lines: dict[yaml.Node, dict[Any, int]] = {}

    def construct_document(self, node: yaml.Node) -> Any:
        self.root_line = node.start_mark.line + 1
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in a baseline file", node.start_mark
            )
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # merging copies key nodes before anything is constructed: a chain of merges grows exponentially
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not allowed in a baseline file", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in mapping
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"unhashable key {key!r}", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r}: each key may appear once (a merge that kept both sides?)",
                    key_node.start_mark,
                )
            lines[key] = key_node.start_mark.line + 1
            mapping[key] = self.construct_object(value_node, deep=deep)
        self.pending_lines[node] = lines
        return mapping

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        self.key_lines[id(data)] = self.pending_lines.pop(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError as error:  # e.g. more digits than Python converts
            raise yaml.constructor.ConstructorError(
                None, None, f"unreadable number: {error}", node.start_mark
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _load(text: str, path: Path) -> tuple[Any, _Loader]:
    check_item_counts(text, path)
    loader = _Loader(text)
    try:
        document = loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise BaselineFileError(path, f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    except RecursionError:  # the pure-Python parser, without libyaml's depth limit
        raise BaselineFileError(path, "not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return document, loader


class _Validator:
    def __init__(self, path: Path, document: Any, loader: _Loader | None) -> None:
        self.path, self.document, self.loader = path, document, loader

    def line_of(self, keys: tuple[str, ...]) -> int | None:
        """Line of the deepest key of ``keys`` present in the document (the root's line for none)."""
        if self.loader is None:
            return None
        line, node = self.loader.root_line, self.document
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                break
            line = self.loader.key_lines.get(id(node), {}).get(key, line)
            node = node[key]
        return line

    def fail(self, keys: tuple[str, ...], problem: str) -> BaselineFileError:
        return BaselineFileError(self.path, problem, line=self.line_of(keys), key=".".join(keys) or None)

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
        if isinstance(value, int) and abs(value) > _LARGEST_FLOAT:  # math.isfinite would raise OverflowError
            raise self.fail(
                keys, f"expected {kind} a float can hold, found an integer of {len(str(abs(value)))} digits"
            )
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise self.fail(
                keys,
                f"expected a finite {'positive' if positive else 'non-negative'} {kind[2:].strip()}, found {value!r}",
            )
        return value

    def optional_number(self, value: Any, keys: tuple[str, ...], *, positive: bool = False) -> float | None:
        return None if value is None else float(self.number(value, keys, positive=positive))

    def text(self, value: Any, keys: tuple[str, ...], *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(keys, f"expected a string, found {value!r}")
        return value

    def numbers(self, value: Any, keys: tuple[str, ...], *, positive: bool = True) -> list[float]:
        if not isinstance(value, list):
            raise self.fail(keys, f"expected a list of numbers, found {value!r}")
        return [float(self.number(item, keys, positive=positive)) for item in value]

    def texts(self, value: Any, keys: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(keys, f"expected a list of strings, found {value!r}")
        return tuple(value)


def parse_baseline_text(text: str, path: Path) -> BaselineFile:
    """Validate ``text`` as a baseline file; raise BaselineFileError naming line, key and expectation."""
    document, loader = _load(text, path)
    check = _Validator(path, document, loader)
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
            f"this one reads versions {', '.join(map(str, READABLE_VERSIONS))}: upgrade pytest-attnperf",
        )
    if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise check.fail(
            ("schema_version",),
            f"expected schema_version: {' or '.join(map(str, READABLE_VERSIONS))}, found {version!r}",
        )
    check.known_keys(
        top, (), ("schema_version", "device", "environment", "entries"), ("schema_version", "device", "entries")
    )
    device = check.mapping(top["device"], ("device",), "the device description")
    check.text(device.get("name"), ("device", "name"))
    environment = check.mapping(top.get("environment") or {}, ("environment",), "the recording environment")
    entries_raw = check.mapping(top["entries"] if top["entries"] is not None else {}, ("entries",), "the entries")
    parse = _parse_v1_entry if version == 1 else _parse_entry
    entries = {test_id: parse(check, test_id, raw) for test_id, raw in entries_raw.items()}
    return BaselineFile(path=path, device=device, environment=environment, entries=entries, version=version)


def _latency(check: _Validator, raw: Any, keys: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any] | None:
    if raw is None:
        return None
    latency_raw = check.mapping(raw, keys, "latency statistics")
    check.known_keys(latency_raw, keys, allowed, ("median",))
    return {
        key: check.number(
            value, (*keys, key), integer=key == "samples", positive=key in ("median", "raw_median", "samples")
        )
        for key, value in latency_raw.items()
        if key != "quantiles"
    }


def _common(check: _Validator, entry: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    mode = entry["mode"]
    if mode not in MODES:
        raise check.fail((*keys, "mode"), f"expected one of {', '.join(MODES)}, found {mode!r}")
    if not isinstance(entry["fits"], bool):
        raise check.fail((*keys, "fits"), f"expected true or false, found {entry['fits']!r}")
    peak = entry["peak_bytes"]
    if peak is not None:
        peak = int(check.number(peak, (*keys, "peak_bytes"), integer=True))
    shape = entry.get("shape")
    if shape is not None:
        shape = check.mapping(shape, (*keys, "shape"), "the attention shape")
    environment = check.mapping(entry.get("environment") or {}, (*keys, "environment"), "the recording environment")
    return {
        "backend": check.text(entry.get("backend"), (*keys, "backend"), optional=True),
        "shape": shape,
        "mode": mode,
        "peak_bytes": peak,
        "fits": entry["fits"],
        "recorded_at": check.text(entry.get("recorded_at", ""), (*keys, "recorded_at")) or "",
        "environment": environment,
    }


def _parse_v1_entry(check: _Validator, test_id: str, raw: Any) -> BaselineEntry:
    """A version-1 entry: one run, no clock; its quantiles are checked and then dropped (no longer used)."""
    keys = ("entries", test_id)
    entry = check.mapping(raw, keys, f"the entry of {test_id}")
    check.known_keys(entry, keys, V1_ENTRY_KEYS, ("mode", "fits", "latency_ms", "peak_bytes"))
    latency = _latency(check, entry["latency_ms"], (*keys, "latency_ms"), V1_LATENCY_KEYS)
    if latency is not None and "quantiles" in entry["latency_ms"]:
        quantiles = entry["latency_ms"]["quantiles"]
        if not isinstance(quantiles, list) or not quantiles:
            raise check.fail((*keys, "latency_ms", "quantiles"), f"expected a list of numbers, found {quantiles!r}")
        check.numbers(quantiles, (*keys, "latency_ms", "quantiles"))
    medians = (float(latency["median"]),) if latency else ()
    return BaselineEntry(latency_ms=latency, runs=1, run_medians_ms=medians, **_common(check, entry, keys))


def _parse_entry(check: _Validator, test_id: str, raw: Any) -> BaselineEntry:
    keys = ("entries", test_id)
    entry = check.mapping(raw, keys, f"the entry of {test_id}")
    check.known_keys(entry, keys, ENTRY_KEYS, ("mode", "fits", "latency_ms", "peak_bytes"))
    latency = _latency(check, entry["latency_ms"], (*keys, "latency_ms"), LATENCY_KEYS)
    runs = int(check.number(entry.get("runs", 1), (*keys, "runs"), integer=True, positive=True))
    medians = tuple(check.numbers(entry.get("run_medians_ms") or [], (*keys, "run_medians_ms")))
    spread = check.optional_number(entry.get("spread"), (*keys, "spread"))
    if latency is not None:
        _consistent(check, keys, latency, runs, medians, spread)
    beta = check.optional_number(entry.get("beta"), (*keys, "beta"))
    beta_ci = entry.get("beta_ci")
    if beta_ci is not None:
        if not isinstance(beta_ci, list) or len(beta_ci) != 2 or not all(_is_number(v) for v in beta_ci):
            raise check.fail((*keys, "beta_ci"), f"expected [low, high], found {beta_ci!r}")
        if not beta_ci[0] <= beta_ci[1]:
            raise check.fail((*keys, "beta_ci"), f"expected low <= high, found {beta_ci!r}")
    if beta is not None and beta > 1 and (beta > BETA_MAX or beta_ci is None or not beta_ci[0] > 1):
        raise check.fail(
            (*keys, "beta"),
            f"expected a number from 0 to 1 (up to {BETA_MAX:g} only with a beta_ci whose low end is over 1), "
            f"found {beta!r} with beta_ci {beta_ci!r}",
        )
    reference = entry.get("reference")
    if reference is not None:
        reference = check.mapping(reference, (*keys, "reference"), "the machine reference")
        check.known_keys(reference, (*keys, "reference"), REFERENCE_KEYS, ("ms", "clock_mhz"))
        for name in REFERENCE_KEYS:
            check.optional_number(reference.get(name), (*keys, "reference", name), positive=True)
    limit = check.optional_number(entry.get("detection_limit"), (*keys, "detection_limit"), positive=True)
    fingerprint = entry.get("fingerprint")
    if fingerprint is not None:
        fingerprint = check.mapping(fingerprint, (*keys, "fingerprint"), "a dispatch fingerprint")
        check.known_keys(
            fingerprint, (*keys, "fingerprint"), ("families", "variant", "kernels"), ("families", "variant")
        )
        check.texts(fingerprint["families"], (*keys, "fingerprint", "families"))
        check.text(fingerprint["variant"], (*keys, "fingerprint", "variant"))
    timing = entry.get("timing")
    if timing is not None:
        timing = check.mapping(timing, (*keys, "timing"), "the timing settings")
    return BaselineEntry(
        latency_ms=latency,
        runs=runs,
        run_medians_ms=medians,
        spread=spread,
        clock_mhz=check.optional_number(entry.get("clock_mhz"), (*keys, "clock_mhz"), positive=True),
        beta=beta,
        beta_ci=(float(beta_ci[0]), float(beta_ci[1])) if beta_ci is not None else None,
        energy_mj=check.optional_number(entry.get("energy_mj"), (*keys, "energy_mj"), positive=True),
        power_w=check.optional_number(entry.get("power_w"), (*keys, "power_w"), positive=True),
        power_spread=check.optional_number(entry.get("power_spread"), (*keys, "power_spread")),
        reference=reference,
        fingerprint=fingerprint,
        detection_limit=limit,
        gpu_uuids=check.texts(entry.get("gpu_uuids") or [], (*keys, "gpu_uuids")),
        plugin_version=check.text(entry.get("plugin_version"), (*keys, "plugin_version"), optional=True),
        timing=timing,
        **_common(check, entry, keys),
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= _LARGEST_FLOAT and math.isfinite(value)


def _consistent(
    check: _Validator,
    keys: tuple[str, ...],
    latency: Mapping[str, Any],
    runs: int,
    medians: tuple[float, ...],
    spread: float | None,
) -> None:
    """The centre, the run medians and the spread must tell one story: a contradiction is refused, so a
    hand edit or a bad merge cannot switch a check off (or on)."""
    if len(medians) != runs:
        raise check.fail((*keys, "run_medians_ms"), f"expected {runs} run medians (runs: {runs}), found {len(medians)}")
    centre = geometric_mean(list(medians))
    if abs(latency["median"] / centre - 1) > CENTRE_TOLERANCE:
        raise check.fail(
            (*keys, "latency_ms", "median"),
            f"the median {latency['median']!r} contradicts the run medians {list(medians)} (their geometric mean is "
            f"{centre:.4g}): fix or re-record the entry",
        )
    expected = log_spread(list(medians))
    if (expected is None) != (spread is None):
        raise check.fail(
            (*keys, "spread"),
            f"expected {'null (one run)' if expected is None else f'{expected:.3g}'} from the run medians, found {spread!r}",
        )
    if expected is not None and spread is not None and abs(spread - expected) > 2e-4 + 0.02 * expected:
        raise check.fail(
            (*keys, "spread"),
            f"the spread {spread!r} contradicts the run medians {list(medians)} (their log-sd is {expected:.3g})",
        )


def load_baseline(path: Path) -> BaselineFile | None:
    """The validated baseline file at ``path``, or None when there is none."""
    text = read_baseline_text(path)
    return None if text is None else parse_baseline_text(text, path)


def entry_problem(test_id: str, entry: BaselineEntry, path: Path) -> str | None:
    """Why the reader would refuse ``entry`` once written (None: it reads back), checked before writing."""
    try:
        _parse_entry(_Validator(path, None, None), test_id, entry.as_yaml())
    except BaselineFileError as error:
        where = f"{error.key.removeprefix(f'entries.{test_id}.')}: " if error.key else ""
        return where + error.problem
    return None
