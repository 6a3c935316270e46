"""Judge the recorded trials of a sensitivity study again with the gate's current decision code.

The sensitivity study (benchmarks/sensitivity.py) keeps every trial's samples (time and SM clock of
each sample and of the warm-up) in sensitivity-samples.json.gz. When the decision rule changes, this
script replays those very measurements through pytest_attnperf.gate.latency.decide_latency against
the same baselines: stage 1 on the first measurement, and, where the current rule finds it ambiguous,
the recorded re-measurements (stage 2, 3). A trial the current rule would re-measure where the study
took no re-measurement is counted as "no data", never guessed. The samples file predates the energy
column, so the power rule cannot fire in this replay (it needs the energy per call).

    python benchmarks/experiments/rejudge_sensitivity.py docs/results/h200 --baselines baselines/nvidia-h200.yaml
        # writes docs/results/h200/gate-validation-rejudged.json and prints the table
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from pytest_attnperf.gate.baselines import load_baseline
from pytest_attnperf.gate.latency import decide_latency
from pytest_attnperf.gate.results import flat_record
from pytest_attnperf.gate.statistics import tolerance

SUITE = "tests/suite/test_attention.py"


def test_id(case: str) -> str:
    """The suite test a sensitivity case was judged against (as benchmarks/sensitivity.py names them)."""
    words = case.split()
    if words[0] == "decode":  # 'decode flash-attn 16K cache'
        return f"{SUITE}::test_inference[decode-{words[1]}-{words[2]}]"
    return f"{SUITE}::test_forward[{words[0]}-{words[1]}]"


def judge(stages: dict[int, dict[str, Any]], entry: Any) -> tuple[str, float | None]:
    """The verdict of one trial, and its first-stage ratio."""
    first_ratio = None
    for stage in (1, 2, 3):
        sample = stages.get(stage)
        if sample is None:
            return "no data", first_ratio
        result = flat_record(
            test_id(sample["case"]), "-", "-", "-", "forward", {}, 0,
            median_ms=statistics.median(sample["time_ms"]), samples_ms=sample["time_ms"],
            clock_mhz=sample["clock_mhz"], warmup_ms=sample["warmup_ms"],
            warmup_clock_mhz=sample["warmup_clock_mhz"],
        )  # fmt: skip
        decision = decide_latency(result, entry, None, stage)
        first_ratio = decision.ratio if stage == 1 else first_ratio
        if decision.verdict.value != "ambiguous":
            return decision.verdict.value, first_ratio
    return "ambiguous", first_ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where sensitivity-samples.json.gz and gate-validation.json are")
    parser.add_argument("--baselines", type=Path, required=True, help="the baseline file the study judged against")
    arguments = parser.parse_args(argv)
    with gzip.open(arguments.folder / "sensitivity-samples.json.gz", "rt", encoding="utf-8") as handle:
        samples = json.load(handle)
    baseline = load_baseline(arguments.baselines)
    if baseline is None:
        parser.error(f"{arguments.baselines}: no such baseline file")
    trials: dict[tuple[str, float, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    for sample in samples:
        trials[(sample["case"], sample["row"], sample["trial"])][sample["stage"]] = sample
    verdicts: dict[tuple[str, float], list[str]] = defaultdict(list)
    ratios: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (case, row, _), stages in sorted(trials.items()):
        verdict, ratio = judge(stages, baseline.entries[test_id(case)])
        verdicts[(case, row)].append(verdict)
        if ratio is not None:
            ratios[(case, row)].append(ratio)
    measured = json.loads((arguments.folder / "gate-validation.json").read_text(encoding="utf-8"))
    rows, lines = (
        [],
        [
            "| case | tolerance | unchanged: false alarms | row | delivered | caught | no data |",
            "|---|---|---|---|---|---|---|",
        ],
    )
    for case in dict.fromkeys(row["case"] for row in measured["sensitivity"]):  # the study's order
        entry = baseline.entries[test_id(case)]
        tau = tolerance(entry.runs, entry.spread).tau
        unchanged = statistics.median(ratios[(case, 0.0)])
        false_alarms = verdicts[(case, 0.0)].count("regression")
        for row in sorted({row for name, row in verdicts if name == case and row}):
            delivered = statistics.median(ratios[(case, row)][3:] or ratios[(case, row)]) / unchanged - 1
            caught, missing = verdicts[(case, row)].count("regression"), verdicts[(case, row)].count("no data")
            trials_count = len(verdicts[(case, row)])
            rows.append({"case": case, "injected": round(delivered, 4), "intended": row, "detected": caught,
                         "trials": trials_count, "false_alarms": false_alarms,
                         "false_alarm_trials": len(verdicts[(case, 0.0)]), "tolerance": round(tau, 4),
                         "no_data": missing})  # fmt: skip
            lines.append(
                f"| {case} | {tau * 100:.1f} % | {false_alarms}/{len(verdicts[(case, 0.0)])} | +{row * 100:.0f} % | "
                f"{delivered * 100:+.1f} % | {caught}/{trials_count} | {missing} |"
            )
    document = {
        **{key: measured[key] for key in ("default_tolerance", "tolerance_rule", "tolerance_floor", "device")},
        "sensitivity": rows,
        "gated_runs": measured.get("gated_runs"),
        "judged_by": "the gate's current decision code, replaying the recorded samples "
        "(python benchmarks/experiments/rejudge_sensitivity.py); the measurements are those of gate-validation.json",
    }
    out = arguments.folder / "gate-validation-rejudged.json"
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
