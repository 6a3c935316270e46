"""A JSON report (``--attnperf-json``) read back from disk, checked enough to be used (no torch import).

The report is the one record every later step reads: the dashboard exports, ``attnperf compare``,
``attnperf merge`` and ``attnperf history``. A file that is not such a report is refused by name,
with what was expected, never half-read.
"""

from __future__ import annotations

import datetime
import gzip
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gate.results import CaseRecord, all_finite

SCHEMA_PREFIX = "attnperf-results/"
SCHEMA_VERSION = 2  # the newest report layout these readers know (session/report.py writes it)


class ReportError(ValueError):
    """A file is not a usable attnperf JSON report; the message names the file and why."""


class NotAReportError(ReportError):
    """A file that is no attnperf report at all (other JSON, not JSON): a folder's reader may skip it, not a
    damaged report."""


@dataclass(frozen=True)
class StoredReport:
    """One report: where it came from, when it was written, and its cases (as the JSON has them)."""

    path: Path
    document: dict[str, Any]

    @property
    def cases(self) -> list[dict[str, Any]]:
        return list(self.document["results"])

    @property
    def created_at(self) -> datetime.datetime | None:
        return parse_timestamp(self.document.get("created_at"))

    @property
    def commit(self) -> str | None:
        commit = self.document.get("commit")
        return str(commit) if commit else None

    @property
    def device_name(self) -> str:
        return str((self.document.get("device") or {}).get("name") or "?")


def parse_timestamp(text: object) -> datetime.datetime | None:
    """An ISO 8601 time as the report writes it ('2026-12-07T09:40:00Z'); None when absent or not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def read_text(path: Path) -> str:
    """A report's text, gzipped (``.gz``, as committed results are) or not."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def is_report(document: object) -> bool:
    return isinstance(document, dict) and str(document.get("schema", "")).startswith(SCHEMA_PREFIX)


def load_report(path: Path) -> StoredReport:
    """Read one report; ReportError names the file when it cannot be read or is not a report."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a folder; give a JSON report written by --attnperf-json") from None
    except UnicodeDecodeError as error:
        raise NotAReportError(
            f"{path}: not text ({error.reason}); expected a report written by --attnperf-json"
        ) from None
    except (OSError, EOFError) as error:
        raise ReportError(f"{path}: cannot read it: {getattr(error, 'strerror', None) or error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise NotAReportError(
            f"{path}: not JSON ({error.msg} at line {error.lineno}); expected a report written by --attnperf-json"
        ) from None
    return report_from_document(document, path)


def report_from_document(document: object, path: Path) -> StoredReport:
    if not is_report(document):
        found = (
            f"schema {document.get('schema')!r}" if isinstance(document, dict) else f"a JSON {type(document).__name__}"
        )
        raise NotAReportError(
            f"{path}: not an attnperf JSON report ({found}; expected an object with schema '{SCHEMA_PREFIX}N', as "
            "--attnperf-json writes)"
        )
    assert isinstance(document, dict)
    version = str(document["schema"]).removeprefix(SCHEMA_PREFIX)
    if not version.isdigit() or not 1 <= int(version) <= SCHEMA_VERSION:
        raise ReportError(
            f"{path}: a report of schema {document['schema']!r}; this pytest-attnperf reads {SCHEMA_PREFIX}1 to "
            f"{SCHEMA_PREFIX}{SCHEMA_VERSION}: read it with the version that wrote it, or upgrade"
        )
    results = document.get("results")
    if not isinstance(results, list) or not all(isinstance(case, dict) and case.get("test_id") for case in results):
        raise ReportError(f"{path}: 'results' must be a list of cases, each with a test_id")
    for name, kind, what in REPORT_FIELDS:
        if document.get(name) is not None and not kind(document[name]):
            raise ReportError(f"{path}: its {name!r} is {json.dumps(document[name])[:80]}; expected {what}")
    for case in results:
        _check_case(case, path)
    return StoredReport(path=path, document=document)


# The report's own fields the readers use, each with its check and the accepted form said in words.
REPORT_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("device", lambda value: isinstance(value, dict), "an object (the device record)"),
    (
        "devices",
        lambda value: isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()),
        "an object of device records",
    ),
    ("created_at", lambda value: isinstance(value, str), "an ISO 8601 time"),
    ("commit", lambda value: isinstance(value, str), "a commit hash"),
    (
        "environment_changes",
        lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
        "a list of strings",
    ),
)
# What a report shows of a case beyond its record's fields (session/report.py's results_document).
DERIVED: dict[str, type | tuple[type, ...]] = {
    "latency_ratio": (int, float),
    "normalised_ratio": (int, float),
    "memory_ratio": (int, float),
    "verdict": str,
}


def _check_case(case: dict[str, Any], path: Path) -> None:
    """A case must read back as a case record (every field of its declared type, finite), so no reader trips on it."""
    try:
        CaseRecord.from_dict(case)
    except ValueError as error:
        raise ReportError(f"{path}: {error}") from None
    for name, kind in DERIVED.items():
        value = case.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind) or not all_finite(value)):
            raise ReportError(
                f"{path}: case {case['test_id']!r} has {name} {json.dumps(value)[:80]}; expected "
                f"{'a string' if kind is str else 'a finite number'} or null"
            )


def gpu_of(case: Mapping[str, Any]) -> str:
    """The GPU model a case was measured on, as the baselines name it (its slug)."""
    return str(case.get("device_slug") or case.get("device") or "?")


def problem_of(case: Mapping[str, Any]) -> dict[str, Any]:
    """What gate/identity.py compares: backend, mode and shape."""
    return {"backend": case.get("backend"), "mode": case.get("mode"), "shape": case.get("shape")}


def measured(cases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases that have a latency median (not those that did not fit, failed or were skipped)."""
    return [case for case in cases if isinstance(case.get("median_ms"), (int, float)) and case["median_ms"] > 0]


def short_id(test_id: str) -> str:
    return test_id.split("::", 1)[-1]
