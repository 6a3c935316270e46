"""The end of a run: baselines, detection limits, report files and the study, in this order, from the records.

Each step is a plain function over the run's results that returns a frozen outcome and writes into
nothing of the session's; :func:`finish_run` calls them in order and collects their outcomes into one
:class:`RunEnd`, which the report shows and from which the session sets pytest's exit status (the one
place that does). No torch import: under pytest-xdist the controller writes baselines from the records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..gate.results import CaseRecord
from ..spec.settings import Settings

if TYPE_CHECKING:
    from ..gate.baselines import Change
    from .report import RunReport


@dataclass(frozen=True)
class RunEnd:
    """What the end of a run did, as the report shows it; ``failed``: the run must end as failed."""

    changes: tuple[Change, ...] = ()
    update_notes: tuple[str, ...] = ()
    update_errors: tuple[str, ...] = ()
    calibration_lines: tuple[str, ...] = ()
    written_paths: tuple[Path, ...] = ()
    output_errors: tuple[str, ...] = ()
    failed: bool = False


INTERRUPTED_UPDATE = (
    "attnperf: interrupted (Ctrl-C) while writing the baselines; every baseline file is whole: its old version, "
    "or its new one if it was written before the interrupt"
)


def finish_run(
    settings: Settings,
    results: Sequence[CaseRecord],
    *,
    baseline_path_of: Callable[[str], Path],
    report_of: Callable[[RunEnd], RunReport],
    write_study: Callable[[Path], list[Path]],
    interrupted: bool = False,
    cpu_problems: Sequence[str] = (),
) -> RunEnd:
    """Update the baselines, store the detection limits, write the report files and the study, as asked.

    ``report_of`` makes the report the output files are written from (it shows what the steps before did);
    ``write_study`` measures and writes the study into a folder (the only step that needs the device);
    ``interrupted`` and ``cpu_problems`` (a busy CPU) keep the baselines as they are.
    """
    from .baseline_update import update_baselines, write_detection_limits
    from .output_paths import shown
    from .report import write_outputs

    end = RunEnd()
    if settings.update:
        try:
            update = update_baselines(
                settings, results, baseline_path_of, interrupted=interrupted, cpu_problems=cpu_problems
            )
        except KeyboardInterrupt:  # one line instead of a traceback; each file is written atomically
            pytest.exit(INTERRUPTED_UPDATE, returncode=pytest.ExitCode.INTERRUPTED)
        end = dataclasses.replace(
            end, changes=update.changes, update_notes=update.notes, update_errors=update.errors, failed=update.failed
        )
    if settings.calibrate:
        limits = write_detection_limits(results, baseline_path_of)
        end = dataclasses.replace(
            end,
            calibration_lines=limits.lines,
            update_errors=end.update_errors + limits.errors,
            written_paths=end.written_paths + limits.written,
            failed=end.failed or limits.failed,
        )
    written, errors = write_outputs(report_of(end))
    end = dataclasses.replace(
        end, written_paths=end.written_paths + tuple(written), output_errors=end.output_errors + tuple(errors)
    )
    if settings.report_dir is not None:
        try:
            end = dataclasses.replace(end, written_paths=end.written_paths + tuple(write_study(settings.report_dir)))
        except OSError as error:
            problem = (
                f"--attnperf-report: cannot write the study to {shown(settings.report_dir)}: {error.strerror or error}"
            )
            end = dataclasses.replace(end, output_errors=(*end.output_errors, problem))
    return dataclasses.replace(end, failed=end.failed or bool(end.output_errors))
