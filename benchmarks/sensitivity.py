"""Sensitivity of the latency gate on a GPU: injected slowdowns caught, false alarms, with real GPU work.

For each case, against its baseline from `attnperf update --runs 3` (the suite's baseline file;
a case the suite does not have, such as the decode step, gets a baseline of three measurements
separated by cool-downs in this process, and says so), three rows are measured in interleaved
trials: unchanged, and with extra GPU work of 5 % and 10 % of the case's time appended
(pytest_attnperf.measure.injection: a matmul for compute-bound cases, a copy for memory-bound ones;
sized in time, resized after the first trials to deliver what it should). Each trial is judged by
the gate's own decision: a first measurement, and for an ambiguous one a cooled-down re-measurement
(and a third if still ambiguous). "injected" is what a row delivered in wall time: its median raw
ratio over the unchanged row's, never the intended fraction; "injected_cycles" the same in cycles
(each sample's time x its SM clock). The injected rows can run at another clock than the unchanged
one, so the two differ (on the H200, sdpa-cudnn 16K "+5 %" was +3.5 % in cycles, +1.7 % in wall time).

Run on the GPU machine (bash benchmarks/gpu_session.sh sensitivity):
    python3 benchmarks/sensitivity.py --out "$OUT"     # writes sensitivity.md, gate-validation.json,
                                                       # sensitivity-samples.json.gz (every sample's time and clock)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.gate.baselines import BaselineEntry, load_baseline
from pytest_attnperf.gate.latency import decide_latency
from pytest_attnperf.gate.recording import entry_from_runs
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.gate.statistics import DEFAULT_PARAMS, Verdict, tolerance
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.measure.injection import Injector
from pytest_attnperf.measure.inputs import make_qkv, torch_dtype
from pytest_attnperf.measure.measurement import measure
from pytest_attnperf.measure.nvml import nvml_for
from pytest_attnperf.measure.timing import spin_up
from pytest_attnperf.session.case_runner import make_workload
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape, length_id

CASES = (
    "sdpa-flash:4096,flash-attn:16384,sdpa-cudnn:16384,sdpa-cudnn:32768,flex:1024,flex:16384,eager:4096,decode:16384"
)
ROWS = (0.0, 0.05, 0.10)
SUITE_TEST = "tests/suite/test_attention.py::test_forward[{backend}-{length}]"


@dataclass
class Case:
    name: str
    backend: str
    shape: AttnShape
    test_id: str | None  # the suite's test id, when the suite has this case


def parse_case(spec: str) -> Case:
    backend, _, length = spec.partition(":")
    seqlen = int(length)
    dtype = "float16" if torch.cuda.is_available() else "float32"
    if backend == "decode":
        # The suite's decode case: one new token over a 16K KV cache through flash_attn_with_kvcache, the
        # memory-bound step (test_inference[decode-flash-attn-16K], recorded by the baseline stage).
        shape = AttnShape(q_len=1, k_len=seqlen, workload="decode", dtype=dtype)
        test_id = f"tests/suite/test_attention.py::test_inference[decode-flash-attn-{length_id(seqlen)}]"
        return Case(f"decode flash-attn {length_id(seqlen)} cache", "flash-attn", shape, test_id)
    shape = AttnShape(q_len=seqlen, k_len=seqlen, dtype=dtype)
    return Case(
        f"{backend} {length_id(seqlen)}", backend, shape, SUITE_TEST.format(backend=backend, length=length_id(seqlen))
    )


def as_result(case: Case, measurement: Any) -> CaseRecord:
    timing = measurement.timing
    return flat_record(
        case.test_id or case.name, case.backend, "-", "-", "forward", case.shape.as_dict(), case.shape.q_len,
        median_ms=timing.median_ms if timing.samples_ms else None, samples_ms=list(timing.samples_ms),
        clock_mhz=list(timing.clocks_mhz), warmup_ms=list(timing.warmup_ms),
        warmup_clock_mhz=list(timing.warmup_clocks_mhz), clock_source=timing.clock_source, gpu=measurement.gpu,
    )  # fmt: skip


def _delivered(per_row: dict[float, list[float]], row: float) -> float:
    """A row's median (after the 3 trials its injection was resized in) over the unchanged row's, minus one."""
    return statistics.median(per_row[row][3:] or per_row[row]) / statistics.median(per_row[0.0]) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=os.environ.get("CASES", CASES))
    parser.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", "20")))
    parser.add_argument("--baselines", type=Path, default=Path("baselines"))
    parser.add_argument("--cool-down", type=float, default=1.0, help="longest pause before a re-measurement (s)")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--device", default="cuda", help="cuda (the study) or cpu (a smoke run of this script)")
    arguments = parser.parse_args(argv)
    device = torch.device("cuda", torch.cuda.current_device()) if arguments.device == "cuda" else torch.device("cpu")
    info = describe_device(device)
    baseline_file = load_baseline(arguments.baselines / f"{info.slug}.yaml")
    nvml = nvml_for(device)
    rest = nvml.snapshot().temperature_c if nvml else None

    def cool_down() -> None:
        if nvml is not None:
            nvml.cool_down(rest, max_s=arguments.cool_down)

    if device.type == "cuda":
        spin_up(device, 1.0)
    config = TimingConfig()
    table, validation, samples = [], [], []
    started = time.perf_counter()
    for spec in arguments.cases.split(","):
        case = parse_case(spec)
        backend = REGISTRY.get(case.backend)
        qkv = make_qkv(case.shape, device=device)
        plain = make_workload(backend, qkv, "forward")

        def run(workload: Any, case: Case = case) -> CaseRecord:
            return as_result(case, measure(workload, device, config))

        entry: BaselineEntry | None = (
            baseline_file.entries.get(case.test_id) if baseline_file and case.test_id else None
        )
        source = "the suite's baseline (attnperf update)"
        if entry is None or not entry.fits or entry.median_ms is None:
            runs = []
            for _ in range(3):
                cool_down()
                runs.append(run(plain))
            entry, source = entry_from_runs(runs, ""), "3 measurements in this process, cooled down in between"
        beta = entry.beta if entry.beta is not None else 1.0
        injector = Injector(device, torch_dtype(case.shape.dtype), "compute" if beta >= 0.5 else "memory")
        plain_ms = entry.median_ms or 1.0
        sizes = {row: injector.size_for(row * plain_ms) for row in ROWS if row}
        first_ratio: dict[float, list[float]] = {row: [] for row in ROWS}
        first_raw: dict[float, list[float]] = {row: [] for row in ROWS}  # wall time, for "delivered"
        first_cycles: dict[float, list[float]] = {row: [] for row in ROWS}
        caught: dict[float, int] = dict.fromkeys(ROWS, 0)
        for trial in range(arguments.trials):
            order = ROWS[trial % 3 :] + ROWS[: trial % 3]  # rotate, so no row always runs first
            for row in order:
                workload = injector.wrap(plain, sizes[row]) if row else plain
                stage, verdict = 1, Verdict.AMBIGUOUS
                while verdict is Verdict.AMBIGUOUS and stage <= 3:
                    if stage > 1:
                        cool_down()
                    result = run(workload)
                    measured = result.measurement
                    decision = decide_latency(result, entry, None, stage, DEFAULT_PARAMS)
                    verdict = decision.verdict
                    samples.append({"case": case.name, "row": row, "trial": trial, "stage": stage,
                                    "time_ms": measured.samples_ms, "clock_mhz": measured.clock_mhz,
                                    "warmup_ms": measured.warmup_ms, "warmup_clock_mhz": measured.warmup_clock_mhz,
                                    "ratio": decision.ratio, "raw_ratio": decision.raw_ratio, "verdict": verdict.value,
                                    "gpu": measured.gpu, "decided_by": decision.decided_by})  # fmt: skip
                    if stage == 1:
                        first_ratio[row].append(decision.ratio)
                        first_raw[row].append(decision.raw_ratio)
                        clocks = measured.clock_mhz or []
                        cycles = [t * f for t, f in zip(measured.samples_ms or [], clocks, strict=False) if f]
                        if cycles:
                            first_cycles[row].append(statistics.median(cycles))
                    stage += 1
                caught[row] += verdict is Verdict.REGRESSION
            if trial in (0, 2):  # resize the injections to deliver what they should, against the unchanged row
                base = statistics.median(first_ratio[0.0])
                for row in sizes:
                    achieved = statistics.median(first_ratio[row]) / base - 1
                    if achieved > 0:
                        sizes[row] = max(1, int(sizes[row] * row / achieved))
        injector.release()
        unchanged = statistics.median(first_ratio[0.0])
        tau = tolerance(entry.runs, entry.spread).tau
        for row in ROWS[1:]:
            delivered = _delivered(first_raw, row)
            cycles_delivered = _delivered(first_cycles, row) if first_cycles[0.0] and first_cycles[row] else None
            validation.append({"case": case.name, "row": f"plus{round(row * 100)}", "injected": round(delivered, 4),
                               "injected_cycles": None if cycles_delivered is None else round(cycles_delivered, 4),
                               "intended": row,
                               "detected": caught[row], "trials": arguments.trials, "false_alarms": caught[0.0],
                               "false_alarm_trials": arguments.trials, "tolerance": round(tau, 4),
                               "injection": injector.kind, "baseline": source})  # fmt: skip
        table.append((case, entry, source, unchanged, caught, first_raw, first_cycles, tau))
        print(f"{case.name}: done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        del qkv, plain
        torch.cuda.empty_cache()
    arguments.out.mkdir(parents=True, exist_ok=True)
    document = {
        "default_tolerance": "auto",
        "tolerance_rule": "per case: clamp(t_0.99 x predictive sd of a new run, 3 %, 10 %) from the baseline's spread",
        "tolerance_floor": DEFAULT_PARAMS.floor,
        "injected_units": "wall time (injected_cycles: time x SM clock)",
        "sensitivity": validation,
        "gated_runs": {"runs": 0, "failed": 0},  # filled in by the false_alarms stage
        "device": info.name,
        "command": "bash benchmarks/gpu_session.sh sensitivity",
    }
    path = arguments.out / "gate-validation.json"
    if path.exists():  # keep what the false_alarms stage wrote
        document["gated_runs"] = json.loads(path.read_text(encoding="utf-8")).get("gated_runs", document["gated_runs"])
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    with gzip.open(arguments.out / "sensitivity-samples.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(samples, handle)
    lines = [
        f"# Gate sensitivity on {info.name}\n",
        f"{arguments.trials} trials per row, the rows interleaved; each trial judged by the gate (first measurement, "
        "cooled-down re-measurements of an ambiguous one); the unchanged ratio as the gate decided it, the "
        "delivered slowdowns in wall time (in cycles beside them).\n",
        "| case | baseline | tolerance | unchanged: ratio, false alarms | +5 %: delivered (wall; cycles), caught "
        "| +10 %: delivered (wall; cycles), caught |",
        "|---|---|---|---|---|---|",
    ]
    for case, entry, source, unchanged, caught, first_raw, first_cycles, tau in table:
        cells = [f"x{unchanged:.3f}, {caught[0.0]}/{arguments.trials}"]
        for row in ROWS[1:]:
            wall = _delivered(first_raw, row)
            cycles = f"{_delivered(first_cycles, row) * 100:+.1f} %" if first_cycles[0.0] and first_cycles[row] else "–"
            cells.append(f"{wall * 100:+.1f} %; {cycles}, {caught[row]}/{arguments.trials}")
        lines.append(
            f"| {case.name} | {entry.median_ms:.4g} ms, {entry.runs} runs ({source}) | {tau * 100:.1f} % | {' | '.join(cells)} |"
        )
    (arguments.out / "sensitivity.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
