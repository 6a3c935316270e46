"""The table of region kinds: NAME of <!-- results:NAME FOLDER --> -> its function, files and parser."""

from __future__ import annotations

from render import cpu, gate, session, study, suite, timing
from render.source import Kind, first_table

# How a stage is run when it needs more than `bash benchmarks/gpu_session.sh STAGE`; some are CPU scripts.
STAGE_COMMANDS = {
    "false_alarms": "RUNS=10 bash benchmarks/gpu_session.sh false_alarms",
    "simulation": "python benchmarks/experiments/gate_simulation.py --out docs/results/simulation",
    "record": "SUITE=tests/suite/test_attention.py bash benchmarks/gpu_session.sh record",
    "gate_validation_live": "python benchmarks/gate_validation_live.py all --out $OUT",
    # What ran on the H100 in December 2026 (docs/results/h100/2026-12/README.md), each in one call:
    "record_h100": 'SUITE="--attnperf-cache-dir=/tmp/cc-after tests/suite/test_attention.py" '
    "bash benchmarks/gpu_session.sh record",
    "record_h100_transformers": "SUITE=tests/suite/test_transformers.py RECORD_SECONDS=380 bash benchmarks/gpu_session.sh record",
    "gate_live_h100": "GATE_VALIDATION_CASES=flash-attn-32K,sdpa-cudnn-16K,sdpa-flash-4K,decode-flash-attn-16K "
    "TRIALS=5 BUDGET_S=230 bash benchmarks/gpu_session.sh gate_live",
    "gated_suite_h100": "SUITE=tests/suite/test_attention.py RUNS=3 CALL_SECONDS=370 bash benchmarks/gpu_session.sh env "
    "gated_suite",
    "gate_live_h100_all": "TRIALS=20 TRIALS_PER_PROCESS=10 BUDGET_S=520 CALL_SECONDS=590 bash benchmarks/gpu_session.sh env "
    "gate_live",
    "gate_live_cross_h100": "FIRST_TRIAL=9 TRIALS=20 TRIALS_PER_PROCESS=8 BUDGET_S=285 "
    "LIVE_BASELINES=docs/results/h100/2026-12/live-a0d7a657/baselines bash benchmarks/gpu_session.sh env gate_live_cross",
    # The eighth unit (GPU-de84f1cb), its machine kept warm between the two calls: gate_live as gate_live_h100_all,
    # then the kernel suite gated against the committed baselines (recorded on the third unit)
    "gated_suite_h100_de84f1cb": "SUITE=tests/suite/test_attention.py RUNS=3 CALL_SECONDS=485 bash benchmarks/gpu_session.sh "
    "env gated_suite",
    # Trials 8-19 of that gate on a ninth unit (GPU-6c21f585), from a frozen archive of its code (.old at 0a04b37), in
    # two calls on one machine (the second FIRST_TRIAL=19 BUDGET_S=150), then the twenty summarised together
    "gate_live_h100_20": "LIVE_TREE=.old FIRST_TRIAL=8 TRIALS=20 TRIALS_PER_PROCESS=10 BUDGET_S=520 CALL_SECONDS=590 "
    "LIVE_BASELINES=docs/results/h100/2026-12/live-de84f1cb/baselines bash benchmarks/gpu_session.sh env gate_live_cross, "
    "then python benchmarks/gate_validation_live.py summarise --out docs/results/h100/2026-12/live-20-trials "
    "docs/results/h100/2026-12/live-de84f1cb docs/results/h100/2026-12/live-cross-6c21f585",
    # A tenth unit (GPU-6ae8ce14), two calls on one machine: the cost stage with .old = the code at 0a04b37 as
    # "before", then the live validation with adjacent machine-reference readings
    "cost_h100_6ae8ce14": 'COST_RUNS="before-cold before-warm after-warm" CALL_SECONDS=590 bash benchmarks/gpu_session.sh '
    "env cost profile",
    "gate_live_h100_adjacent": "PYTEST_ADDOPTS=--attnperf-machine-reference=adjacent GATE_VALIDATION_ROUNDING=1 "
    "TRIALS=20 TRIALS_PER_PROCESS=10 BUDGET_S=450 CALL_SECONDS=530 bash benchmarks/gpu_session.sh gate_live",
    "live_drift": "python benchmarks/experiments/live_drift.py docs/results/h100/2026-12/live-de84f1cb "
    "> docs/results/h100/2026-12/live-de84f1cb/drift.md",
    "rejudge": "python benchmarks/experiments/rejudge_sensitivity.py docs/results/h200 --baselines docs/results/h200/record/nvidia-h200.yaml",
    "gated": "pytest --attnperf --attnperf-missing=fail -q tests/suite/test_attention.py::test_forward",
    "hostile": "python benchmarks/hostile_probe.py --jobs 2 --out docs/results/cpu/hostile-probe.md",
    "load_tax": "python benchmarks/load_tax.py --runs 21 --baseline baselines/nvidia-h200.yaml",
    "foreign_suite": "python benchmarks/foreign_suite.py --runs 3",
    "memory_repeat": "python benchmarks/experiments/cpu_memory_repeat.py --runs 20 --tests tests/suite/test_attention.py",
    "cpu_history": "python benchmarks/history_runs.py --runs 6 --out docs/results/cpu/history",
    "gate_cost": "pytest --attnperf tests/suite/test_attention.py --attnperf-json=cost/RUN.json, then "
    "python benchmarks/gate_cost.py cost/RUN.json --cost cost/cost-RUN.json",
    # An eleventh unit (GPU-91514054), after fa4_lib in two calls, the whole suite with FlashAttention-4 in two calls
    "gated_suite_h100_91514054": "CALL_SECONDS=585 RUNS=3 bash benchmarks/gpu_session.sh fa4 env gated_suite, then "
    "FIRST_RUN=3 CALL_SECONDS=470 RUNS=2 bash benchmarks/gpu_session.sh gated_suite on the warm machine",
    "starved_lead": "python benchmarks/experiments/starved_lead.py docs/results/h100/2026-12/unit-91514054/gated_suite",
}


def command(stage: str) -> str:
    """The command line of a stage: its STAGE_COMMANDS line, else the gpu_session.sh stage of that name."""
    return STAGE_COMMANDS.get(stage, f"bash benchmarks/gpu_session.sh {stage}")


STUDY = {"study.json": "study"}
RECORDED_BASELINES = {"record/nvidia-h200.yaml": "record", "record/nvidia-h100-80gb-hbm3.yaml": "record"}
RECORDED_REPORT = {"record/report-run3.json.gz": "record"}
VALIDATION = {
    "gate-validation.json": "sensitivity",
    "gate-validation-rejudged.json": "rejudge",
    "gate-validation-live.json": "gate_validation_live",
}

# NAME of <!-- results:NAME FOLDER --> -> what it reads (the first file is parsed and handed to its function).
KINDS: dict[str, Kind] = {
    "study-answer": Kind(study.answer, STUDY),
    "study-frontier": Kind(study.frontier, {**STUDY, "ci/ci-gate.log": "ci"}),
    "transformers-table": Kind(study.transformers_table, {**STUDY, "hf-gate.json": "hf"}),
    "fidelity-summary": Kind(timing.fidelity_summary, {"fidelity.md": "fidelity"}, timing.fidelity_rows),
    "fidelity": Kind(timing.fidelity, {"fidelity.md": "fidelity", **STUDY}, timing.fidelity_rows),
    "ncu": Kind(timing.ncu, {"ncu-fidelity.md": "ncu"}, timing.ncu_rows),
    "modes": Kind(timing.modes, {"modes.log": "modes"}, timing.modes_sections),
    "graph-vs-ncu": Kind(timing.graph_vs_ncu, {"ncu-fidelity.md": "ncu", "modes.log": "modes"}, timing.ncu_rows),
    "false-alarms": Kind(gate.false_alarms, {"false-alarms.txt": "false_alarms"}, gate.false_alarm_runs),
    "cost": Kind(gate.cost, {"false-alarms.txt": "false_alarms"}, gate.false_alarm_runs),
    "sensitivity": Kind(gate.sensitivity, {"sensitivity.md": "sensitivity"}, first_table),
    "gate-simulation": Kind(gate.simulation, {"gate-simulation.json": "simulation"}),
    "gate-validation": Kind(gate.validation, VALIDATION, option="file"),
    "gate-cost": Kind(
        gate.gate_cost, {f"cost/cost-{run}-{cache}.json": "gate_cost" for run, cache in gate.COST_RUNS}, gate.cost_rows
    ),
    "suite-prefill": Kind(suite.prefill, RECORDED_BASELINES, option="baseline"),
    "suite-frontier": Kind(suite.frontier, RECORDED_BASELINES, option="baseline"),
    "suite-decode": Kind(suite.decode, RECORDED_REPORT, option="report"),
    "suite-transformers": Kind(suite.transformers, RECORDED_BASELINES, option="baseline"),
    "h200-record": Kind(suite.record, {"record/record.txt": "record", **RECORDED_REPORT}),
    "live-drift": Kind(gate.live_drift, {"drift.md": "live_drift"}, first_table),
    "starved-lead": Kind(gate.starved_lead, {"starved-lead.md": "starved_lead"}, first_table),
    "gated-suite": Kind(
        gate.gated_suite,
        {
            "gated_suite/gated.txt": "gated_suite_h100",
            **{f"gated_suite/cost-{run}.json": "gated_suite_h100" for run in range(1, 11)},
        },
        gate.gated_suite_runs,
    ),
    "gated-runs": Kind(suite.gated_runs, {f"gated/gate-forward-{run}.log": "gated" for run in (1, 2)}),
    "load-tax": Kind(cpu.load_tax, {"load-tax.txt": "load_tax"}),
    "foreign-suite": Kind(cpu.foreign_suite, {"foreign-suite.md": "foreign_suite"}, first_table),
    "memory-repeat": Kind(cpu.memory_repeat, {"memory-repeat.md": "memory_repeat"}),
    "hostile-probe": Kind(cpu.hostile_probe, {"hostile-probe.md": "hostile"}),
    "hostile-probe-families": Kind(cpu.hostile_probe_families, {"hostile-probe.md": "hostile"}),
    "history": Kind(cpu.history, {"history/": "cpu_history", "history": "history"}, cpu.history_reports),
    "main-job": Kind(session.main_job, {"main-job.log": "main"}),
    "xdist": Kind(session.xdist, {"xdist.txt": "xdist"}),
    "gpu-faults": Kind(session.gpu_faults, {"gpu-faults.md": "faults"}),
    "property-gpu": Kind(session.property_gpu, {"property-gpu.md": "property"}),
}

# The H200's names of the suite's kinds, from before other cards recorded baselines too.
KINDS.update({f"h200-{name}": KINDS[f"suite-{name}"] for name in ("prefill", "frontier", "decode")})
