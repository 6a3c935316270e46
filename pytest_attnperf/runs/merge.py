"""``attnperf merge``: several runners' reports of one CI run as one report, each case under its GPU model.

The merged file is an ordinary report (every reader takes it: compare, export, history): its cases
keep the GPU model they were measured on, ``devices`` maps each model to its device record, and
``merged_from`` names the inputs. Two reports of different commits are two runs, not one: refused.
So is a case measured twice on one GPU model (which one would the view show?).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .stored import StoredReport, gpu_of, short_id


class MergeError(ValueError):
    """Reports that are not one run's parts; the message names the files."""


def merge_reports(reports: Sequence[StoredReport]) -> dict[str, Any]:
    commits = {report.commit for report in reports if report.commit}
    if len(commits) > 1:
        named = ", ".join(f"{report.path} ({report.commit[:10]})" for report in reports if report.commit)
        raise MergeError(f"the reports measured different commits, so they are not one run: {named}")
    owner: dict[tuple[str, str], StoredReport] = {}
    results: list[dict[str, Any]] = []
    devices: dict[str, dict[str, Any]] = {}
    for report in reports:
        for case in report.cases:
            key = (gpu_of(case), case["test_id"])
            if key in owner:
                raise MergeError(
                    f"{short_id(key[1])} on {key[0]} is in both {owner[key].path} and {report.path}; merge the "
                    "reports of different runners (different GPU models or different tests), not one runner's twice"
                )
            owner[key] = report
            devices.setdefault(key[0], case.get("device_info") or {"name": case.get("device"), "slug": key[0]})
            results.append(case)
    moments = [report.created_at for report in reports if report.created_at is not None]
    names = sorted({str(device.get("name")) for device in devices.values()})
    single = len(devices) == 1
    return {
        "schema": "attnperf-results/2",
        "created_at": max(moments).isoformat().replace("+00:00", "Z") if moments else None,
        "commit": next(iter(commits), None),
        "device": next(iter(devices.values())) if single else {"name": " + ".join(names), "device": "several"},
        "devices": devices,
        "baselines": ", ".join(sorted({str(report.document.get("baselines")) for report in reports})),
        "environment_changes": sorted(
            {change for report in reports for change in report.document.get("environment_changes", [])}
        ),
        "merged_from": [
            {
                "path": str(report.path),
                "created_at": report.document.get("created_at"),
                "device": report.device_name,
                "cases": len(report.cases),
            }
            for report in reports
        ],
        "results": results,
    }


def merge_summary(document: dict[str, Any]) -> list[str]:
    """Per GPU model: how many cases, from which files."""
    lines = []
    counts: dict[str, int] = {}
    for case in document["results"]:
        counts[gpu_of(case)] = counts.get(gpu_of(case), 0) + 1
    for slug, count in counts.items():
        name = document["devices"][slug].get("name", slug)
        lines.append(f"{name} ({slug}): {count} case(s)")
    for source in document["merged_from"]:
        lines.append(f"  from {source['path']}: {source['cases']} case(s) on {source['device']}")
    return lines
