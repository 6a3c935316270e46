"""A CPU simulation of the latency gate, fitted to the committed H100 data: the old gate against the new one.

It guides the design. It proves nothing about a GPU: the model is fitted to seven committed
plugin runs of one H100 on one day, and its structure (how clock drift, residual noise and
within-run bimodality combine) is an assumption. The GPU proof is `bash benchmarks/gpu_session.sh
sensitivity` and `false_alarms` on the H200.

Fitted from the committed files, per case (fp16, causal, B=1, H=32, D=128, forward):
- between-run spread: the log standard deviation of the case's median over the plugin runs in
  docs/results/h100 (study.json, fidelity.md, ncu-fidelity.md, main-job.log, ci/ci-gate.log,
  sensitivity.md) and the committed baselines/nvidia-h100-80gb-hbm3.yaml;
- within-run shape (including the boost -> power-cap bimodality): the baseline's 25 stored quantiles;
- clock elasticity beta: from the share of matmul peak the case reaches (study.json), 1 at >= 40 %;
- sustained-load drift: the unchanged rows of sensitivity.md (a process that ran for minutes).

Model, log space: a process runs the case at a clock offset c ~ N(0, sigma_f) and with a residual
offset r ~ N(0, sigma_r); its samples are T * exp(-beta * c + r + w), w from the within-run shape
(the old gate, whose 25 ms warm-up ends inside the power-cap step) or small and unimodal (the new
gate, warmed up until steady: its warm-up samples fall from boost clock to the cap, which is what
makes beta identifiable). sigma_f follows from sigma_b^2 = beta^2 sigma_f^2 + sigma_r^2, with
sigma_r the spread of the cases that barely reach peak. A re-measurement in the same process shares r
(half of it for the new gate's cooled re-measurement) and, for the old gate, c.

The old gate: a single-run baseline; the median over tolerance, measured again at once, and a
one-sided Mann-Whitney test of the 25 quantiles against the baseline's scaled by (1 + tolerance),
p < 0.01 (scipy.stats.mannwhitneyu). The new gate: the plugin's own code (gate.recording builds a
3-run baseline from simulated samples with clocks; gate.latency decides each stage).

    python benchmarks/experiments/gate_simulation.py --out docs/results/simulation    # ~2 minutes on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from pytest_attnperf.gate.latency import decide_latency
from pytest_attnperf.gate.recording import entry_from_runs
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.gate.statistics import DEFAULT_PARAMS, Verdict, tolerance

ROOT = Path(__file__).resolve().parents[2]
H100 = ROOT / "docs" / "results" / "h100"
MATMUL_PEAK = 695.0  # H100 fp16 dense matmul, TFLOP/s (FACTS.md, measured)
SLOWDOWNS = (0.0, 0.03, 0.05, 0.10)
OLD_TOLERANCES = (0.10, 0.05, 0.03)
PROCESS_SHARE = 0.5  # the part of the residual a cooled re-measurement in the same session shares (assumed)
NEW_WITHIN_SD = 0.003  # within-run sd of a steady case (assumed: the quiet cases' quantiles)
CLOCK_WANDER = 0.004  # within-run clock wander of a steady case (assumed)
PROBE_NOISE = 0.0005  # the clock probe's error over a >= 2 ms block (globaltimer step ~1 us)


# ---------------------------------------------------------------- fitting to the committed data


def _median_text(text: str) -> float | None:
    match = re.match(r"([\d.]+) (ms|us)", text)
    if match is None:
        return None
    return float(match.group(1)) / (1e3 if match.group(2) == "us" else 1.0)


def committed_medians() -> dict[tuple[str, int], list[float]]:
    """Each case's median in every committed plugin run."""
    runs: dict[tuple[str, int], list[float]] = {}

    def add(backend: str, seqlen: int, value: float | None) -> None:
        if value:
            runs.setdefault((backend, seqlen), []).append(value)

    study = json.loads((H100 / "study.json").read_text(encoding="utf-8"))
    config = next(c for c in study["configs"] if c["name"] == "fp16 causal d128")
    for case in config["cases"]:
        add(case["backend"], case["seqlen"], case.get("median_ms") if case.get("status") == "ok" else None)
    for line in (H100 / "fidelity.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1].isdigit() and re.fullmatch(r"[\d.]+", cells[2]):
            add(cells[0], int(cells[1]), float(cells[2]))
    for line in (H100 / "ncu-fidelity.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| ([\w-]+)-(\d+) \| ([\d.]+) \|", line)
        if match:
            add(match.group(1), int(match.group(2)), float(match.group(3)))
    for log in ("main-job.log", "ci/ci-gate.log"):
        for line in (H100 / log).read_text(encoding="utf-8").splitlines():
            cells = re.split(r"\s{2,}", line.strip())
            if line.startswith("test_forward[") and len(cells) >= 9 and cells[2].isdigit():
                add(cells[1], int(cells[2]), _median_text(cells[3]))
    for line in (H100 / "sensitivity.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| ([\w-]+) \| (\d+) \| ([\d.]+) ms \| none", line)
        if match:
            add(match.group(1), int(match.group(2)), float(match.group(3)))
    baseline = yaml.safe_load((ROOT / "baselines" / "nvidia-h100-80gb-hbm3.yaml").read_text(encoding="utf-8"))
    for test_id, entry in baseline["entries"].items():
        match = re.search(r"test_forward\[([\w-]+)-(\d+)K\]", test_id)
        if match and entry.get("latency_ms"):
            add(match.group(1), int(match.group(2)) * 1024, entry["latency_ms"]["median"])
    return runs


@dataclass(frozen=True)
class Case:
    backend: str
    seqlen: int
    median_ms: float
    runs: int
    sigma_b: float  # between-run log sd, raw
    share: float  # of matmul peak
    shape: tuple[float, ...]  # within-run log offsets from the median (the baseline's quantiles)
    sustained: float  # log drift of an unchanged case in a long sustained process (sensitivity.md), 0 if not measured

    @property
    def beta(self) -> float:
        return min(1.0, self.share / 0.4)

    @property
    def boost(self) -> float:
        """How far above its settled clock the case starts (log): its fastest stored quantile, through beta."""
        fastest = -min(self.shape)
        return min(0.15, max(0.02, fastest / self.beta)) if self.beta >= 0.5 else 0.05

    @property
    def name(self) -> str:
        return f"{self.backend} {self.seqlen // 1024}K"


def fit_cases() -> tuple[list[Case], float]:
    medians = committed_medians()
    study = json.loads((H100 / "study.json").read_text(encoding="utf-8"))
    config = next(c for c in study["configs"] if c["name"] == "fp16 causal d128")
    tflops = {(c["backend"], c["seqlen"]): c.get("tflops") or 0.0 for c in config["cases"]}
    baseline = yaml.safe_load((ROOT / "baselines" / "nvidia-h100-80gb-hbm3.yaml").read_text(encoding="utf-8"))
    sustained: dict[tuple[str, int], float] = {}
    for line in (H100 / "sensitivity.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| ([\w-]+) \| (\d+) \| [\d.]+ ms \| none .* \| x([\d.]+) \|$", line)
        if match:
            sustained[(match.group(1), int(match.group(2)))] = math.log(float(match.group(3)))
    cases = []
    for (backend, seqlen), values in sorted(medians.items(), key=lambda item: (item[0][1], item[0][0])):
        if backend == "eager" or len(values) < 4:  # eager's committed runs straddle a host-sync fix
            continue
        entry = baseline["entries"].get(f"tests/suite/test_attention.py::test_forward[{backend}-{seqlen // 1024}K]")
        quantiles = (entry or {}).get("latency_ms", {}).get("quantiles") or [1.0]
        centre = statistics.median(quantiles)
        logs = [math.log(value) for value in values]
        cases.append(
            Case(
                backend=backend,
                seqlen=seqlen,
                median_ms=statistics.median(values),
                runs=len(values),
                sigma_b=statistics.stdev(logs),
                share=tflops.get((backend, seqlen), 0.0) / MATMUL_PEAK,
                shape=tuple(math.log(q / centre) for q in quantiles),
                sustained=sustained.get((backend, seqlen), 0.0),
            )
        )
    quiet = [case.sigma_b for case in cases if case.share < 0.3]
    return cases, statistics.median(quiet)


# ---------------------------------------------------------------- the two gates


def _old_samples(rng: random.Random, case: Case, median: float, count: int) -> list[float]:
    return [median * math.exp(rng.choice(case.shape) + rng.gauss(0, 0.001)) for _ in range(count)]


def old_gate(rng: random.Random, case: Case, sigma_r: float, sigma_f: float, slowdown: float, tol: float) -> bool:
    base_median = case.median_ms * math.exp(-case.beta * rng.gauss(0, sigma_f) + rng.gauss(0, sigma_r))
    baseline = sorted(_old_samples(rng, case, base_median, 25))
    clock = rng.gauss(0, sigma_f) + rng.gauss(0, abs(case.sustained) / 2)
    process = case.median_ms * (1 + slowdown) * math.exp(-case.beta * clock + rng.gauss(0, sigma_r))
    first = statistics.median(_old_samples(rng, case, process, 25))
    if first <= base_median * (1 + tol):
        return False
    second_samples = _old_samples(rng, case, process * math.exp(rng.gauss(0, 0.002)), 25)
    if statistics.median(second_samples) <= base_median * (1 + tol):
        return False
    p_value = stats.mannwhitneyu(second_samples, [q * (1 + tol) for q in baseline], alternative="greater").pvalue
    return bool(p_value < 0.01)


def _new_run(rng: random.Random, case: Case, clock: float, residual: float, slowdown: float) -> CaseRecord:
    """One process's samples with their clocks: 20 warm-up samples (from boost to the cap) and 30 steady ones."""
    times, clocks = [], []
    for index in range(50):
        # the warm-up starts at boost clock and settles at the power cap: the step the baseline quantiles show
        log_f = clock + case.boost * math.exp(-index / 5) + rng.gauss(0, CLOCK_WANDER)
        times.append(
            case.median_ms * (1 + slowdown) * math.exp(-case.beta * log_f + residual + rng.gauss(0, NEW_WITHIN_SD))
        )
        clocks.append(1800.0 * math.exp(log_f + rng.gauss(0, PROBE_NOISE)))
    samples, sample_clocks = times[20:], clocks[20:]
    return flat_record(
        "t", case.backend, "H100", "h100", "forward", None, case.seqlen,
        median_ms=statistics.median(samples), samples_ms=samples, clock_mhz=sample_clocks,
        warmup_ms=times[:20], warmup_clock_mhz=clocks[:20],
    )  # fmt: skip


def new_gate(rng: random.Random, case: Case, sigma_r: float, sigma_f: float, slowdown: float) -> tuple[bool, int]:
    """(failed, measurements) of the new gate: a 3-run baseline, then up to three measurements."""
    baseline = entry_from_runs(
        [_new_run(rng, case, rng.gauss(0, sigma_f), rng.gauss(0, sigma_r), 0.0) for _ in range(3)], ""
    )
    session = rng.gauss(0, sigma_r)  # the part of the residual shared within the gated session
    measurements = 0
    for stage in (1, 2, 3):
        residual = math.sqrt(PROCESS_SHARE) * session + math.sqrt(1 - PROCESS_SHARE) * rng.gauss(0, sigma_r)
        clock = rng.gauss(0, sigma_f) + (rng.gauss(0, abs(case.sustained) / 2) if stage == 1 else 0.0)
        result = _new_run(rng, case, clock, residual, slowdown)
        measurements += 1
        verdict = decide_latency(result, baseline, None, stage).verdict
        if verdict is not Verdict.AMBIGUOUS:
            return verdict is Verdict.REGRESSION, measurements
    return False, measurements


def suite_false_alarms(sigmas: list[float], runs: int, trials: int = 200_000, seed: int = 11) -> float:
    """P(at least one false alarm in ``runs`` gated runs of the suite), from each case's normalised spread:
    the decision rule on run medians (3-run baseline, stages as in gate.statistics), vectorised."""
    rng = np.random.default_rng(seed)
    p_quiet = 1.0
    for sigma in sigmas:
        base = rng.normal(0, sigma, (trials, 3))
        centre, spread = base.mean(axis=1), base.std(axis=1, ddof=1)
        tau = np.array([tolerance(3, float(s)).tau for s in spread[:2000]])
        tau = np.resize(tau, trials)  # the tolerance's distribution, reused
        pred = np.array([tolerance(3, float(s)).predictive_sd for s in spread[:2000]])
        pred = np.resize(pred, trials)
        session = rng.normal(0, sigma * math.sqrt(PROCESS_SHARE), trials)
        draws = [session + rng.normal(0, sigma * math.sqrt(1 - PROCESS_SHARE), trials) - centre for _ in range(3)]
        line = np.log1p(tau)
        clear = line + DEFAULT_PARAMS.clear_margin * pred
        cleared = line - DEFAULT_PARAMS.ambiguous_width * pred
        fails = (draws[0] > clear) | (
            (draws[0] > line) & ((draws[1] > line) | ((draws[1] > cleared) & (draws[2] > line)))
        )
        p_quiet *= (1 - fails.mean()) ** runs
    return 1 - p_quiet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="sample-level trials per case and slowdown")
    parser.add_argument("--out", type=Path, default=None, help="folder for gate-simulation.json and .md")
    arguments = parser.parse_args()
    cases, sigma_r = fit_cases()
    rng = random.Random(20261201)
    rows: list[dict[str, Any]] = []
    for case in cases:
        sigma_f = math.sqrt(max(case.sigma_b**2 - sigma_r**2, 0.0)) / case.beta if case.beta > 0 else 0.0
        row: dict[str, Any] = {
            "case": case.name, "runs": case.runs, "sigma_b": round(case.sigma_b, 5), "share_of_peak": round(case.share, 3),
            "beta": round(case.beta, 3), "sigma_clock": round(sigma_f, 5), "old": {}, "new": {},
        }  # fmt: skip
        for slowdown in SLOWDOWNS:
            key = f"{slowdown:.2f}"
            row["old"][key] = {
                f"{tol:.2f}": sum(old_gate(rng, case, sigma_r, sigma_f, slowdown, tol) for _ in range(arguments.trials))
                for tol in OLD_TOLERANCES
            }
            outcomes = [new_gate(rng, case, sigma_r, sigma_f, slowdown) for _ in range(arguments.trials)]
            row["new"][key] = sum(failed for failed, _ in outcomes)
            row.setdefault("measurements", {})[key] = round(statistics.fmean(m for _, m in outcomes), 3)
        normalised = []
        for _ in range(
            200
        ):  # the new gate's between-run spread of normalised medians, for the suite-level false alarms
            entry = entry_from_runs(
                [_new_run(rng, case, rng.gauss(0, sigma_f), rng.gauss(0, sigma_r), 0.0) for _ in range(2)], ""
            )
            normalised.append(math.log(entry.run_medians_ms[0] / entry.run_medians_ms[1]) / math.sqrt(2))
        row["sigma_normalised"] = round(statistics.pstdev(normalised), 5)
        rows.append(row)
        print(f"{case.name}: done", file=sys.stderr, flush=True)
    document = {
        "note": "a CPU simulation fitted to the committed H100 data; it guides the design and proves nothing about a GPU",
        "command": "python benchmarks/experiments/gate_simulation.py --out docs/results/simulation",
        "trials": arguments.trials,
        "sigma_residual": round(sigma_r, 5),
        "slowdowns": list(SLOWDOWNS),
        "old_tolerances": list(OLD_TOLERANCES),
        "cases": rows,
        "suite_runs": 10,
        "p_any_false_alarm_in_10_suite_runs": round(suite_false_alarms([r["sigma_normalised"] for r in rows], 10), 4),
    }
    if arguments.out:
        arguments.out.mkdir(parents=True, exist_ok=True)
        (arguments.out / "gate-simulation.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"# Gate simulation ({document['note']})\n")
    print(f"{arguments.trials} trials per cell; counts of failed trials. Old gate at tolerance 10 / 5 / 3 %.\n")
    print(
        "| case | sd raw | sd normalised | old, none | old, +3 % | old, +5 % | old, +10 % | new, none | new, +3 % | new, +5 % | new, +10 % |"
    )
    print("|---|---:|---:|---|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        old = [" / ".join(str(row["old"][f"{d:.2f}"][f"{t:.2f}"]) for t in OLD_TOLERANCES) for d in SLOWDOWNS]
        new = [str(row["new"][f"{d:.2f}"]) for d in SLOWDOWNS]
        print(
            f"| {row['case']} | {row['sigma_b']:.2%} | {row['sigma_normalised']:.2%} | {' | '.join(old)} | {' | '.join(new)} |"
        )
    print(
        f"\nP(at least one false alarm in 10 runs of the suite), new gate: {document['p_any_false_alarm_in_10_suite_runs']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
