"""Property on a GPU: on random shapes every CUDA backend agrees with the reference, or is skipped with a reason.

Run on the GPU machine: python3 benchmarks/property_gpu.py > property-gpu.md   (about 4 minutes)

The property of tests/unit/test_property_equivalence.py with many more shapes, fp16/bf16/fp32 and every
registered backend (flash-attn, flash-attn-3, sdpa-flash/efficient/cudnn, flex, eager, sdpa-math): random
batch, heads, grouped KV heads, head_dim, unequal and odd query/key lengths (mostly up to 96, some up to
600 so kernels cross their tile boundaries), causal, sliding windows and softmax scales. Each backend must
agree with the reference by the project's rule (``checks.measure_equivalence`` with ``EquivalenceSpec()``,
references built as ``session.case_runner.ReferenceCache.get`` builds them), and rows that see no key must be exactly
zero; or it is skipped with a reason (``unsupported_reason``, or ``Unsupported`` raised at run time).

Hypothesis drives the shapes (derandomized: the same shapes on every run); failures are recorded, not
raised, so every one is listed. flex compiles each new shape, so it gets a share of the time and is then
skipped with that reason. The run stops drawing after about four minutes. Exit status 1 on a failure.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import time
from dataclasses import dataclass, field

import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pytest_attnperf.backends.registry import REGISTRY, Backend, Unsupported
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.measure.equivalence import describe_mismatch, measure_equivalence
from pytest_attnperf.measure.inputs import QKV, make_qkv, torch_dtype
from pytest_attnperf.measure.memory import release_memory
from pytest_attnperf.measure.reference import band_mask, reference_attention
from pytest_attnperf.session.case_runner import make_workload
from pytest_attnperf.spec.marks import EquivalenceSpec
from pytest_attnperf.spec.shapes import AttnShape

# Environment overrides exist for a quick try on a CPU; the GPU run needs none.
EXAMPLES = int(os.environ.get("ATTNPERF_PROPERTY_EXAMPLES", "500"))
TIME_BUDGET_S = float(os.environ.get("ATTNPERF_PROPERTY_SECONDS", "240"))
COMPILED_BUDGET_S = TIME_BUDGET_S * 0.375  # flex: torch.compile per new shape
COMPILES_PER_SHAPE = frozenset({"flex"})
FP32_RULE_NOISE = 1e-4  # see test_property_equivalence.py: fp32 false alarms of the fa2 rule stay below this

DEVICE = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
INFO = describe_device(DEVICE)


@dataclass
class Tally:
    """What happened to each backend over the run."""

    ran: collections.Counter[str] = field(default_factory=collections.Counter)
    agreed: collections.Counter[str] = field(default_factory=collections.Counter)
    fp32_noise: collections.Counter[str] = field(default_factory=collections.Counter)
    skip_count: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    failures: list[tuple[str, AttnShape, int, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    examples: int = 0
    out_of_time: int = 0


TALLY = Tally()
START = time.perf_counter()


@st.composite
def attention_shapes(draw: st.DrawFn) -> AttnShape:
    heads = draw(st.integers(1, 8))
    length = st.one_of(st.integers(1, 96), st.integers(97, 600))
    return AttnShape(
        q_len=draw(length),
        k_len=draw(length),
        batch=draw(st.integers(1, 2)),
        heads=heads,
        kv_heads=draw(st.sampled_from([count for count in range(1, heads + 1) if heads % count == 0])),
        head_dim=draw(st.sampled_from([8, 16, 32, 64, 128, 256])),
        dtype=draw(st.sampled_from(["float16", "bfloat16", "float32"])),
        causal=draw(st.booleans()),
        window=draw(st.one_of(st.just((-1, -1)), st.tuples(st.integers(-1, 16), st.integers(-1, 16)))),
        scale=draw(st.one_of(st.none(), st.floats(min_value=0.01, max_value=4.0))),
    )


def references(qkv: QKV) -> tuple[torch.Tensor, torch.Tensor]:
    """(high-precision reference, input-dtype reference), as session.case_runner.ReferenceCache.get builds them."""
    shape = qkv.shape
    high = torch.float64 if torch_dtype(shape.dtype) == torch.float32 else torch.float32
    return tuple(  # type: ignore[return-value]
        reference_attention(
            qkv.q, qkv.k, qkv.v, causal=shape.causal, window=shape.window, scale=shape.scale, compute_dtype=dtype
        )
        for dtype in (high, torch_dtype(shape.dtype))
    )


def reasons_of(reason: str) -> list[str]:
    """The distinct reasons in a skip message, for counting.

    A pinned SDPA kernel's refusal joins every warning PyTorch raised, each ending in its source
    location: those are split apart, and the case-specific sizes replaced by N.
    """
    if "SDPA kernel refused this case: " not in reason:
        return [reason]
    head, _, warnings = reason.partition("refused this case: ")
    parts = []
    for part in re.split(r"\s*\(Triggered internally at [^)]*\)\.?(?:;\s*)?", warnings):
        part = part.strip().removesuffix(";").strip()
        if part and not part.endswith("kernel not used because:"):
            parts.append(head + "refused: " + re.sub(r"\d+", "N", part))
    return parts or [reason]


def check(backend: Backend, qkv: QKV, seed: int, reference: torch.Tensor, low: torch.Tensor) -> None:
    shape = qkv.shape
    reason = backend.unsupported_reason(shape, INFO)
    if reason is None and backend.name in COMPILES_PER_SHAPE and TALLY.seconds[backend.name] > COMPILED_BUDGET_S:
        reason = f"{backend.name}: its {COMPILED_BUDGET_S:.0f} s share of this run is used (it compiles per shape)"
    if reason is not None:
        TALLY.skip_count[backend.name] += 1
        TALLY.skipped[backend.name].update(reasons_of(reason))
        return
    started = time.perf_counter()
    try:
        output = make_workload(backend, qkv, "forward")()
        if backend.layout == "bshd":
            output = output.transpose(1, 2)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)  # an asynchronous kernel error surfaces here, in its own case
    except Unsupported as unsupported:
        TALLY.skip_count[backend.name] += 1
        TALLY.skipped[backend.name].update(reasons_of(str(unsupported)))
        return
    except Exception as error:  # a crash is a failure of this case, listed; the run goes on
        TALLY.ran[backend.name] += 1
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        TALLY.failures.append((backend.name, shape, seed, f"raised {type(error).__name__}: {first_line[:300]}"))
        return
    finally:
        TALLY.seconds[backend.name] += time.perf_counter() - started
    TALLY.ran[backend.name] += 1
    equivalence = measure_equivalence(output, reference, low, EquivalenceSpec())
    allowed = band_mask(shape.q_len, shape.k_len, causal=shape.causal, window=shape.window, device=DEVICE)
    empty = torch.zeros(shape.q_len, dtype=torch.bool, device=DEVICE) if allowed is None else ~allowed.any(dim=-1)
    rows = output[:, :, empty]
    problems = []
    if not equivalence.passed:
        noise = shape.dtype == "float32" and equivalence.nonfinite == 0 and equivalence.max_error <= FP32_RULE_NOISE
        if noise:
            TALLY.fp32_noise[backend.name] += 1
        else:
            problems.append(describe_mismatch(equivalence) or "mismatch")
    if int(rows.count_nonzero()) != 0:
        problems.append(
            f"{int(empty.sum())} row(s) see no key and must be zero: {int(rows.isnan().sum())} NaN, "
            f"{int((rows != 0).sum())} nonzero elements"
        )
    if problems:
        TALLY.failures.append((backend.name, shape, seed, "; ".join(problems)))
    elif equivalence.passed:
        TALLY.agreed[backend.name] += 1


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # failures are recorded, not raised: nothing to shrink
    suppress_health_check=list(HealthCheck),
)
@given(shape=attention_shapes(), seed=st.integers(0, 2**16))
def every_backend_agrees_or_skips(shape: AttnShape, seed: int) -> None:
    if time.perf_counter() - START > TIME_BUDGET_S:
        TALLY.out_of_time += 1
        return
    TALLY.examples += 1
    qkv = make_qkv(shape, seed=seed, device=DEVICE)
    reference, low = references(qkv)
    for backend in REGISTRY:
        check(backend, qkv, seed, reference, low)
    del qkv, reference, low


def shape_text(shape: AttnShape) -> str:
    scale = "default" if shape.scale is None else f"{shape.scale:.4g}"
    return (
        f"B={shape.batch} H={shape.heads} KV={shape.kv_heads} D={shape.head_dim} q={shape.q_len} k={shape.k_len} "
        f"{shape.dtype} causal={shape.causal} window={shape.window} scale={scale}"
    )


def main() -> int:
    every_backend_agrees_or_skips()
    release_memory(DEVICE)
    elapsed = time.perf_counter() - START
    versions = ", ".join(f"{key} {value}" for key, value in INFO.software().items() if value)
    print(f"# Equivalence property on {INFO.name} ({INFO.device}, {INFO.generation})\n")
    print(f"{versions}\n")
    print(
        f"{TALLY.examples} random shapes in {elapsed:.0f} s (of {EXAMPLES} drawn; {TALLY.out_of_time} past the "
        f"{TIME_BUDGET_S:.0f} s budget), fa2 rule, derandomized Hypothesis.\n"
    )
    print("| backend | ran | agreed | fp32 false alarms (known, error <= 1e-4) | failed | skipped | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    failed = collections.Counter(name for name, *_ in TALLY.failures)
    for backend in REGISTRY:
        name = backend.name
        print(
            f"| {name} | {TALLY.ran[name]} | {TALLY.agreed[name]} | {TALLY.fp32_noise[name]} | {failed[name]} | "
            f"{TALLY.skip_count[name]} | {TALLY.seconds[name]:.1f} |"
        )
    print("\n## Skip reasons\n")
    print("A pinned SDPA kernel's refusal can hold several reasons; each is counted.\n")
    for backend in REGISTRY:
        for reason, count in TALLY.skipped[backend.name].most_common():
            print(f"- {backend.name} ({count}x): {reason}")
    print(f"\n## Failures ({len(TALLY.failures)})\n")
    for name, shape, seed, problem in TALLY.failures:
        print(f"- {name}, {shape_text(shape)}, seed {seed}: {problem}")
    if not TALLY.failures:
        print("none")
    return 1 if TALLY.failures else 0


if __name__ == "__main__":
    sys.exit(main())
