"""Going on with a study an earlier run left in its folder: reading that study.json and refusing one that
belongs to another GPU model, other software or another study (no torch import).

Numbers measured on different GPU models, with different library versions or by a different plan are not
one study: such a file is refused with what differs, never silently mixed in or overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..spec.device_info import SOFTWARE_KEYS
from .document import mapping, records
from .plan import planned_config_names

SCHEMA = "attnperf-study/1"
START_OVER = "--fresh starts the study over in that folder (replacing it), or choose another --out"
_PLAN_PARTS = {
    "configs": "another configuration list",
    "seqlens": "other context lengths (--attnperf-seqlens)",
    "backends": "other backends (--attnperf-backends)",
    "decode": "another decode section",
    "timing": "other timing (--attnperf-min-samples and the sampling settings)",
    "seed": "another input seed",
    "frontier": "another memory frontier setting",
}


class ResumeError(ValueError):
    """An earlier study.json cannot be gone on with; the message names the file, what differs and the way out."""


def read_study(path: Path) -> dict[str, Any]:
    """The study document in ``path``, checked to be one a run can add to."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ResumeError(f"{path}: cannot read it to go on with its study: {error}; {START_OVER}") from None
    except json.JSONDecodeError as error:
        raise ResumeError(f"{path}: not a readable study.json ({error}); {START_OVER}") from None
    except RecursionError:  # arrays nested thousands deep: no study.json this plugin wrote
        raise ResumeError(f"{path}: not a readable study.json (nested too deep); {START_OVER}") from None
    problem = _shape_problem(document)
    if problem:
        raise ResumeError(f"{path}: cannot go on with this study: {problem}; {START_OVER}")
    return dict(document)


def _shape_problem(document: object) -> str | None:
    if not isinstance(document, dict):
        return "it is not a JSON object"
    if document.get("schema") != SCHEMA:
        return f"its schema is {document.get('schema')!r}, not {SCHEMA!r}"
    if not isinstance(document.get("plan"), dict):
        return "it records no study plan (it was written before attnperf report could go on with a study)"
    planned = planned_config_names(document["plan"])
    configs = document.get("configs")
    if not isinstance(configs, list) or len(records(configs)) != len(configs):
        return "its 'configs' is not a list of configurations"
    names = [config.get("name") for config in configs]
    unknown = [name for name in names if name not in planned]
    if unknown or len(set(names)) != len(names):
        return f"its configurations {names} are not distinct ones of its plan {planned}"
    if any(not isinstance(config.get("cases"), list) for config in configs):
        return "a configuration without a list of cases"
    if "decode" in document and not isinstance(document["decode"], dict):
        return "its decode section is not an object"
    lists = [key for key in ("frontier", "fused_limits", "runs") if not isinstance(document.get(key, []), list)]
    if lists or not isinstance(document.get("matmul_peak_tflops", {}), dict):
        return f"its {', '.join(lists) or 'matmul_peak_tflops'} is not a {'list' if lists else 'mapping'}"
    if not isinstance(document.get("gpu"), dict):
        return "it records no device"
    return None


def resume_problems(previous: Mapping[str, Any], plan: Mapping[str, Any], gpu: Mapping[str, Any]) -> list[str]:
    """What makes ``previous`` another study than this run's: device model, software, plan. Empty: the same."""
    there = mapping(previous.get("gpu"))
    if there.get("name") != gpu.get("name"):
        return [f"it was measured on {there.get('name')!r}, this run is on {gpu.get('name')!r}"]
    problems = []
    software = [
        f"{key} {there.get(key)} there, {gpu.get(key)} here" for key in SOFTWARE_KEYS if there.get(key) != gpu.get(key)
    ]
    if software:
        problems.append("other software (" + "; ".join(software) + ")")
    earlier = mapping(previous.get("plan"))
    for key, label in _PLAN_PARTS.items():
        if earlier.get(key) != plan.get(key):
            problems.append(f"{label}: {_short(earlier.get(key))} there, {_short(plan.get(key))} here")
    return problems


def _short(value: object) -> str:
    """A plan value as one readable line: configuration lists by name."""
    if isinstance(value, list) and value and all(isinstance(item, dict) and "name" in item for item in value):
        value = [item["name"] for item in value]
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:199] + "…"


def check_resumable(path: Path, previous: Mapping[str, Any], plan: Mapping[str, Any], gpu: Mapping[str, Any]) -> None:
    """Refuse (ResumeError) to add to ``previous``, read from ``path``, when it is another study."""
    problems = resume_problems(previous, plan, gpu)
    if problems:
        raise ResumeError(f"{path}: another study than this run's: {'; '.join(problems)}; {START_OVER}")


@contextlib.contextmanager
def holding_folder(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for one run: a second report into it at the same time is refused (ResumeError).

    Each run saves the study it started from plus its own parts, so of two at once the later save would drop
    the other's parts (and the two would share the GPU, spoiling each other's timings). The lock is the
    kernel's (flock on the folder itself): it leaves no file behind and ends with the process, however it ends."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs into one folder are not guarded there
        yield
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder one may write in but not list: nothing to hold it by, the run goes on unguarded
        descriptor = None
    try:
        if descriptor is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ResumeError(
                    f"{folder}: another attnperf report is measuring into this folder now; wait for it to finish "
                    "(then the same command goes on with its study), or choose another --out"
                ) from None
            except OSError:  # a file system without locks (some network mounts) cannot tell: the run goes unguarded
                pass
        yield
    finally:
        if descriptor is not None:
            os.close(descriptor)
