#!/usr/bin/env bash
# One GPU-machine session: install flash-attn (from .whl/) and the plugin, then run the named stages.
# Usage (on the device machine, from the repo root): bash benchmarks/gpu_session.sh STAGE...
# Every log and result lands under $OUT (default ./out).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# flash-attn 2 as its wheel's contents (15 MiB instead of the 60 MiB wheel: it fits in one call beside FA4's wheels).
if ls .whl/*-site.tar.xz >/dev/null 2>&1; then
  mkdir -p /tmp/site && for archive in .whl/*-site.tar.xz; do tar -xJf "$archive" -C /tmp/site; done
  export PYTHONPATH=/tmp/site
fi
# FlashAttention-4 (flash-attn-4, CuTe DSL), as ../shared/README.md says: its CUDA 13 library first, in a call of its
# own (`bash benchmarks/gpu_session.sh fa4_lib`, carry .fa4lib), then right after it the wheels of .whl/fa4/ merged
# into the same folders (carry .whl), which this preamble does whenever they are there.
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
  # Record the H100 baselines from the suite, then gate against them (must pass).
  pytest --attnperf --attnperf-update -p no:cacheprovider -q tests/suite 2>&1 | tee "$OUT/suite-update.log"
  cp baselines/*.yaml "$OUT/"
  pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -q tests/suite \
    --attnperf-json="$OUT/suite-gate.json" --junitxml="$OUT/suite-gate.xml" 2>&1 | tee "$OUT/suite-gate.log"
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

stage_fidelity() {
  python3 benchmarks/fidelity.py 2>&1 | tee "$OUT/fidelity.md"
}

stage_sensitivity() {
  python3 benchmarks/sensitivity.py 2>&1 | tee "$OUT/sensitivity.md"
}

stage_false_alarms() {
  # Back-to-back gated runs of the whole suite against the committed baseline: every failure is a false alarm.
  for run in $(seq 1 "${RUNS:-10}"); do
    start=$(date +%s.%N)
    pytest --attnperf --attnperf-missing=fail -p no:cacheprovider -q tests/suite/test_attention.py \
      --attnperf-json="$OUT/gate-run-$run.json" >"$OUT/gate-run-$run.log" 2>&1
    status=$?
    end=$(date +%s.%N)
    echo "run $run: exit $status, wall $(python3 -c "print(round($end - $start, 1))") s, $(tail -1 "$OUT/gate-run-$run.log")" \
      | tee -a "$OUT/false-alarms.txt"
  done
  python3 benchmarks/gate_cost.py "$OUT"/gate-run-*.json | tee -a "$OUT/false-alarms.txt"
  mkdir -p "$OUT/runs" && mv "$OUT"/gate-run-* "$OUT/runs/" && (cd "$OUT" && tar czf runs.tgz runs && rm -rf runs)
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
  attnperf diff "$OUT/old-baselines/nvidia-h100-80gb-hbm3.yaml" baselines/nvidia-h100-80gb-hbm3.yaml \
    >"$OUT/ci-diff.txt" 2>&1
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
  python3 benchmarks/ncu_fidelity.py plugin > "$OUT/plugin-medians.json"
  ncu --clock-control none --nvtx --nvtx-include "regex:case-.*/" --metrics gpu__time_duration.sum \
    --csv --page raw python3 benchmarks/ncu_fidelity.py profile > "$OUT/ncu.csv" 2>"$OUT/ncu.err"
  echo "ncu exit status: $?"; tail -3 "$OUT/ncu.err"
  python3 benchmarks/ncu_fidelity.py compare "$OUT/plugin-medians.json" "$OUT/ncu.csv" | tee "$OUT/ncu-fidelity.md"
}

stage_fa4_lib() {
  # Call 1 of the FlashAttention-4 install: the CuTe DSL's CUDA 13 library, carried alone (.fa4lib, about 61 MiB).
  mkdir -p /tmp/site && tar -xJf .fa4lib/nvidia_cutlass_dsl_libs_cu13-4.8.1-site.tar.xz -C /tmp/site && ls /tmp/site \
    | tee "$OUT/fa4-lib.txt"
}

stage_fa4() {
  # Call 2: is FlashAttention-4 importable, and does the backend run (attnperf env probes every backend)?
  python3 -c "from flash_attn.cute import flash_attn_func, flash_attn_varlen_func; print('FA4 importable')" 2>&1 \
    | tee "$OUT/fa4.txt"
  attnperf env 2>&1 | tee -a "$OUT/fa4.txt"
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

for stage in "$@"; do
  echo "=== stage $stage ($(date -u +%H:%M:%S))"
  "stage_$stage"
done
