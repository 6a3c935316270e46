"""Hostile-probe family `markers`: marker arguments."""

from __future__ import annotations

from collections.abc import Sequence

from .harness import Classifier, Probe, accepts, pytest_argv, refuses
from .options import duplicate_cases

MARKED_TEST = """\
import pytest


{decorators}
def test_m(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)
"""


def marker_probe(
    decorators: str,
    check: Classifier,
    *,
    body: str | None = None,
    extra: Sequence[str] = (),
    family: str = "markers",
    label: str | None = None,
    cmd: str | None = None,
) -> Probe:
    text = MARKED_TEST.format(decorators=decorators)
    if body is not None:
        text = "import math\n\nimport pytest\n\n\n" + decorators + "\n" + body
    return Probe(
        family,
        label or decorators.replace("\n", " "),
        cmd or pytest_argv("test_m.py", *extra),
        check,
        files={"test_m.py": text},
    )


def bad_marker(*needles: str) -> Classifier:
    return refuses(r"test_m\.py::test_m", *needles, codes=(2, 4))


def marker_probes() -> list[Probe]:
    lat, mem, eq, be, sh = (
        f"@pytest.mark.attnperf_{name}" for name in ("latency", "memory", "equivalence", "backends", "shape")
    )
    probes = [
        marker_probe(f'{lat}(tolerance="abc")', bad_marker("attnperf_latency", "tolerance")),
        marker_probe(f"{lat}(tolerance=[0.1])", bad_marker("attnperf_latency", "tolerance")),
        marker_probe(f"{lat}(budget=-1)", bad_marker("attnperf_latency", "budget|duration")),
        marker_probe(f"{lat}(0.1)", bad_marker("attnperf_latency", "positional")),
        marker_probe(f"{lat}(tolerence=0.1)", bad_marker("attnperf_latency", "tolerence")),
        marker_probe(f'{lat}(cuda_graph="yes")', bad_marker("cuda_graph")),
        marker_probe(f"{lat}(baseline=False)", bad_marker("nothing would be checked")),
        marker_probe(f'{mem}(ceiling="1 parsec")', bad_marker("attnperf_memory", "parsec")),
        marker_probe(f"{mem}(ceiling=1.5)", bad_marker("attnperf_memory", "size")),
        marker_probe(f"{mem}(ceiling=2**70)", accepts(r"1 passed")),
        marker_probe(f'{eq}(rule="fa4")', bad_marker("attnperf_equivalence", "fa4")),
        marker_probe(f'{eq}(factor=float("inf"))', bad_marker("attnperf_equivalence", "factor")),
        marker_probe(f'{eq}(factor="2")', bad_marker("attnperf_equivalence", "factor")),
        marker_probe(f'{eq}("fa2")', bad_marker("attnperf_equivalence", "positional")),
        marker_probe(f"{be}()", bad_marker("attnperf_backends", "at least one")),
        marker_probe(f'{be}(["eager"])', bad_marker("attnperf_backends", "string")),
        marker_probe(f'{be}("eager", "eager")', duplicate_cases, extra=("-v",)),
        marker_probe(f'{be}("nope")', bad_marker("nope")),
        marker_probe(f"{sh}(window=(-5, 0))", bad_marker("attnperf_shape", "window")),
        marker_probe(f"{sh}(window=(1, 2, 3))", bad_marker("attnperf_shape", "window")),
        marker_probe(f"{sh}(window=(0.5, 0))", bad_marker("attnperf_shape", "window")),
        marker_probe(f"{sh}(window=[])", bad_marker("attnperf_shape", "empty")),
        marker_probe(f"{sh}(heads=3, kv_heads=2)", refuses(r"test_m", "multiple of kv_heads")),
        marker_probe(f"{sh}(kv_heads=4)", refuses(r"test_m", "multiple of kv_heads|kv_heads")),
        marker_probe(f"{sh}(heads=0)", bad_marker("attnperf_shape", "heads")),
        marker_probe(f'{sh}(dtype="float64")', bad_marker("attnperf_shape", "dtype")),
        marker_probe(f"{sh}(seqlens=[])", bad_marker("attnperf_shape", "empty")),
        marker_probe(f'{sh}(seqlens="0")', bad_marker("attnperf_shape", "context length")),
        marker_probe(f"{sh}(seqlens=[64, 64])", duplicate_cases, extra=("-v",)),
        marker_probe(f"{sh}(heads=[2, 2])", duplicate_cases, extra=("-v",)),
        marker_probe(f"{sh}(scale=0)", bad_marker("attnperf_shape", "scale")),
        marker_probe(f'{sh}(mode="fwd")', bad_marker("attnperf_shape", "mode")),
        marker_probe(f'{sh}(causal="yes")', bad_marker("attnperf_shape", "causal")),
        marker_probe(f"{sh}(unknown=1)", bad_marker("attnperf_shape", "unknown")),
        marker_probe(
            f"{lat}()",
            refuses(r"test_m", "measured nothing"),
            body="def test_m():\n    pass\n",
            label=f"{lat}() on a test that measures nothing",
        ),
    ]
    return probes
