"""CPU peak memory from torch's allocator (exact, repeatable) and out-of-memory as "does not fit"."""

from __future__ import annotations

import pytest
import torch
from fast_run import FAST_OPTIONS

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.measurement import measure
from pytest_attnperf.measure.memory import DoesNotFit, cpu_peak_memory, is_out_of_memory
from pytest_attnperf.session.case_runner import make_workload
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape

CPU = torch.device("cpu")
QUICK = TimingConfig(warmup_ms=1.0, rep_ms=2.0, min_samples=2)
MiB = 1 << 20


def test_the_cpu_peak_is_what_the_allocations_held_at_most() -> None:
    kept = [torch.ones(MiB // 4)]  # 1 MiB that exists before the call and is freed by it

    def workload() -> tuple[torch.Tensor, torch.Tensor]:
        kept.clear()  # a free of memory the call did not allocate does not lower its peak
        first = torch.ones(MiB // 2)  # 2 MiB
        second = first * 2  # 2 MiB more: 4 MiB held
        del first
        third = torch.empty(MiB // 4)  # 1 MiB, never touched (no resident page): still allocated
        return second * 2, third  # 2 MiB more while second and third live: 5 MiB

    output, peak, note = cpu_peak_memory(workload)
    assert note is None
    assert peak is not None
    assert 5 * MiB <= peak < 5 * MiB + 1024  # plus the few bytes of the scalar 2, a tensor too
    assert output[0].shape == (MiB // 2,)


def test_the_cpu_peak_of_an_attention_backward_is_the_same_every_time() -> None:
    # The resident-set high-water mark it replaced moved by up to 90 % between two calls of this workload
    # (glibc's heap and page reuse), which made the CPU memory gate fail runs right after an update.
    shape = AttnShape(q_len=128, k_len=128, batch=1, heads=8, kv_heads=8, head_dim=64, dtype="float32")
    workload = make_workload(REGISTRY.get("eager"), make_qkv(shape), "forward+backward")
    workload()
    peaks = set()
    for _ in range(10):
        output, peak, _ = cpu_peak_memory(workload)
        del output
        peaks.add(peak)
    assert len(peaks) == 1
    (peak,) = peaks
    # At least the scores and the probabilities (128 x 128 x 8 heads x 4 bytes each) with their gradients.
    assert peak is not None
    assert peak >= 2 * 128 * 128 * 8 * 4


def test_a_users_running_profiler_is_left_alone() -> None:
    with torch.profiler.profile() as users:
        output, peak, note = cpu_peak_memory(lambda: torch.ones(4))
        torch.ones(8).sum()
    assert output.tolist() == [1.0] * 4
    assert (peak, note) == (None, "peak memory on the CPU not measured: torch's profiler is already running")
    assert "aten::sum" in {event.name for event in users.events()}  # the user's session still recorded


def _cpu_allocation_failure() -> RuntimeError:
    try:
        torch.empty(1 << 62, dtype=torch.uint8)  # the CPU allocator refuses 4 EiB at once
    except RuntimeError as error:
        return error
    raise AssertionError("a 4 EiB allocation succeeded")


def test_allocation_failures_count_as_out_of_memory() -> None:
    failure = _cpu_allocation_failure()
    assert "DefaultCPUAllocator: can't allocate memory" in str(failure)
    assert is_out_of_memory(failure)  # it used to reach the test as a raw RuntimeError
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("boom"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


def test_a_real_cpu_out_of_memory_does_not_fit() -> None:
    with pytest.raises(DoesNotFit, match=r"^RuntimeError: .*DefaultCPUAllocator: can't allocate memory"):
        measure(lambda: torch.empty(1 << 62, dtype=torch.uint8), CPU, QUICK)
    with pytest.raises(DoesNotFit, match=r"^MemoryError$"):
        measure(lambda: [0] * (1 << 62), CPU, QUICK)


def test_an_out_of_memory_is_released_thoroughly_unless_no_retry_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a retry every cycle is collected, frozen ones too; after the deciding attempt its own new objects are
    all there is to collect, which a plain release does."""
    from pytest_attnperf.measure import measurement

    releases: list[bool] = []
    monkeypatch.setattr(measurement, "release_memory", lambda _device, thorough=False: releases.append(thorough))
    for follows in (True, False):
        with pytest.raises(DoesNotFit):
            measure(lambda: [0] * (1 << 62), CPU, QUICK, retry_follows=follows)
    assert releases == [False, True, False, False]  # each attempt starts with a plain release


SHAPE_TEST = """
    import pytest

    @pytest.mark.attnperf_memory()
    @pytest.mark.attnperf_shape(batch=65536, heads=4096, kv_heads=4096, head_dim=4096)  # within every size bound
    def test_huge(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


def test_inputs_that_cannot_be_allocated_do_not_fit(pytester: pytest.Pytester) -> None:
    # The qkv fixture itself ran out of memory: it was an error in the fixture, not a result.
    pytester.makepyfile(test_huge=SHAPE_TEST)
    result = pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "test_huge[[]eager-64[]]  eager  *does not fit",
            "SKIPPED * does not fit on *: the inputs (*bytes) cannot be allocated: RuntimeError: *DefaultCPUAllocator: "
            "can't allocate memory*",
        ]
    )


def test_the_studys_inputs_that_cannot_be_allocated_do_not_fit() -> None:
    # `attnperf report` called such a case an "error"; a study cell that does not fit says so.
    from fast_run import CPU as CPU_INFO

    from pytest_attnperf.study.runner import measure_case

    shape = AttnShape(q_len=64, k_len=64, batch=2**40, heads=2, kv_heads=2, head_dim=16, dtype="float32")
    case = measure_case(REGISTRY.get("eager"), shape, CPU_INFO, CPU, QUICK, seed=0)
    assert case["status"] == "does_not_fit"
    assert case["reason"].startswith("RuntimeError: ")
    assert "DefaultCPUAllocator: can't allocate memory" in case["reason"]


def test_a_release_freezes_what_survives_and_a_thorough_one_finds_cycles_among_it() -> None:
    """Each case's collection walks only what is newer (fast); a thorough one still frees old cycles."""
    import gc
    import weakref

    from pytest_attnperf.measure.memory import release_memory

    class Node:
        def __init__(self) -> None:
            self.tensor = torch.zeros(4)
            self.me = self  # a reference cycle: only the cyclic collector frees it

    node = Node()
    alive = weakref.ref(node)
    cpu = torch.device("cpu")
    try:
        release_memory(cpu)  # node survives (still referenced), so it is frozen
        assert gc.get_freeze_count() > 0
        del node
        release_memory(cpu)
        assert alive() is not None  # frozen: a plain release does not walk it
        release_memory(cpu, thorough=True)
        assert alive() is None
    finally:
        gc.unfreeze()
