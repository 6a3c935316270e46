"""Hostile-probe family `oom`: CPU out of memory."""

from __future__ import annotations

from collections.abc import Sequence

from .harness import (
    BASELINE_FILE,
    TEST_ID,
    Outcome,
    Probe,
    baseline_then,
    crash,
    does_not_fit,
    has,
    pytest_argv,
    refuses,
    shell,
)
from .markers import MARKED_TEST
from .measure import CONFTEST

ADDRESS_SPACE_KIB = 3_000_000  # ulimit -v: allocations past ~2.9 GB fail, the machine is never at risk


def capped(argv: Sequence[str]) -> str:
    return f"ulimit -v {ADDRESS_SPACE_KIB}; exec " + shell(argv)


def oom_probes() -> list[Probe]:
    fit = {  # the entry of this very problem (16K tokens): a baseline of another problem would not gate it
        BASELINE_FILE: baseline_then(
            lambda text: text.replace(TEST_ID, "test_a.py::test_fwd[eager-16K]").replace("_len: 64", "_len: 16384")
        )
    }
    return [
        Probe(
            "oom",
            "eager at 16K tokens (2 GiB of scores) under ulimit -v 2.9 GB",
            capped(pytest_argv("--attnperf-seqlens=16384")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "sdpa-math at 16K tokens under ulimit -v 2.9 GB",
            capped(pytest_argv("--attnperf-seqlens=16384", "--attnperf-backends=sdpa-math")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "eager at 16K, --attnperf-mode=backward, under ulimit -v 2.9 GB",
            capped(pytest_argv("--attnperf-seqlens=16384", "--attnperf-mode=backward")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "eager at 16K whose baseline says it fit (must fail: 'no longer fits')",
            capped(pytest_argv("--attnperf-seqlens=16384")),
            fails_no_longer_fits,
            files=fit,
        ),
        # Since round 3 every size has an upper bound (spec/bounds.py): these three are refused before anything is
        # allocated; the two after them reach the allocation within the bounds.
        Probe(
            "oom",
            "--attnperf-seqlens=1000000000 (inputs of 128 GB) under ulimit -v",
            capped(pytest_argv("--attnperf-seqlens=1000000000")),
            refuses(r"--attnperf-seqlens", r"1,000,000,000 is larger than", codes=(4,)),
        ),
        Probe(
            "oom",
            "attnperf_shape(batch=2**20): 8.6 GB of inputs under ulimit -v",
            capped(pytest_argv("test_m.py")),
            refuses(r"test_m", r"batch 1,048,576 is larger than", codes=(2,)),
            files={"test_m.py": MARKED_TEST.format(decorators="@pytest.mark.attnperf_shape(batch=2**20)")},
        ),
        Probe(
            "oom",
            "attnperf_shape(head_dim=2**31): an impossible shape",
            capped(pytest_argv("test_m.py")),
            refuses(r"test_m", r"head_dim 2,147,483,648 is larger than", codes=(2,)),
            files={"test_m.py": MARKED_TEST.format(decorators="@pytest.mark.attnperf_shape(head_dim=2**31)")},
        ),
        Probe(
            "oom",
            "--attnperf-seqlens=33554432 (the bound: inputs of 12 GB) under ulimit -v",
            capped(pytest_argv("--attnperf-seqlens=33554432")),
            does_not_fit,
        ),
        Probe(
            "oom",
            "attnperf_shape(batch=65536, heads=4096, kv_heads=4096, head_dim=4096): every size at its bound",
            capped(pytest_argv("test_m.py")),
            does_not_fit,
            files={
                "test_m.py": MARKED_TEST.format(
                    decorators="@pytest.mark.attnperf_shape(batch=65536, heads=4096, kv_heads=4096, head_dim=4096)"
                )
            },
        ),
        Probe(
            "oom",
            "a registered backend raising Python's MemoryError",
            pytest_argv("--attnperf-backends=memory-error"),
            does_not_fit,
            files={"conftest.py": CONFTEST},
        ),
        Probe(
            "oom",
            "a registered backend raising torch.OutOfMemoryError (control)",
            pytest_argv("--attnperf-backends=torch-oom"),
            does_not_fit,
            files={"conftest.py": CONFTEST},
        ),
        Probe(
            "oom",
            "attnperf report --quick at 16K (eager) under ulimit -v",
            capped(
                [
                    "{attnperf}",
                    "report",
                    "--quick",
                    "--attnperf-seqlens=16384",
                    "--attnperf-backends=eager",
                    "--attnperf-min-samples=3",
                    "--out",
                    "r",
                ]
            ).replace("exec ", "")
            + "; rc=$?; grep -E '\"(status|reason)\"' r/study.json; exit $rc",
            does_not_fit,
            # --quick also runs the decode section (added after round 2): about 110 s on a shared 2-core machine.
            timeout=300,
            weight=6,
            show=r'"reason": .*',
        ),
    ]


def fails_no_longer_fits(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if outcome.rc == 1 and has(outcome.out, "no longer fits"):
        return "clear error", ""
    if has(outcome.out, r"can't allocate memory|Cannot allocate memory"):
        return "DEFECT", "raw allocation error instead of 'no longer fits in memory' against the baseline"
    return "DEFECT", f"exit {outcome.rc} without 'no longer fits'"
