"""What a run cost: the report's cost block, the compile cache folder, and gate_cost.py's cost.json from them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from benchmark_scripts import load_script
from fast_run import FAST_OPTIONS

from pytest_attnperf.session.cost import RunCost, compile_cache_state, process_started_at, use_compile_cache

MEASURING_TEST = """
    import os

    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
        print("INDUCTOR=" + os.environ.get("TORCHINDUCTOR_CACHE_DIR", "unset"))
"""


def test_the_compile_cache_goes_into_the_folder_unless_the_user_chose_one(tmp_path: Path) -> None:
    environ = {"TRITON_CACHE_DIR": "/mine/triton"}
    chosen = use_compile_cache(tmp_path, environ)
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    assert environ["TRITON_CACHE_DIR"] == "/mine/triton"  # never overridden
    assert chosen["inductor"] == {"dir": str(tmp_path / "inductor"), "set_by": "--attnperf-cache-dir"}
    assert chosen["triton"] == {"dir": "/mine/triton", "set_by": "$TRITON_CACHE_DIR"}
    # FlashAttention-4's CuTe DSL cache is off unless switched on: switched on, in the folder
    assert environ["FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"] == "1"
    assert environ["FLASH_ATTENTION_CUTE_DSL_CACHE_DIR"] == str(tmp_path / "flash_attn_cute")
    assert (tmp_path / "flash_attn_cute").is_dir()


def test_a_flash_attention_4_cache_the_user_switched_off_stays_off(tmp_path: Path) -> None:
    environ = {"FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED": "0"}
    chosen = use_compile_cache(tmp_path, environ)
    assert environ == {
        "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED": "0",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "TRITON_CACHE_DIR": str(tmp_path / "triton"),
    }
    assert chosen["flash_attn_cute"] == {
        "dir": None, "set_by": "$FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", "enabled": False
    }  # fmt: skip


def test_warm_means_every_compiled_graph_came_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._dynamo.utils import counters

    monkeypatch.setitem(counters, "inductor", {"fxgraph_cache_hit": 3})
    assert compile_cache_state() == {"state": "warm", "graph_hits": 3, "graph_misses": 0}
    monkeypatch.setitem(counters, "inductor", {"fxgraph_cache_hit": 3, "fxgraph_cache_miss": 1})
    assert compile_cache_state()["state"] == "mixed"
    monkeypatch.setitem(counters, "inductor", {"fxgraph_cache_miss": 2})
    assert compile_cache_state()["state"] == "cold"
    monkeypatch.setitem(counters, "inductor", {})
    assert compile_cache_state()["state"] == "unused"


def test_a_tests_span_runs_from_its_setup_to_its_teardown() -> None:
    cost = RunCost()
    for when, start, stop in [("setup", 10.0, 10.5), ("call", 10.5, 12.0), ("teardown", 12.0, 12.1)]:
        cost.note(when, start, stop)
    cost.note("setup", 13.0, 13.2)
    cost.note("teardown", 13.2, 13.3)
    record = cost.record()
    assert (record["first_test_at"], record["last_test_at"], record["tests"]) == (10.0, 13.3, 2)
    assert record["tests_s"] == pytest.approx(2.1 + 0.3)
    assert record["setup_s"] == pytest.approx(0.5 + 0.2)  # the fixtures, apart from the calls
    assert record["teardown_s"] == pytest.approx(0.1 + 0.1)
    started = process_started_at()
    if sys.platform == "linux":
        assert started is not None
        assert started <= record["plugin_loaded_at"] <= record["finished_at"]


def test_a_run_reports_its_cost_and_gate_cost_accounts_for_all_of_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):  # torch sets the first once it compiles here
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("FLASH_ATTENTION_CUTE_DSL_CACHE_DIR", raising=False)
    monkeypatch.delenv("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", raising=False)
    pytester.makepyfile(test_cost=MEASURING_TEST)
    cache, report = pytester.path / "compile-cache", pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "--attnperf", *FAST_OPTIONS, f"--attnperf-cache-dir={cache}", f"--attnperf-json={report}", "-s"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*INDUCTOR={cache / 'inductor'}*"])
    document = json.loads(report.read_text(encoding="utf-8"))
    block = document["cost"]
    assert block["plugin_loaded_at"] <= block["first_test_at"] <= block["last_test_at"] <= block["finished_at"]
    # start-up's split: the session's start (torch, the device, the baselines), then collection
    assert block["plugin_loaded_at"] <= block["session_start_at"] <= block["session_ready_at"] <= block["collected_at"]
    assert block["collected_at"] <= block["first_test_at"]
    assert block["tests"] == 1
    assert block["compile_cache"]["dir"] == str(cache)
    assert block["compile_cache"]["state"] == "unused"  # eager compiles nothing
    phases = document["results"][0]["phases_ms"]
    assert {"first_call", "peak_call", "warmup", "sampling", "timing_other"} <= phases.keys()
    cost = load_script("gate_cost").cost_record(document)
    assert cost["cases"] == 1
    assert cost["cache"] == "warm"
    parts = cost["startup_s"] + sum(cost["phases_s"].values())
    assert parts == pytest.approx(cost["wall_s"], abs=0.01)  # nothing estimated: the parts add up
    assert cost["phases_s"]["tests_other"] >= 0
    assert cost["sampled_kernel_s"] == pytest.approx(sum(document["results"][0]["samples_ms"]) / 1e3, abs=1e-3)


def test_without_attnperf_the_compile_cache_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import os

        def test_plain():
            print("INDUCTOR=" + os.environ.get("TORCHINDUCTOR_CACHE_DIR", "unset"))
        """
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*INDUCTOR=unset*"])


LATENCY_TEST = """
    import pytest

    # gated (so the fingerprint can matter), wide enough that a loaded CI host does not fail it: the subject here is
    # when the profiler runs, not the CPU's latency
    @pytest.mark.attnperf_latency(tolerance="1000%")
    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


@pytest.mark.slow  # a subprocess run of many seconds: the slow part of CI
def test_the_fingerprint_is_profiled_only_where_it_can_change_the_verdict(pytester: pytest.Pytester) -> None:
    """No baseline: nothing to compare, no profiler. An update records it; a gate against a baseline that has
    one profiles again, to compare."""
    pytester.makepyfile(test_fp=LATENCY_TEST)
    report = pytester.path / "report.json"
    options = ("--attnperf", *FAST_OPTIONS, "--attnperf-fingerprint=warn", f"--attnperf-json={report}")

    def case() -> dict[str, object]:
        result: dict[str, object] = json.loads(report.read_text(encoding="utf-8"))["results"][0]
        return result

    pytester.runpytest_subprocess(*options).assert_outcomes(passed=1)
    assert case()["fingerprint"] is None
    assert "fingerprint" not in case()["phases_ms"]  # type: ignore[operator]
    pytester.runpytest_subprocess(*options, "--attnperf-update").assert_outcomes(passed=1)
    assert case()["fingerprint"]
    (baseline,) = (pytester.path / "baselines").glob("*.yaml")
    assert "fingerprint:" in baseline.read_text(encoding="utf-8")
    # Its latency verdict is not the question: a one-run CPU baseline's median moves when another process takes
    # the second core (x266 seen under a parallel test run), and the profile is taken either way.
    gated = pytester.runpytest_subprocess(*options).parseoutcomes()
    assert gated.get("passed", 0) + gated.get("failed", 0) == 1
    assert case()["fingerprint"]
    assert "fingerprint" in case()["phases_ms"]  # type: ignore[operator]


def test_the_cache_dir_setting_defaults_to_the_users_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_attnperf.spec.settings import resolve_settings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    settings = resolve_settings({"attnperf": True}, {}, rootdir=tmp_path)
    assert settings.compile_cache_dir == tmp_path / "xdg" / "pytest-attnperf"
    given = resolve_settings(
        {"attnperf": True, "attnperf_cache_dir": "ci-cache"}, {}, rootdir=tmp_path, invocation_dir=tmp_path / "here"
    )
    assert given.compile_cache_dir == tmp_path / "here" / "ci-cache"  # relative to where pytest was started
    from_ini = resolve_settings({"attnperf": True}, {"attnperf_cache_dir": "kept"}, rootdir=tmp_path)
    assert from_ini.compile_cache_dir == tmp_path / "kept"


def test_a_cache_dir_that_cannot_be_made_is_refused_up_front(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):  # torch sets the first once it compiles here
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(test_cost=MEASURING_TEST)
    blocker = pytester.path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = pytester.runpytest_subprocess("--attnperf", *FAST_OPTIONS, f"--attnperf-cache-dir={blocker}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--attnperf-cache-dir: cannot create {blocker / 'inductor'}*"])


def test_each_tests_time_outside_its_phases_is_named() -> None:
    document = {
        "cost": {"plugin_loaded_at": 0.0, "first_test_at": 1.0, "finished_at": 10.0, "tests_s": 8.0,
                 "test_s": {"t::a": 5.0, "t::b": 3.0}},
        "results": [{"test_id": "t::a", "verdict": "ok", "phases_ms": {"sampling": 1000.0}, "samples_ms": [1.0]}],
    }  # fmt: skip
    cost = load_script("gate_cost").cost_record(document)
    assert cost["tests_other_top"] == [["t::a", 4.0], ["t::b", 3.0]]
    assert cost["phases_s"]["tests_other"] == 7.0
    assert cost["startup_s"] + sum(cost["phases_s"].values()) == pytest.approx(cost["wall_s"])
    # Since the set-ups and teardowns are recorded, they are named apart; the rest is in the calls.
    document["cost"].update(setup_s=2.5, teardown_s=0.5, test_setup_s={"t::a": 2.0, "t::b": 0.5})
    document["results"][0]["phases_ms"].update(power=500.0, machine_reference=250.0, out_of_memory=250.0)
    cost = load_script("gate_cost").cost_record(document)
    assert (cost["phases_s"]["test_setup"], cost["phases_s"]["test_teardown"]) == (2.5, 0.5)
    assert cost["phases_s"]["power"] == 0.5
    assert cost["phases_s"]["tests_other"] == 3.0  # 8 s of tests - 2 s of phases - 2.5 s set-up - 0.5 s teardown
    assert cost["tests_other_top"] == [["t::b", 2.5], ["t::a", 1.0]]
    assert cost["test_setup_top"] == [["t::a", 2.0], ["t::b", 0.5]]
    assert cost["first_call_by_backend"] == {"-": 0.0}
    document["results"] += [
        {"test_id": "t::c", "backend": "flex", "verdict": "ok", "phases_ms": {"first_call": 1500.0}},
        {"test_id": "t::d", "backend": "flex", "verdict": "ok", "phases_ms": {"first_call": 500.0}},
        {"test_id": "t::e", "backend": "eager", "verdict": "ok", "phases_ms": {"first_call": 20.0}},
    ]
    assert load_script("gate_cost").first_call_by_backend(document) == {"flex": 2.0, "eager": 0.02, "-": 0.0}
    assert cost["startup_s"] + sum(cost["phases_s"].values()) == pytest.approx(cost["wall_s"])


def test_start_up_is_split_at_the_sessions_start_its_end_and_collection() -> None:
    document = {
        "cost": {"process_started_at": 0.25, "plugin_loaded_at": 0.5, "first_test_at": 10.0, "finished_at": 12.0,
                 "tests_s": 2.0, "test_s": {}},
        "results": [],
    }  # fmt: skip
    gate_cost = load_script("gate_cost")
    assert gate_cost.cost_record(document)["startup_split_s"] is None  # a report from before the timestamps
    document["cost"]["collected_at"] = 9.5
    assert gate_cost.cost_record(document)["startup_split_s"] == {"to_collected": 9.25, "collected_to_first_test": 0.5}
    document["cost"].update(session_start_at=1.0, session_ready_at=8.0)
    assert gate_cost.cost_record(document)["startup_split_s"] == {
        "to_session_start": 0.75, "session_start": 7.0, "collection": 1.5, "collected_to_first_test": 0.5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("state", "hits", "misses", "cache"),
    [
        ("cold", 0, 22, "cold"),
        ("warm", 24, 0, "warm"),
        ("mixed", 2, 22, "cold"),  # a cold run hits a few graphs it compiled itself
        ("mixed", 21, 1, "warm"),  # a warm run after a code change compiles the changed graph anew
        ("unused", 0, 0, "warm"),
    ],
)
def test_a_runs_compile_cache_is_warm_or_cold_by_what_it_mostly_found(
    state: str, hits: int, misses: int, cache: str
) -> None:
    block = {"state": state, "graph_hits": hits, "graph_misses": misses}
    assert load_script("gate_cost")._cache_state(block) == cache
