"""Faults while measuring on a GPU: an out-of-memory or a backend exception leaves memory where it was.

Run on the GPU machine: python3 benchmarks/gpu_faults.py > gpu-faults.md   (about a minute)

(a) Eager attention at 32K (B=1, H=32, D=128, fp16, causal) does not fit on an 80 GB or a 141 GB card: its
    first score matrix (64 GiB) is allocated, the next one fails. After each of five tries
    ``torch.cuda.memory_allocated()`` must be exactly where it was before the try, and the next case
    (sdpa-flash at 4K) must measure within 3 % of the same case measured alone before the first OOM.
(b) A backend that allocates 4 GiB of workspace and then raises: once the error is handled the memory must
    be back where it was. Also shown: how much stays allocated while the error is still referenced, as
    pytest references a failed test's traceback until the next garbage collection.

Prints a short Markdown report; the exit status is 1 when a check fails. Uses only
``pytest_attnperf.measure.measure`` and ``pytest_attnperf.session.case_runner.make_workload``, as the plugin does.
"""

from __future__ import annotations

import gc
import sys

import torch

from pytest_attnperf.backends.registry import REGISTRY, Backend
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.measurement import measure
from pytest_attnperf.measure.memory import DoesNotFit, release_memory
from pytest_attnperf.measure.timing import spin_up
from pytest_attnperf.session.case_runner import make_workload
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape
from pytest_attnperf.spec.units import format_bytes

TIMING = TimingConfig(warmup_ms=50.0, rep_ms=300.0, min_samples=50)
TOLERANCE = 0.03  # the next case's median within 3 % of its median measured alone
OOM_TRIES = 5
WORKSPACE_BYTES = 4 << 30


def allocated(device: torch.device) -> int:
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device)


def median_ms(backend: Backend, shape: AttnShape, device: torch.device) -> float:
    qkv = make_qkv(shape, device=device)
    result = measure(make_workload(backend, qkv, "forward"), device, TIMING)
    del qkv
    release_memory(device)
    return result.timing.median_ms


def allocate_then_raise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=q.device)
    workspace.fill_(1)  # the memory is really in use when the kernel "fails"
    raise RuntimeError(f"injected failure after allocating {format_bytes(workspace.numel())} of workspace")


def main() -> int:
    device = torch.device("cuda", torch.cuda.current_device())
    info = describe_device(device)
    spin_up(device, 1.0)
    eager, flash = REGISTRY.get("eager"), REGISTRY.get("sdpa-flash")
    small, large = AttnShape(q_len=4096, k_len=4096), AttnShape(q_len=32768, k_len=32768)
    checks: list[tuple[str, bool]] = []
    print(f"# Faults while measuring on {info.name} (torch {info.torch}, CUDA {info.cuda})\n")
    print(f"B=1, H=32, D=128, fp16, causal, forward; timing: {TIMING}.\n")

    # (a) out-of-memory
    alone = [median_ms(flash, small, device) for _ in range(2)]
    start = allocated(device)
    qkv = make_qkv(large, device=device)
    before = allocated(device)
    print("## (a) eager at 32K runs out of memory, five times\n")
    print(f"allocated before the inputs: {start} B; with the 32K inputs: {before} B ({format_bytes(before - start)})\n")
    print("| try | result | allocated after | change | reserved after | peak during the try |")
    print("|---|---|---:|---:|---:|---:|")
    afters = []
    for attempt in range(1, OOM_TRIES + 1):
        torch.cuda.reset_peak_memory_stats(device)
        try:
            measure(make_workload(eager, qkv, "forward"), device, TIMING)
            outcome = "fitted (no OOM: this card is larger than expected)"
        except DoesNotFit as oom:
            outcome = f"does not fit: {str(oom)[:60]}..."
        after = allocated(device)
        afters.append(after)
        print(
            f"| {attempt} | {outcome} | {after} B | {after - before:+d} B | "
            f"{format_bytes(torch.cuda.memory_reserved(device))} | {format_bytes(torch.cuda.max_memory_allocated(device))} |"
        )
    del qkv
    release_memory(device)
    end = allocated(device)
    after_oom = median_ms(flash, small, device)
    ratio = after_oom / alone[0]
    print(f"\nallocated once the 32K inputs are freed: {end} B (before them: {start} B)\n")
    print("| sdpa-flash 4K | median |")
    print("|---|---:|")
    print(f"| alone, first | {alone[0]:.4f} ms |")
    print(f"| alone, second (noise) | {alone[1]:.4f} ms ({alone[1] / alone[0] - 1:+.2%}) |")
    print(f"| right after the {OOM_TRIES} OOMs | {after_oom:.4f} ms ({ratio - 1:+.2%}) |\n")
    checks.append(("every OOM try leaves memory_allocated exactly where it was", all(a == before for a in afters)))
    checks.append(("no growth over the five tries", len(set(afters)) == 1))
    checks.append(("freeing the 32K inputs returns to the start", end == start))
    checks.append((f"sdpa-flash 4K after the OOMs within {TOLERANCE:.0%} of alone", abs(ratio - 1) <= TOLERANCE))

    # (b) backend exception
    print("## (b) a backend allocates 4 GiB of workspace, then raises\n")
    failing = Backend("allocates-then-raises", allocate_then_raise)
    qkv = make_qkv(small, device=device)
    before = allocated(device)
    kept: BaseException | None = None
    try:
        measure(make_workload(failing, qkv, "forward"), device, TIMING)
    except RuntimeError as error:
        kept = error  # what a test framework does with a failed test's error
    held = allocated(device)
    message = str(kept)
    kept = None  # the error (and its traceback's frames) released, as at the end of an `except` block
    handled = allocated(device)
    gc.collect()
    collected = allocated(device)
    del qkv
    release_memory(device)
    print("| moment | allocated | change |")
    print("|---|---:|---:|")
    for moment, value in (
        ("before the call (4K inputs allocated)", before),
        ("while the error is still referenced", held),
        ("error released", handled),
        ("after gc.collect()", collected),
    ):
        print(f"| {moment} | {value} B | {value - before:+d} B ({format_bytes(abs(value - before))}) |")
    print(f"\nerror: `{message}`\n")
    checks.append(("the error reached the caller unchanged", message.startswith("injected failure")))
    checks.append(("a handled backend exception leaves memory where it was", handled == before))

    print("## Checks\n")
    for name, passed in checks:
        print(f"- {'PASS' if passed else 'FAIL'}: {name}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
