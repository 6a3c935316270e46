"""What a measuring run cost, for its JSON report: when it started, its tests' spans, its compile cache.

Torch-free. With the cases' own phases (``phases_ms``, ``timing_info``) these timestamps account for
the whole wall time, so ``benchmarks/gate_cost.py`` estimates nothing. The compile cache is the folder
where torch.compile (Inductor), Triton and FlashAttention-4's CuTe DSL keep their compiled kernels: by
default one under the user's cache folder, which a CI job can keep between runs, so FlexAttention and
FlashAttention-4 compile once, not on every run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLUGIN_LOADED_AT = time.time()
CACHE_VARIABLES = {
    "inductor": "TORCHINDUCTOR_CACHE_DIR",
    "triton": "TRITON_CACHE_DIR",
    # FlashAttention-4 (flash_attn.cute) compiles each kernel variant with the CuTe DSL in every process (~2 s per
    # workload on the H100); its own on-disk cache is off unless FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1
    # (flash_attn/cute/cache_utils.py, read when flash_attn.cute is imported: after this, in the backend).
    "flash_attn_cute": "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR",
}
SWITCHES = {"flash_attn_cute": "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"}  # a cache that is off unless switched on


def process_started_at() -> float | None:
    """When this process started (Linux: its start tick in /proc after the boot time), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def use_compile_cache(folder: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, Any]:
    """Point Inductor's, Triton's and FlashAttention-4's caches into ``folder`` (before torch compiles anything),
    leaving a variable the user set as it is; what each uses and who chose it."""
    chosen: dict[str, Any] = {"dir": str(folder)}
    for name, variable in CACHE_VARIABLES.items():
        switch = SWITCHES.get(name)
        if switch is not None and environ.get(switch):  # the user said whether they want it: as they said
            chosen[name] = {"dir": environ.get(variable), "set_by": f"${switch}", "enabled": environ[switch] == "1"}
            continue
        if switch is not None:
            environ[switch] = "1"
        if environ.get(variable):
            chosen[name] = {"dir": environ[variable], "set_by": f"${variable}"}
            continue
        try:
            (folder / name).mkdir(parents=True, exist_ok=True)
        except OSError as error:  # now, naming the option, not deep inside the first compile
            raise ValueError(
                f"--attnperf-cache-dir: cannot create {folder / name}: {error.strerror or error}; give a writable "
                f"folder, or set {variable} yourself"
            ) from None
        environ[variable] = str(folder / name)
        chosen[name] = {"dir": environ[variable], "set_by": "--attnperf-cache-dir"}
    return chosen


def compile_cache_state() -> dict[str, Any]:
    """Inductor's on-disk graph cache this run: hits and misses, and whether it was warm (all hits) or cold."""
    dynamo = sys.modules.get("torch._dynamo.utils")
    counters = dynamo.counters["inductor"] if dynamo is not None else {}
    hits, misses = int(counters.get("fxgraph_cache_hit", 0)), int(counters.get("fxgraph_cache_miss", 0))
    state = "unused" if hits + misses == 0 else "warm" if misses == 0 else "cold" if hits == 0 else "mixed"
    return {"state": state, "graph_hits": hits, "graph_misses": misses}


@dataclass
class RunCost:
    """The run's timestamps (seconds since the epoch) and its compile cache, as the JSON report carries them."""

    process_started_at: float | None = field(default_factory=process_started_at)
    plugin_loaded_at: float = PLUGIN_LOADED_AT
    session_start_at: float | None = None  # the session's start (torch, CUDA, spin-up, machine reference) ...
    session_ready_at: float | None = None  # ... and its end, both before collection
    collected_at: float | None = None  # when collection ended
    test_spans: list[tuple[float, float]] = field(default_factory=list)  # each test's setup start, teardown stop
    test_ids: list[str] = field(default_factory=list)
    compile_cache: dict[str, Any] | None = None
    # Seconds in the tests' set-ups (fixtures: inputs, a backend's import, the session's start on the first) and
    # teardowns (the caches freed between modules), so the time in a call outside its case's phases stands alone.
    setup_s: dict[str, float] = field(default_factory=dict)
    teardown_s: float = 0.0
    # Items held for a re-measurement at the session's end: their first runs are never logged (the re-run's reports
    # replace them), so their time is counted here, and the cool-downs before the re-runs beside it.
    held_s: float = 0.0
    cool_down_s: float = 0.0

    def note(self, when: str, start: float, stop: float, test_id: str = "") -> None:
        """A test phase's report (setup, call, teardown): a test's span runs from its setup to its teardown."""
        if when == "setup":
            self.test_spans.append((start, stop))
            self.test_ids.append(test_id)
            self.setup_s[test_id] = self.setup_s.get(test_id, 0.0) + stop - start
        elif self.test_spans:
            first, _ = self.test_spans[-1]
            self.test_spans[-1] = (first, stop)
            if when == "teardown":
                self.teardown_s += stop - start

    def record(self) -> dict[str, Any]:
        spans = self.test_spans
        by_test: dict[str, float] = {}
        for test_id, (start, stop) in zip(self.test_ids, spans, strict=True):  # a re-run test adds its time
            by_test[test_id] = round(by_test.get(test_id, 0.0) + stop - start, 3)
        return {
            "process_started_at": self.process_started_at,
            "plugin_loaded_at": self.plugin_loaded_at,
            "session_start_at": self.session_start_at,
            "session_ready_at": self.session_ready_at,
            "collected_at": self.collected_at,
            "first_test_at": spans[0][0] if spans else None,
            "last_test_at": spans[-1][1] if spans else None,
            "tests_s": round(sum(stop - start for start, stop in spans), 3),
            "tests": len(spans),
            "setup_s": round(sum(self.setup_s.values()), 3),
            "teardown_s": round(self.teardown_s, 3),
            "held_s": round(self.held_s, 3),
            "cool_down_s": round(self.cool_down_s, 3),
            "test_s": by_test,  # each test's wall time, set-up to teardown
            "test_setup_s": {test_id: round(seconds, 3) for test_id, seconds in self.setup_s.items()},
            "finished_at": time.time(),
            "compile_cache": {**(self.compile_cache or {"dir": None}), **compile_cache_state()},
        }
