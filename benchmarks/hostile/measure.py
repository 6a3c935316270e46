"""Hostile-probe family `measure`: measurement oddities."""

from __future__ import annotations

from .harness import Classifier, Outcome, Probe, crash, fails_test_with, has, pytest_argv, refuses
from .markers import marker_probe

CONFTEST = """\
import torch
import torch.nn.functional as F

from pytest_attnperf import register_backend


def _sdpa(q, k, v, shape):
    return F.scaled_dot_product_attention(q, k, v, is_causal=shape.causal)


@register_backend("inplace")
def inplace(q, k, v, shape):
    v.add_(1.0)  # modifies its input on every call
    return _sdpa(q, k, v, shape)


@register_backend("returns-none")
def returns_none(q, k, v, shape):
    _sdpa(q, k, v, shape)


@register_backend("wrong-shape")
def wrong_shape(q, k, v, shape):
    return _sdpa(q, k, v, shape)[..., :8]


@register_backend("nan")
def nan(q, k, v, shape):
    out = _sdpa(q, k, v, shape).clone()
    out[0, 0, 0, 0] = float("nan")
    return out


@register_backend("raises")
def raises(q, k, v, shape):
    raise RuntimeError("boom from the user's backend")


@register_backend("returns-tuple")
def returns_tuple(q, k, v, shape):
    out = _sdpa(q, k, v, shape)
    return out, out


@register_backend("memory-error")
def memory_error(q, k, v, shape):
    raise MemoryError()


@register_backend("torch-oom")
def torch_oom(q, k, v, shape):
    raise torch.OutOfMemoryError("out of memory (simulated)")

"""
# Its own conftest (robustness branch): a registration the plugin refuses stops the whole conftest, which
# would take every other probe of this family with it.
BAD_LAYOUT_CONFTEST = (
    CONFTEST
    + """

@register_backend("bad-layout", layout="bsdh")
def bad_layout(q, k, v, shape):
    return _sdpa(q, k, v, shape)
"""
)


def inplace_detected(outcome: Outcome) -> tuple[str, str]:
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"inplace.{0,120}(modif|in place|in-place|changed its input)"):
        return "clear error", ""
    if outcome.rc == 0:
        return "DEFECT", (
            "both tests passed: a backend that adds 1 to v on every call passes its own equivalence "
            "check (the reference is computed from the already-modified v) and leaves the cached "
            "inputs of the next backend modified"
        )
    return "acceptable", f"exit {outcome.rc}, without saying the inputs were modified"


def measurement_probes() -> list[Probe]:
    conftest = {"conftest.py": CONFTEST}

    def backend_run(name: str, check: Classifier, *extra: str) -> Probe:
        return Probe(
            "measure",
            f"registered backend `{name}`" + (f" with {' '.join(extra)}" if extra else ""),
            pytest_argv(f"--attnperf-backends={name}", *extra),
            check,
            files=conftest,
        )

    body = "def test_m(attnperf, attn_backend, qkv):\n    {call}\n"
    return [
        Probe(
            "measure",
            "registered backend `inplace` (adds 1 to v each call), then eager on the same inputs",
            pytest_argv("--attnperf-backends=inplace,eager"),
            inplace_detected,
            files=conftest,
        ),
        backend_run("returns-none", fails_test_with("returns-none", "NoneType")),
        backend_run(
            "returns-none",
            fails_test_with(
                "returns-none",
                "NoneType",
                defect_if=r"AttributeError",
                why="AttributeError: 'NoneType' object has no attribute 'shape' from the plugin's workload "
                "builder, naming neither the backend nor what it returned",
            ),
            "--attnperf-mode=backward",
        ),
        backend_run("wrong-shape", fails_test_with(r"output shape \(1, 2, 64, 8\) differs")),
        backend_run("nan", fails_test_with(r"NaN or Inf")),
        Probe(
            "measure",
            "registered backend `raises`, then eager",
            pytest_argv("--attnperf-backends=raises,eager"),
            fails_test_with("boom from the user's backend", r"1 passed"),
            files=conftest,
        ),
        backend_run("returns-tuple", fails_test_with("returns-tuple", "tuple")),
        Probe(
            "measure",
            "registered backend `bad-layout`",
            pytest_argv("--attnperf-backends=bad-layout"),
            fails_test_with(
                r"layout '?bsdh|unknown layout|layout must",
                why="register_backend accepted layout='bsdh'; the test "
                "then fails on an output shape, never naming the layout",
            ),
            files={"conftest.py": BAD_LAYOUT_CONFTEST},
        ),
        marker_probe(
            "@pytest.mark.attnperf_equivalence",
            fails_test_with(
                r"mode 'fwd'|'fwd' is not one of|mode",
                defect_if=r"KeyError",
                why="measure(mode='fwd') ran a forward+backward workload, then died "
                "with a raw KeyError: 'fwd' from the FLOP count",
            ),
            body=body.format(call='attnperf.measure(attn_backend, qkv, mode="fwd")'),
            family="measure",
            label='attnperf.measure(attn_backend, qkv, mode="fwd")',
        ),
        marker_probe(
            "@pytest.mark.attnperf_equivalence",
            fails_test_with("measured twice"),
            body=body.format(call="attnperf.measure(attn_backend, qkv)\n    attnperf.measure(attn_backend, qkv)"),
            family="measure",
            label="attnperf.measure called twice in one test",
        ),
        marker_probe(
            "@pytest.mark.attnperf_latency()",
            fails_test_with(
                "flops",
                defect_if="JSON compliant",
                why="flops=nan reaches the strict-JSON record: ValueError 'Out of range float values are not "
                "JSON compliant' naming neither flops nor the test's call",
            ),
            body="def test_m(attnperf):\n    attnperf.measure_workload(lambda: None, name='w', flops=math.nan)\n",
            family="measure",
            label="attnperf.measure_workload(fn, name='w', flops=math.nan)",
        ),
        Probe(
            "measure",
            "conftest registers a second backend named `eager`",
            pytest_argv(),
            refuses("duplicate attention backend 'eager'", codes=(1, 2, 3, 4)),
            files={
                "conftest.py": "from pytest_attnperf import register_backend\n\n\n"
                "@register_backend('eager')\ndef mine(q, k, v, shape):\n    return q\n"
            },
        ),
        Probe(
            "measure",
            "conftest registers a backend named `my attn` (a space)",
            pytest_argv(),
            refuses("invalid backend name", codes=(1, 2, 3, 4)),
            files={
                "conftest.py": "from pytest_attnperf import register_backend\n\n\n"
                "@register_backend('my attn')\ndef mine(q, k, v, shape):\n    return q\n"
            },
        ),
    ]
