"""An experiment: how far the live validation's unchanged rows drifted, and what the machine was credited (no GPU).

A power-heavier slowdown (the same cycles at more energy per cycle) can only be told from the drift of an unchanged
kernel at the power cap in the same session. This reads the raw reports of one or more live validation folders
(``benchmarks/gate_validation_live.py``: ``raw/trials-*.json``, committed gzipped) and prints, per case, the unchanged rows' raw ratio
(the deciding measurement's median over the baseline's centre) and the machine's credit (raw over normalised ratio),
the power-heavier rows' raw ratio and verdicts, and the unchanged rows' mean power while running
(``burst_power_w``, the window opened into the back-to-back load) against the card's power limit. A second table
says what moves an unchanged kernel within the session: the machine reference's clock next to it over the one
recorded next to its baseline (``baselines/`` of the folder), and how far the later half of its samples sits from
the earlier half (the power cap's own swing, which no machine reference sees).

    python benchmarks/experiments/live_drift.py docs/results/h100/2026-12/live-de84f1cb \\
        > docs/results/h100/2026-12/live-de84f1cb/drift.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "gate_validation"))
sys.path.insert(0, str(HERE))

from live_cases import parse_item_id  # noqa: E402
from render.gate import LIVE_DRIFT_COLUMNS  # noqa: E402  (the columns the README's renderer reads)

from pytest_attnperf.runs.stored import read_text  # noqa: E402


def rows_by_case(folders: list[Path]) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], set[float]]:
    """Every gated record of the folders' raw reports by (case, row), and the power limits their sessions read."""
    records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    limits: set[float] = set()
    for folder in folders:
        for path in sorted((folder / "raw").glob("trials-*.json*")):
            if not path.name.endswith((".json", ".json.gz")):
                continue  # a cut-off call's .partial, a set-aside .exit-N report
            document = json.loads(read_text(path))
            for record in document["results"]:
                case, row, _trial = parse_item_id(record["test_id"])
                records[(case, row)].append({**record, "_folder": folder})  # whose baselines it was gated against
                limit = (record.get("session_gpu_state") or {}).get("power_limit_w")
                if limit:
                    limits.add(float(limit))
    return records, limits


def _ratio(values: list[float]) -> str:
    return f"x{statistics.median(values):.3f} (x{min(values):.3f}-x{max(values):.3f})" if values else "–"


def table(records: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    lines = ["| " + " | ".join(LIVE_DRIFT_COLUMNS) + " |", "|" + "---|" * len(LIVE_DRIFT_COLUMNS)]
    for case in dict.fromkeys(case for case, _ in records):
        unchanged, heavier = records.get((case, "unchanged"), []), records.get((case, "power"), [])
        raw = [r["latency_ratio"] for r in unchanged if r.get("latency_ratio")]
        credit = [
            r["latency_ratio"] / r["normalised_ratio"]
            for r in unchanged
            if r.get("latency_ratio") and r.get("normalised_ratio")
        ]
        heavier_raw = [r["latency_ratio"] for r in heavier if r.get("latency_ratio")]
        caught = sum(r["verdict"] == "REGRESSION" for r in heavier)
        power = [r["gpu"]["burst_power_w"] for r in unchanged if (r.get("gpu") or {}).get("burst_power_w")]
        watts = f"{statistics.median(power):.0f} ({max(power):.0f})" if power else "–"
        lines.append(
            f"| {case} | {len(unchanged)} | {_ratio(raw)} | {f'x{max(credit):.3f}' if credit else '–'} | "
            f"{_ratio(heavier_raw)} | {caught} of {len(heavier)} | {watts} |"
        )
    return lines


def _half_shift(samples: list[float]) -> float | None:
    """How far the later half of a case's samples sits from the earlier half (median over median, minus one)."""
    if len(samples) < 6:
        return None
    half = len(samples) // 2
    return statistics.median(samples[half:]) / statistics.median(samples[:half]) - 1


def movers(
    records: dict[tuple[str, str], list[dict[str, Any]]], references: dict[tuple[Path, str], float]
) -> list[str]:
    """What moves an unchanged kernel within a session: the machine reference's clock next to it (over the one next
    to its baseline, in its own folder's baselines/) and the samples themselves, later half against earlier half
    (the power cap's own swing)."""
    header = [
        "case", "trials", "machine reference clock, now over the baseline's: median (range)",
        "samples' later half over earlier half: median absolute shift (largest)",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case in dict.fromkeys(case for case, _ in records):
        unchanged = records.get((case, "unchanged"), [])
        clock = []
        for record in unchanged:
            now = ((record.get("gpu") or {}).get("reference") or {}).get("clock_mhz")
            then = references.get((record["_folder"], case))
            if now and then:
                clock.append(now / then)
        shifts = [abs(shift) for r in unchanged if (shift := _half_shift(r.get("samples_ms") or [])) is not None]
        moved = f"{statistics.median(shifts):.1%} ({max(shifts):.1%})" if shifts else "–"
        lines.append(f"| {case} | {len(unchanged)} | {_ratio(clock)} | {moved} |")
    return lines


def baseline_references(folders: list[Path]) -> dict[tuple[Path, str], float]:
    """Per folder and case, the machine reference's clock recorded next to the unchanged baseline (its baselines/)."""
    import yaml

    clocks: dict[tuple[Path, str], float] = {}
    for folder in folders:
        for path in sorted((folder / "baselines").glob("*.yaml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            entries = document.get("entries") if isinstance(document, dict) else None
            if not isinstance(entries, dict):
                raise SystemExit(f"{path}: not a baseline file (no mapping of entries)")
            for test_id, entry in entries.items():
                try:
                    case, row, _ = parse_item_id(str(test_id))
                except ValueError:
                    continue  # another suite's entry in the same file
                clock = ((entry or {}).get("reference") or {}).get("clock_mhz") if isinstance(entry, dict) else None
                if row == "unchanged" and clock:
                    clocks[(folder, case)] = float(clock)
    return clocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="live validation folders (each with raw/)")
    arguments = parser.parse_args(argv)
    records, limits = rows_by_case(arguments.folders)
    if not records:
        parser.error(f"no raw/trials-*.json[.gz] reports under {', '.join(map(str, arguments.folders))}")
    names = ", ".join(folder.as_posix() for folder in arguments.folders)
    limit = " / ".join(f"{value:.0f} W" for value in sorted(limits)) or "unknown"
    print(f"# The live trials' unchanged drift and the machine's credit ({names})\n")
    print(f"The card's power limit: {limit}. A raw ratio is the deciding measurement's median over the baseline's")
    print("centre; the machine's credit is the raw ratio over the normalised one (at most the 3 % band at the cap).\n")
    print("\n".join(table(records)))
    references = baseline_references(arguments.folders)
    print("\nWhat moves an unchanged kernel within the session: the machine reference's clock next to it, over the one")
    print("next to its baseline (what the machine is credited from), and the spread of its own samples at the cap.\n")
    print("\n".join(movers(records, references)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
