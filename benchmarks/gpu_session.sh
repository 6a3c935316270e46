#!/usr/bin/env bash
# One GPU-machine session: install flash-attn (from .whl/) and the plugin, then run the named stages.
# Usage (on the device machine, from the repo root): bash benchmarks/gpu_session.sh STAGE...
# Every log and result lands under $OUT (default ./out); at the end everything is packed into one
# archive, $OUT/session-<stages>.tgz (split into 15 MiB parts if larger): a device call brings back at
# most 8 files. Unpack it into docs/results/<gpu>/ (e.g. h200) and run python benchmarks/render_results.py.
#
# What ran on the H200 (docs/results/h200/README.md): `SUITE=tests/suite/test_attention.py bash benchmarks/gpu_session.sh
# record` (three update runs of the kernel suite: about 3-5 min each, so a call of 10 minutes holds two; the third
# ran in the next call with FIRST_RUN=3 RUNS_DIR=<the first two runs' records, carried back>), then `sensitivity`
# (about 8 min). Remember PYTHONPATH=/tmp/site (set by this preamble) for any command run outside this script:
# without it flash-attn is not importable and its backends are "unavailable".
# What ran on the H100 in December 2026 (docs/results/h100/2026-12/README.md), in this order: fa4_lib (two calls),
# then with .whl carried `fa4 study_quick` and `fidelity`; on a second machine fa4_lib again, `cost` (carry .old),
# `gate_live` (four cases, TRIALS=5), `record` of the kernel suite (about 130 s a run), one `gated_suite` cut off by the
# session's device time. The next session (a third H100, GPU-f03b79be): fa4_lib, then
# `SUITE=tests/suite/test_transformers.py RECORD_SECONDS=380 record` (the H100 file's transformers entries) and a
# whole-suite gated_suite cut off by the call's limit with one F, most likely test_inference[varlen-flex-16K] (mapped
# from the -q progress line); the machine was then taken back. Next, in this order: the kernel suite gated on this
# code (`SUITE=tests/suite/test_attention.py RUNS=2 gated_suite`: -v and the deadline name any failure; is it the
# other unit?), `cost`, the whole suite gated five times, gate_live with all eight cases (TRIALS=20
# TRIALS_PER_PROCESS=10 BUDGET_S=520, two calls), the study's other configurations (resumable). The session after
# got one call, on a fifth H100 unit (GPU-e1aaaaaa), without FlashAttention-4: `SUITE=tests/suite/test_attention.py
# RUNS=3 CALL_SECONDS=370 env gated_suite` (docs/results/h100/2026-12/unit-e1aaaaaa/; two runs fitted). The session
# after: `TRIALS=20 TRIALS_PER_PROCESS=10 BUDGET_S=520 CALL_SECONDS=590 env gate_live` on a sixth unit (GPU-a0d7a657,
# carrying only .whl/flash_attn-*-site.tar.xz): record + trials 0-8 (docs/results/h100/2026-12/live-a0d7a657/), then
# `FIRST_TRIAL=9 TRIALS=20 TRIALS_PER_PROCESS=8 BUDGET_S=285 LIVE_BASELINES=<those baselines> env gate_live_cross` on a
# seventh unit (GPU-007cc10a) in a later call, trials 9-13 (docs/results/h100/2026-12/live-cross-007cc10a/): four
# failed starts had left too little device time for more. The gate changed after both calls (the 3 % band after the
# first, the fleet's line on another unit after the second). The session after (five failed starts first) got one
# machine, an eighth unit (GPU-de84f1cb), for two calls kept warm between them, with the current gate: `TRIALS=20
# TRIALS_PER_PROCESS=10 BUDGET_S=520 CALL_SECONDS=590 env gate_live` (record + trials 0-7,
# docs/results/h100/2026-12/live-de84f1cb/), then `SUITE=tests/suite/test_attention.py RUNS=3 CALL_SECONDS=485 env
# gated_suite` (three runs, none failed: docs/results/h100/2026-12/unit-de84f1cb/). The session after got one machine
# after nine failed starts, a ninth unit (GPU-6c21f585), and ran trials 8-19 as below in two calls (the second
# FIRST_TRIAL=19 BUDGET_S=150 CALL_SECONDS=250): docs/results/h100/2026-12/live-cross-6c21f585/ and live-20-trials/.
# They ran from a frozen archive of the code that ran trials 0-7 (LIVE_TREE=.old, carrying .old made by `git archive
# 0a04b37 pyproject.toml pytest_attnperf benchmarks tests/suite tests/conftest.py baselines` with 0a04b37 in
# .old/COMMIT, and .whl/flash_attn-*-site.tar.xz), so all twenty are judged by one gate. The session after got one
# machine after six failed starts, a tenth unit (GPU-6ae8ce14), for two calls kept warm between them:
# `COST_RUNS="before-cold before-warm after-warm" CALL_SECONDS=590 env cost profile` with .old (0a04b37) as "before"
# (docs/results/h100/2026-12/unit-6ae8ce14/; the profiled run is cut off by the call's end: give it a call of its own
# or CALL_SECONDS to spare), then `PYTEST_ADDOPTS=--attnperf-machine-reference=adjacent GATE_VALIDATION_ROUNDING=1
# TRIALS=20 TRIALS_PER_PROCESS=10 BUDGET_S=450 CALL_SECONDS=530 gate_live` (trials 0-5:
# docs/results/h100/2026-12/live-adjacent-6ae8ce14/, judged again by benchmarks/experiments/reference_placement.py).
# The session of 2026-12-08 got no machine (failed starts, then no machine lent). The session after got an eleventh
# unit (GPU-91514054) for four calls kept warm: fa4_lib x2 (carry .fa4a, then .fa4b), then carrying .whl
# `CALL_SECONDS=585 RUNS=3 fa4 env gated_suite` and `FIRST_RUN=3 CALL_SECONDS=470 RUNS=2 gated_suite` (the whole suite
# with FlashAttention-4, four runs: docs/results/h100/2026-12/unit-91514054/; no kernel case failed, five transformers
# steps did, all starved behind the lead's old 5 ms cap, which the lead rule now lifts). The machine was lost before
# a fifth call, and later starts failed. Next, in this order: the transformers suite with the new lead, recorded
# (`SUITE=tests/suite/test_transformers.py RECORD_SECONDS=380 record`: the H100 file's transformers entries, or the
# H200 file's when an H200 comes) then gated on the warm machine (`SUITE=tests/suite/test_transformers.py RUNS=2
# gated_suite`: its between-run spread against unit-91514054's, and each step's lead_overrun_share); the whole suite
# gated five times back to back (fa4_lib x2 first); the adjacent live run afresh with this code
# (`PYTEST_ADDOPTS=--attnperf-machine-reference=adjacent GATE_VALIDATION_ROUNDING=1 TRIALS=20 TRIALS_PER_PROCESS=10
# BUDGET_S=520 CALL_SECONDS=590 gate_live`, then its trials on another unit with gate_live_cross): the +3/+5 % rows
# are now sized by the new injection timing, so the earlier run's trials 6-19 would not be like for like with its
# 0-5; `fa4 cost` with .old; study_parts.
# The GPU proof of the clock-aware gate (issue 15), estimated on one H200 (each call at most 10 minutes):
#   bash benchmarks/gpu_session.sh clockcheck baseline          # ~1 + ~3 min per suite run x 3 (kernels+transformers)
#   bash benchmarks/gpu_session.sh sensitivity                  # 8 cases x 3 rows x 20 trials: ~5-7 min
#   RUNS=10 bash benchmarks/gpu_session.sh false_alarms         # ~45 s per gated run of the kernel suite
#   CALIBRATE_ARGS=--attnperf-seqlens=4K,16K bash benchmarks/gpu_session.sh calibrate fidelity ncu
# Each call starts from an empty $OUT: the baseline stage's baselines/ must be in the repository (commit or
# carry them) before sensitivity, false_alarms and calibrate. SUITE=tests/suite/test_attention.py records the
# kernels only; TRIALS and CASES change the sensitivity study. The cost breakdown needs no GPU: run
# python3 benchmarks/gate_cost.py on the JSON reports of baseline (main job) and false_alarms (kernel suite).
set -uo pipefail
# The call's own end (a device call stops at 600 s): a run still going 30 s before it is interrupted (SIGINT), so
# pytest prints its summary and the plugin writes its JSON report of the finished cases, and the pack still runs.
DEADLINE=$(( $(date +%s) + ${CALL_SECONDS:-570} ))
bounded() {  # bounded COMMAND...: run it, interrupted at the call's deadline
  local left=$(( DEADLINE - $(date +%s) - 30 ))
  if [ "$left" -le 5 ]; then echo "not started (the call's deadline): $*"; return 124; fi
  timeout -s INT -k 20 "$left" "$@"
}
# in_tree TREE COMMAND...: run it from TREE (a frozen copy of older code, .old) with TREE first on the import path: a
# script's own folder comes first otherwise, and the editable install would serve this tree's package to the script
# while only its pytest children ran TREE's. tree_package TREE: which package and commit that gives (for which.txt).
in_tree() {
  local tree=$1
  shift
  (cd "$tree" && export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" && "$@")
}
tree_package() {
  in_tree "$1" python3 -c "import pytest_attnperf; print('the package at', pytest_attnperf.__file__)"
  echo "commit: $(cat "$1/COMMIT" 2>/dev/null || git -C "$1" rev-parse --short HEAD 2>/dev/null)"
}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SUITE=${SUITE:-tests/suite}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# flash-attn 2 as its wheel's contents (15 MiB instead of the 60 MiB wheel: it fits in one call beside FA4's wheels).
if ls .whl/*-site.tar.xz >/dev/null 2>&1; then
  mkdir -p /tmp/site && for archive in .whl/*-site.tar.xz; do tar -xJf "$archive" -C /tmp/site; done
  export PYTHONPATH=/tmp/site
fi
# FlashAttention-4 (flash-attn-4, CuTe DSL): its CUDA 13 library first, in calls of its own (the fa4_lib stage,
# carrying .fa4a, .fa4b in turn), then right after them the wheels of .whl/fa4/ laid over flash-attn 2 (carry
# .whl), which this preamble does whenever they are there. The order matters: flash-attn 2 ships an older
# flash_attn/cute/ that would replace FlashAttention-4's.
if ls .whl/fa4/*.whl >/dev/null 2>&1; then
  if [ -d /tmp/site/nvidia_cutlass_dsl/cu13 ]; then
    mkdir -p /tmp/site && for wheel in .whl/fa4/*.whl; do python3 -m zipfile -e "$wheel" /tmp/site; done
    export PYTHONPATH=/tmp/site:/tmp/site/nvidia_cutlass_dsl/dsl_packages  # what the package's .pth file would add
  else
    echo "FlashAttention-4: /tmp/site/nvidia_cutlass_dsl/cu13 is missing (machine replaced?): run the fa4_lib stage first"
  fi
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }

stage_env() {
  attnperf env 2>&1 | tee "$OUT/env.txt"
}

stage_baseline() {
  # This GPU's baselines from three independent runs of the whole suite (kernels and transformers); each run's
  # JSON keeps every sample's time and SM clock (the three clock-logged runs). Then one gated run against them.
  attnperf update --runs "${BASELINE_RUNS:-3}" -p no:cacheprovider -q "$SUITE" \
    --attnperf-json="$OUT/baseline/update.json" 2>&1 | grep -v "^DEBUG" | tail -80 | tee "$OUT/baseline/update.log"
  cp baselines/*.yaml "$OUT/baseline/"
  start=$(date +%s.%N)
  pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -q "$SUITE" \
    --attnperf-json="$OUT/baseline/suite-gate.json" --junitxml="$OUT/baseline/suite-gate.xml" 2>&1 \
    | grep -v "^DEBUG" | tail -60 | tee "$OUT/baseline/suite-gate.log"
  end=$(date +%s.%N)
  wall=$(python3 -c "print(round($end - $start, 1))")
  echo "gated run of $SUITE: wall $wall s" | tee -a "$OUT/baseline/suite-gate.log"
  python3 benchmarks/gate_cost.py "$OUT/baseline/suite-gate.json" --wall "$wall" | tee "$OUT/baseline/cost.md"
}

stage_record() {
  # `attnperf update --runs N` of $SUITE. Its runs folder (--runs-dir) keeps every finished run, so when the call's
  # time runs out first, a later call on the same machine given the same folder (RUNS_DIR, carried back) carries
  # on from them. RECORD_SECONDS bounds the stage; each run's JSON report is report-run<k>.json.
  local folder=${RUNS_DIR:-$OUT/record/runs}
  mkdir -p "$folder"
  local start=$(date +%s)
  timeout "${RECORD_SECONDS:-540}" attnperf update --runs "${BASELINE_RUNS:-3}" --runs-dir "$folder" \
    -p no:cacheprovider -q -rfE $SUITE --attnperf-json="$OUT/record/report.json" >"$OUT/record/update.log" 2>&1
  echo "update of $SUITE: exit $?, wall $(( $(date +%s) - start )) s, $(tail -1 "$OUT/record/update.log")" \
    | tee -a "$OUT/record/record.txt"
  [ "$folder" = "$OUT/record/runs" ] || cp -a "$folder" "$OUT/record/runs"
  cp baselines/*.yaml "$OUT/record/" 2>/dev/null
  # Kept on the machine (outside the repository, which each call copies afresh) for the gated_suite stage of a
  # later call on the same warm machine.
  mkdir -p /tmp/attnperf-recorded && cp baselines/*.yaml /tmp/attnperf-recorded/
}

stage_clockcheck() {
  # What the CPU tests cannot see: the SM-0 stamps landing and their cost, the clock vs NVML, the profiler's cost.
  python3 benchmarks/clock_check.py "$OUT/clockcheck" 2>&1 | tee "$OUT/clockcheck/clock-check.log"
}

stage_calibrate() {
  # The smallest slowdown the gate catches in each case, injected as real GPU work; stored in the baselines.
  attnperf calibrate -p no:cacheprovider -q ${CALIBRATE_ARGS:-} tests/suite/test_attention.py 2>&1 | grep -v "^DEBUG" \
    | tail -60 | tee "$OUT/calibrate/calibrate.log"
  cp baselines/*.yaml "$OUT/calibrate/"
}

stage_cost() {
  # The kernel suite gated, before and after the cost work, on this card back to back: before = the code in .old
  # (carry it: `git archive <commit> pyproject.toml pytest_attnperf benchmarks tests/suite tests/conftest.py baselines`,
  # the commit in .old/COMMIT), run from its own tree; after = this code. COST_RUNS lists the runs in order, each
  # <before|after>-<cold|warm>: a cold run empties the compile caches first (--attnperf-cache-dir, one folder for
  # both, so a warm run reuses what the runs before it compiled). Each run's JSON report, log, wall time and cost
  # JSON (benchmarks/gate_cost.py --cost); each is bounded by the call's deadline, so a slow card cuts the last run
  # short rather than losing the call.
  local suite=tests/suite/test_attention.py cache=/tmp/cc-cost runs=${COST_RUNS:-before-cold before-warm after-warm after-cold}
  local run
  for run in $runs; do
    case $run in before-cold|before-warm|after-cold|after-warm) ;; *)
      echo "cost: COST_RUNS holds '$run'; each run is before-cold, before-warm, after-cold or after-warm"; return 2 ;;
    esac
  done
  if [[ " $runs" == *" before-"* ]]; then
    [ -f .old/pyproject.toml ] || { echo "cost: a before run needs the code before in .old (carry it)"; return 2; }
    tree_package .old | sed 's/^/before: /' | tee "$OUT/cost/which.txt"
  fi
  rm -rf "$cache"
  for run in $runs; do
    local tree=. state=${run#*-}
    [ "${run%-*}" = before ] && tree=.old
    [ "$state" = cold ] && rm -rf "$cache"
    local start=$(date +%s.%N)
    # Only --attnperf-cache-dir places the compile caches: an inherited TORCHINDUCTOR_CACHE_DIR would win over it.
    in_tree "$tree" bounded env -u TORCHINDUCTOR_CACHE_DIR -u TRITON_CACHE_DIR python3 -m pytest --attnperf \
      -p no:cacheprovider -q -rfE $suite --attnperf-cache-dir="$cache" --attnperf-json="$OUT/cost/$run.json" \
      >"$OUT/cost/$run.log" 2>&1
    local status=$? wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
    # exit 2 or more: interrupted at the call's deadline (its report holds only the cases that finished) or not run
    echo "$run: exit $status, wall $wall s, $(tail -1 "$OUT/cost/$run.log")" | tee -a "$OUT/cost/walls.txt"
    if [ "$status" -le 1 ] && [ -s "$OUT/cost/$run.json" ]; then
      python3 benchmarks/gate_cost.py "$OUT/cost/$run.json" --wall "$wall" --cache "$state" \
        --cost "$OUT/cost/cost-$run.json" >>"$OUT/cost/cost.md" 2>&1
    fi
  done
}

stage_profile() {
  # A gated run of the kernel suite under cProfile, on the compile caches the cost stage's runs left (warm after
  # them): which code holds each phase's host time. The profiler slows Python-heavy steps, so the wall times come
  # from the cost stage; this says where inside them. benchmarks/experiments/profile_summary.py writes summary.md.
  local suite=tests/suite/test_attention.py state=cold
  [ -d /tmp/cc-cost ] && state=warm
  local start=$(date +%s.%N)
  (unset TORCHINDUCTOR_CACHE_DIR TRITON_CACHE_DIR
   bounded python3 -m cProfile -o "$OUT/profile/run.prof" -m pytest --attnperf -p no:cacheprovider -q $suite \
    --attnperf-cache-dir=/tmp/cc-cost --attnperf-json="$OUT/profile/run.json" >"$OUT/profile/run.log" 2>&1)
  echo "profiled run: wall $(python3 -c "import time; print(round(time.time() - $start, 1))") s, cache $state," \
    "$(tail -1 "$OUT/profile/run.log")" | tee "$OUT/profile/profile.txt"
  python3 benchmarks/experiments/profile_summary.py "$OUT/profile/run.prof" --top 60 >"$OUT/profile/summary.md" 2>&1
}

stage_main() {
  # The main job of the README: the whole suite (attention and transformers) gated against the committed baselines.
  # docs/results/h100/main-job.log predates this stage: it was run by hand with the same pytest command.
  start=$(date +%s.%N)
  pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -q --attnperf-json="$OUT/main-job.json" \
    >"$OUT/main-job.log" 2>&1
  status=$?
  end=$(date +%s.%N)
  echo "exit $status wall $(python3 -c "print(round($end - $start))") s" | tee -a "$OUT/main-job.log"
}

stage_slowdown() {
  # The same sdpa-flash kernel plus a sleep kernel of known length must fail its latency gate.
  ATTNPERF_SLOWDOWN="sdpa-flash=${SLOWDOWN:-200us}" pytest --attnperf --attnperf-backends=sdpa-flash \
    -p no:cacheprovider -q tests/suite 2>&1 | tee "$OUT/slowdown.log"
  echo "slowdown run exit status: ${PIPESTATUS[0]}" | tee -a "$OUT/slowdown.log"
}

stage_study() {
  # The FlashAttention study: every config x backend x 1K..32K, the frontier, plots.
  attnperf report --out "$OUT/study" 2>&1 | tee "$OUT/study.log"
  (cd "$OUT" && tar czf study.tgz study && rm -rf study)
}

stage_study_quick() {
  # The study's first configuration (fp16 causal d128: every backend, FlashAttention-4 among the "on" ones, 1K-32K, the
  # bisected frontier), then its decode section, each bounded so that one call holds both and what finished comes back.
  timeout "${PREFILL_SECONDS:-330}" attnperf report --quick --only prefill --out "$OUT/study_quick/prefill" 2>&1 \
    | tail -40 > "$OUT/study_quick/prefill.log"
  echo "prefill study exit ${PIPESTATUS[0]}" | tee -a "$OUT/study_quick/prefill.log"
  timeout "${DECODE_SECONDS:-200}" attnperf report --only decode --out "$OUT/study_quick/decode" 2>&1 \
    | tail -40 > "$OUT/study_quick/decode.log"
  echo "decode study exit ${PIPESTATUS[0]}" | tee -a "$OUT/study_quick/decode.log"
}

stage_study_parts() {
  # The whole study (every prefill configuration and the decode section) over as many calls as it takes: each
  # configuration is saved to study.json as it finishes, and a later call given that folder (STUDY_FROM, carried back;
  # after the fa4 install, so the versions match) measures only what is missing. Exit 124: cut off, parts kept;
  # 2: refused (the log says why).
  mkdir -p "$OUT/study"
  if [ -n "${STUDY_FROM:-}" ] && [ -f "$STUDY_FROM/study.json" ]; then cp -a "$STUDY_FROM/." "$OUT/study/"; fi
  bounded attnperf report --out "$OUT/study" ${STUDY_ARGS:-} >"$OUT/study_parts/study-$(date +%H%M%S).log" 2>&1
  echo "study exit $?"
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("complete" if d["complete"] else "missing: " + ", ".join(map(str, d["missing"])))' \
    "$OUT/study/study.json" | tee -a "$OUT/study_parts/status.txt"
}

stage_fidelity() {
  timeout "${FIDELITY_SECONDS:-600}" python3 benchmarks/experiments/fidelity.py 2>&1 | tee "$OUT/fidelity.md"
}

stage_sensitivity() {
  # Real injected GPU work (+5 %, +10 %, measured as delivered) against the baseline stage's baselines; writes
  # gate-validation.json (issue 15's form), sensitivity.md and every sample's time and clock.
  python3 benchmarks/sensitivity.py --out "$OUT/sensitivity" 2>&1 | tee "$OUT/sensitivity/sensitivity.log"
}

stage_false_alarms() {
  # Back-to-back gated runs of the kernel suite on an unchanged build: every failure is a false alarm.
  mkdir -p "$OUT/runs"
  walls=""
  for run in $(seq 1 "${RUNS:-10}"); do
    start=$(date +%s.%N)
    pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -q tests/suite/test_attention.py \
      --attnperf-json="$OUT/runs/gate-run-$run.json" >"$OUT/runs/gate-run-$run.log" 2>&1
    status=$?
    end=$(date +%s.%N)
    wall=$(python3 -c "print(round($end - $start, 1))")
    walls="$walls $wall"
    echo "run $run: exit $status, wall $wall s, $(tail -1 "$OUT/runs/gate-run-$run.log")" | tee -a "$OUT/false-alarms.txt"
  done
  reports=$(for run in $(seq 1 "${RUNS:-10}"); do echo "$OUT/runs/gate-run-$run.json"; done)
  python3 benchmarks/gate_cost.py $reports --wall $walls | tee -a "$OUT/false-alarms.txt"
  # the gated-runs part of gate-validation.json: merged into the sensitivity stage's file when it ran in this
  # call, else a file of its own to merge with it (the sensitivity stage keeps a gated_runs it finds)
  python3 - "$OUT" <<'PY'
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
runs = re.findall(r"^run \d+: exit (\d+)", (out / "false-alarms.txt").read_text(), flags=re.M)
path = out / "sensitivity" / "gate-validation.json"
path.parent.mkdir(parents=True, exist_ok=True)
document = json.loads(path.read_text()) if path.exists() else {}
document["gated_runs"] = {"runs": len(runs), "failed": sum(code != "0" for code in runs)}
path.write_text(json.dumps(document, indent=1) + "\n")
print("gated runs:", document["gated_runs"])
PY
}

stage_gated_suite() {
  # RUNS back-to-back gated runs of $SUITE against the committed baselines, or against what a record stage of an
  # earlier call on this machine recorded (/tmp/attnperf-recorded); on another unit of the same model they are the
  # cross-card runs. Every failure is a false alarm. Each run's JSON, log and cost.json (benchmarks/gate_cost.py
  # --cost); the compile caches in CACHE_DIR, cold if it is empty.
  # FIRST_RUN numbers the runs on from an earlier call.
  local cache=${CACHE_DIR:-/tmp/cc-after}
  if ls /tmp/attnperf-recorded/*.yaml >/dev/null 2>&1; then
    cp /tmp/attnperf-recorded/*.yaml baselines/ && echo "baselines from this machine's record stage" \
      | tee -a "$OUT/gated_suite/gated.txt"
  fi
  nvidia-smi --query-gpu=name,uuid --format=csv,noheader | tee -a "$OUT/gated_suite/gated.txt"
  local first=${FIRST_RUN:-1}
  for run in $(seq "$first" $(( first + ${RUNS:-5} - 1 ))); do
    local state=warm
    [ -d "$cache" ] || state=cold
    local start=$(date +%s.%N)
    bounded pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -v -rfE $SUITE --attnperf-cache-dir="$cache" \
      --attnperf-json="$OUT/gated_suite/gated-$run.json" >"$OUT/gated_suite/gated-$run.log" 2>&1
    local status=$? wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
    echo "run $run: exit $status, wall $wall s, cache $state, $(tail -1 "$OUT/gated_suite/gated-$run.log")" \
      | tee -a "$OUT/gated_suite/gated.txt"
    python3 benchmarks/gate_cost.py "$OUT/gated_suite/gated-$run.json" --wall "$wall" --cache "$state" \
      --cost "$OUT/gated_suite/cost-$run.json" >>"$OUT/gated_suite/cost.md" 2>&1
  done
}

stage_gate_live() {
  # The gate validated live through pytest --attnperf (benchmarks/gate_validation_live.py): record the cases'
  # baselines (unchanged; power-heavier on inputs rounded to k bits), then TRIALS interleaved gated trials of the
  # rows unchanged, +3 %, +5 % and power-heavier. GATE_VALIDATION_CASES narrows the cases, BUDGET_S bounds the trials.
  python3 benchmarks/gate_validation_live.py all --out "$OUT/gate_live" 2>&1 | tail -60 | tee "$OUT/gate_live/live.log"
}

stage_gate_live_cross() {
  # The same trials on another machine against the baselines a gate_live stage recorded (LIVE_BASELINES, carried),
  # run from LIVE_TREE (default: this tree): a frozen copy of the code that ran the first trials (carry .old, made by
  # `git archive <commit> pyproject.toml pytest_attnperf benchmarks tests/suite tests/conftest.py baselines`, the
  # commit in .old/COMMIT), so that every trial of a row is judged by one version of the gate.
  local baselines tree=${LIVE_TREE:-.}
  baselines=$(realpath "${LIVE_BASELINES:?}") || return 1
  tree_package "$tree" | tee "$OUT/gate_live_cross/which.txt"
  in_tree "$tree" python3 benchmarks/gate_validation_live.py gate --out "$OUT/gate_live_cross" --baselines "$baselines" \
    2>&1 | tail -60 | tee "$OUT/gate_live_cross/live.log"
}

stage_xdist() {
  # One pytest-xdist worker per GPU: record this model's baselines, then gate with -n 0 and -n 2.
  nvidia-smi -L | tee "$OUT/xdist.txt"
  suite=tests/suite/test_attention.py
  pytest --attnperf --attnperf-update -n 2 -p no:cacheprovider -q $suite 2>&1 | tail -45 | tee -a "$OUT/xdist.txt"
  cp baselines/*.yaml "$OUT/"
  for workers in 0 2; do
    start=$(date +%s.%N)
    pytest --attnperf --attnperf-missing=fail -n $workers -p no:cacheprovider -q $suite \
      --attnperf-json="$OUT/n$workers.json" >"$OUT/n$workers.log" 2>&1
    status=$?
    end=$(date +%s.%N)
    echo "-n $workers: exit $status, wall $(python3 -c "print(round($end - $start, 1))") s, $(tail -1 "$OUT/n$workers.log")" \
      | tee -a "$OUT/xdist.txt"
  done
  python3 benchmarks/compare_runs.py "$OUT/n0.json" "$OUT/n2.json" | tee -a "$OUT/xdist.txt"
}

stage_hf() {
  # transformers models per attn_implementation: record their baselines next to the kernels', then gate.
  pytest --attnperf --attnperf-update -p no:cacheprovider -q -rs tests/suite/test_transformers.py 2>&1 \
    | tail -80 | tee "$OUT/hf-update.log"
  cp baselines/*.yaml "$OUT/"
  pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -q tests/suite/test_transformers.py \
    --attnperf-json="$OUT/hf-gate.json" 2>&1 | tail -60 | tee "$OUT/hf-gate.log"
}

stage_faults() {
  python3 benchmarks/gpu_faults.py 2>&1 | tee "$OUT/gpu-faults.md"
}

stage_property() {
  timeout 300 python3 benchmarks/property_gpu.py 2>&1 | tee "$OUT/property-gpu.md"
}

stage_ci() {
  # The commands of examples/ci/github-gpu.yml, as its jobs run them (the install step is the one above).
  export GITHUB_STEP_SUMMARY="$OUT/step-summary.md"
  mkdir -p reports
  { attnperf env; echo "attnperf env exit status: $?"; } 2>&1 | tee "$OUT/ci-env.txt"
  pytest --attnperf --attnperf-missing=fail --junitxml=reports/junit.xml --attnperf-json=reports/attnperf.json \
    --attnperf-report=reports/study >"$OUT/ci-gate.log" 2>&1
  echo "gate exit status: $?" | tee -a "$OUT/ci-gate.log"
  tail -25 "$OUT/ci-gate.log"
  cp reports/junit.xml reports/attnperf.json "$OUT/"
  mkdir -p "$OUT/old-baselines" && cp -a baselines/. "$OUT/old-baselines/"
  attnperf update -q >"$OUT/ci-update.log" 2>&1
  echo "attnperf update exit status: $?" | tee -a "$OUT/ci-update.log"
  slug=$(attnperf env --json | python3 -c "import json, sys; print(json.load(sys.stdin)['device']['slug'])")
  attnperf diff "$OUT/old-baselines/$slug.yaml" "baselines/$slug.yaml" >"$OUT/ci-diff.txt" 2>&1
  head -20 "$OUT/ci-diff.txt"
  rm -rf "$OUT/old-baselines"
}

stage_modes() {
  # CUDA-graph replay and the training modes, at 1K and 4K, against a scratch baselines folder.
  for extra in "--attnperf-cuda-graph=true" "--attnperf-mode=backward" "--attnperf-mode=forward+backward"; do
    echo "=== $extra" | tee -a "$OUT/modes.log"
    pytest --attnperf $extra --attnperf-seqlens=1K,4K --attnperf-baselines=/tmp/scratch-baselines \
      -p no:cacheprovider -q -rs tests/suite/test_attention.py 2>&1 | grep -v "^DEBUG" | tail -22 | tee -a "$OUT/modes.log"
  done
}

stage_ncu() {
  # The plugin's medians against Nsight Compute's kernel durations.
  python3 benchmarks/experiments/ncu_fidelity.py plugin > "$OUT/plugin-medians.json"
  ncu --clock-control none --nvtx --nvtx-include "regex:case-.*/" --metrics gpu__time_duration.sum,sm__cycles_elapsed.max \
    --csv --page raw python3 benchmarks/experiments/ncu_fidelity.py profile > "$OUT/ncu.csv" 2>"$OUT/ncu.err"
  echo "ncu exit status: $?"; tail -3 "$OUT/ncu.err"
  python3 benchmarks/experiments/ncu_fidelity.py compare "$OUT/plugin-medians.json" "$OUT/ncu.csv" | tee "$OUT/ncu-fidelity.md"
}

stage_fa4_lib() {
  # The first calls of the FlashAttention-4 install: the CuTe DSL's CUDA 13 library (about 61 MiB) does not fit one
  # call beside the repository (64 MiB a call, the repository about 25), so it travels in parts (split -b 32M -d of
  # its .tar.xz, or smaller parts should the repository grow), one carry folder each (.fa4a, .fa4b, ...), each
  # holding its part and PARTS (how many there are), in calls right after each other (files outside $OUT last only
  # while the machine is warm); the call that has them all unpacks them.
  mkdir -p /tmp/fa4parts /tmp/site
  cp .fa4*/* /tmp/fa4parts/ 2>/dev/null
  local want missing="" part parts=()
  want=$(tr -d '[:space:]' < /tmp/fa4parts/PARTS 2>/dev/null || echo 2)
  if ! [[ $want =~ ^[1-9][0-9]*$ ]]; then
    echo "FlashAttention-4 library: PARTS says '$want', not a count of parts" | tee "$OUT/fa4_lib/fa4-lib.txt"
    return 1
  fi
  for part in $(seq -f "cu13part%02g" 0 $((want - 1))); do  # split -d names its parts 00, 01, ...
    parts+=("/tmp/fa4parts/$part")
    [ -s "/tmp/fa4parts/$part" ] || missing="$missing $part"
  done
  if [ -n "$missing" ]; then
    echo "FlashAttention-4 library: missing$missing of $want parts" | tee "$OUT/fa4_lib/fa4-lib.txt"
  elif rm -rf /tmp/fa4unpack && mkdir /tmp/fa4unpack && cat "${parts[@]}" | tar -xJ -C /tmp/fa4unpack; then
    # Unpacked aside, then laid into the site folder whole: a torn archive never leaves half a library there.
    if cp -a /tmp/fa4unpack/. /tmp/site/; then
      rm -rf /tmp/fa4parts /tmp/fa4unpack
      ls /tmp/site/nvidia_cutlass_dsl | tee "$OUT/fa4_lib/fa4-lib.txt"
    else
      echo "FlashAttention-4 library: unpacked, but not copied into /tmp/site" | tee "$OUT/fa4_lib/fa4-lib.txt"
    fi
  else
    rm -rf /tmp/fa4unpack
    echo "FlashAttention-4 library: the $want parts did not unpack (a part damaged in transit?)" \
      | tee "$OUT/fa4_lib/fa4-lib.txt"
  fi
}

stage_fa4() {
  # Call 2: is FlashAttention-4 importable, and does the backend run (attnperf env probes every backend)?
  python3 -c "from flash_attn.cute import flash_attn_func, flash_attn_varlen_func; print('FA4 importable')" 2>&1 \
    | tee "$OUT/fa4/fa4.txt"
  attnperf env 2>&1 | tee -a "$OUT/fa4/fa4.txt"
}

stage_inference() {
  # Every workload x backend of the suite's test_inference (decode, paged, varlen, chunked) at 1K-32K, recorded into
  # a baselines folder under $OUT (the repo's baselines/ are left alone), with its JSON, JUnit and log.
  pytest --attnperf --attnperf-update --attnperf-baselines="$OUT/baselines" -p no:cacheprovider -q -rs \
    tests/suite/test_attention.py::test_inference --attnperf-json="$OUT/inference.json" \
    --junitxml="$OUT/inference.xml" 2>&1 | grep -v "^DEBUG" | tail -120 | tee "$OUT/inference.log"
  echo "inference run exit status: ${PIPESTATUS[0]}" | tee -a "$OUT/inference.log"
}

stage_decode_study() {
  # The study's decode section alone: one Llama-3-8B layer, decode and paged decode at batch 1 and 16, KV length 1K to
  # 128K, every backend that decodes, GB/s against the measured copy bandwidth, and the KV cache frontier.
  attnperf report --only decode --out "$OUT/decode-study" 2>&1 | tee "$OUT/decode-study.log"
  (cd "$OUT" && tar czf decode-study.tgz decode-study && rm -rf decode-study)
}

pack() {
  # A device call brings back at most 8 files of at most 16 MiB: everything goes into one archive.
  local name="session-$(IFS=-; echo "$*")"
  (cd "$OUT" && tar czf "/tmp/$name.tgz" --exclude="session-*" . && find . -mindepth 1 -maxdepth 1 ! -name "session-*" -exec rm -rf {} + \
    && mv "/tmp/$name.tgz" .)
  if [ "$(stat -c %s "$OUT/$name.tgz")" -gt 15728640 ]; then
    (cd "$OUT" && split -b 15M -d "$name.tgz" "$name.tgz.part" && rm "$name.tgz")
  fi
  ls -la "$OUT"
}

for stage in "$@"; do
  echo "=== stage $stage ($(date -u +%H:%M:%S))"
  mkdir -p "$OUT/$stage"
  "stage_$stage"
  rmdir "$OUT/$stage" 2>/dev/null || true
done
[ "${PACK:-1}" = 1 ] && pack "$@"
