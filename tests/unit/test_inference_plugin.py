"""Inference workloads through pytest: ids that say the workload, model shapes, user backends, a wrong page caught."""

from __future__ import annotations

import json
import re

import pytest
from fast_run import FAST_OPTIONS

from pytest_attnperf import Backend, BackendError, register_backend
from pytest_attnperf.backends.registry import BackendRegistry
from pytest_attnperf.spec.shapes import AttnShape

FAST = FAST_OPTIONS
WORKLOAD_TEST = """
    import pytest

    @pytest.mark.attnperf_equivalence
    @pytest.mark.attnperf_shape(workload=["prefill", "decode", "paged", "varlen", "chunked"])
    def test_inference(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


def test_each_workload_runs_and_its_id_says_which(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_work=WORKLOAD_TEST)
    json_path = pytester.path / "out.json"
    result = pytester.runpytest_inprocess(*FAST, "--attnperf", "-v", f"--attnperf-json={json_path}")
    result.assert_outcomes(passed=5)
    # prefill keeps the id it always had: the baselines recorded before workloads still match.
    result.stdout.fnmatch_lines(
        [
            "*test_inference[[]eager-64[]] PASSED*",
            "*test_inference[[]decode-eager-64[]] PASSED*",
            "*test_inference[[]paged-eager-64[]] PASSED*",
            "*test_inference[[]varlen-eager-64[]] PASSED*",
            "*test_inference[[]chunked-eager-64[]] PASSED*",
        ]
    )
    cases = {case["test_id"].split("[")[1][:-1]: case for case in json.loads(json_path.read_text())["results"]}
    decode = cases["decode-eager-64"]
    assert (decode["shape"]["workload"], decode["shape"]["q_len"], decode["shape"]["k_len"]) == ("decode", 1, 64)
    assert decode["seqlen"] == 64  # the context, not the one query
    # 2 heads x 16 dims x 4 bytes: q and o of one token, k and v of 64.
    assert decode["bytes_moved"] == 4 * 16 * (2 * 1 * 2 + 2 * 64 * 2)
    assert decode["gbps"] == pytest.approx(decode["bytes_moved"] / decode["median_ms"] / 1e6)
    assert decode["bandwidth_share"] is None  # no copy bandwidth on a CPU
    assert cases["paged-eager-64"]["shape"]["page_size"] == 16
    assert len(cases["varlen-eager-64"]["shape"]["k_lens"]) == 4
    assert cases["chunked-eager-64"]["shape"]["q_len"] == 16
    assert all(case["equivalence_passed"] for case in cases.values())
    result.stdout.re_match_lines([r"test\s+backend\s+len\s+median\s+TFLOP/s\s+GB/s\s+.*"])


def test_options_pick_the_workloads_of_unmarked_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        def test_plain(attnperf, attn_backend, qkv):
            result = attnperf.measure(attn_backend, qkv)
            assert result.shape["q_len"] == (4 if result.shape["workload"] == "decode" else result.shape["k_len"])
        """
    )
    result = pytester.runpytest_inprocess(
        *FAST, "--attnperf", "-v", "--attnperf-workloads=prefill,decode", "--attnperf-q-len=4"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_plain[[]eager-64[]] PASSED*", "*test_plain[[]decode-eager-64[]] PASSED*"])


def test_a_q_len_above_the_context_is_refused_alike_by_varlen_and_decode(pytester: pytest.Pytester) -> None:
    """A varlen q_len of 1000 over 64 tokens was clipped to a prefill while its id said q1000."""
    pytester.makepyfile(
        test_plain="def test_plain(attnperf, attn_backend, qkv):\n    attnperf.measure(attn_backend, qkv)\n"
    )
    result = pytester.runpytest_inprocess(
        *FAST, "--attnperf", "-v", "--attnperf-workloads=varlen,decode", "--attnperf-q-len=1000"
    )
    result.assert_outcomes(errors=2)
    for workload in ("varlen", "decode"):
        result.stdout.fnmatch_lines(
            [
                f"*test_plain[[]{workload}-eager-64[]]: impossible attention shape: a {workload} step's 1000 queries "
                "are the newest tokens of its * of 64: q_len must not exceed the context length*"
            ]
        )


def test_a_model_and_q_len_give_its_gqa_decode_case(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_model="""
        import pytest

        @pytest.mark.attnperf_shape(model="Llama-3-70B", q_len=1)
        def test_llama(attn_shape):
            assert (attn_shape.workload, attn_shape.q_len, attn_shape.k_len) == ("decode", 1, 64)
            assert (attn_shape.heads, attn_shape.kv_heads, attn_shape.head_dim) == (64, 8, 128)

        @pytest.mark.attnperf_shape(model="Gemma-2-9B", layer=["full", "sliding"], workload="decode")
        def test_gemma(attn_shape):
            assert attn_shape.softcap == 50.0 and attn_shape.head_dim == 256
            assert attn_shape.window in ((-1, -1), (4095, 0))
        """
    )
    result = pytester.runpytest_inprocess(*FAST, "--attnperf", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_llama[[]decode-64[]] PASSED*",
            "*test_gemma[[]decode-layerfull-64[]] PASSED*",
            "*test_gemma[[]decode-layersliding-64[]] PASSED*",
        ]
    )


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('model="Llama-3-70B", heads=8', "model sets heads itself: drop it"),
        ('model="Llama-3-70B", layer="sliding"', "Llama-3-70B has no sliding-attention layers"),
        ('layer="full"', "layer picks one of a model's layer kinds: give model= too"),
        ('workload="prefill", q_len=4', "q_len sets the queries of decode, paged, chunked and varlen cases"),
        ('workload="decode", page_size=16', "page_size is the paged workload's"),
        ('workload="streaming"', "workload 'streaming' is not one of prefill, decode, paged, varlen, chunked"),
        ('model="no-such-model"', "unknown model preset 'no-such-model'"),
    ],
)
def test_bad_inference_shape_marks_are_collection_errors(
    pytester: pytest.Pytester, arguments: str, problem: str
) -> None:
    pytester.makepyfile(
        test_bad=f"import pytest\n\n@pytest.mark.attnperf_shape({arguments})\ndef test_x(qkv):\n    pass\n"
    )
    result = pytester.runpytest_inprocess(*FAST, "--attnperf")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert re.search(
        r"test_bad\.py::test_x: @pytest\.mark\.attnperf_shape\(.*\): .*" + re.escape(problem), result.stdout.str()
    )


# ---------------------------------------------------------------- backends and workloads


def test_a_registered_backend_runs_prefill_unless_it_declares_more() -> None:
    registry = BackendRegistry()

    @register_backend("mine", registry=registry)
    def mine(q: object, k: object, v: object, shape: AttnShape) -> object:
        return q

    backend = registry.get("mine")
    assert backend.workloads == frozenset({"prefill"})
    assert backend.workload_reason("decode") == (
        "mine does not run the decode workload: it runs prefill; a registered backend declares more with workloads={...}"
    )
    register_backend("decoder", registry=registry, workloads=["prefill", "decode"])(mine)
    assert registry.get("decoder").workloads == frozenset({"prefill", "decode"})
    with pytest.raises(BackendError, match=r"backend 'typo': unknown workloads \['decoding'\]"):
        register_backend("typo", registry=registry, workloads={"decoding"})(mine)
    with pytest.raises(BackendError, match="workloads must be a non-empty set"):
        registry.register(Backend("empty", mine, workloads=frozenset()))


@pytest.mark.slow
def test_builtin_skip_reasons_name_the_workload(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_work=WORKLOAD_TEST)
    # A fresh process: in-process runs re-import torch submodules that may only register their operators once.
    result = pytester.runpytest_subprocess(*FAST, "--attnperf", "-rs", "--attnperf-backends=sdpa-math,torch-varlen")
    result.assert_outcomes(passed=3, skipped=7)
    output = result.stdout.str()
    assert "sdpa-math does not run the paged workload: PyTorch's SDPA has no block-table input" in output
    assert "sdpa-math does not run the varlen workload: PyTorch's SDPA has no cu_seqlens input" in output
    assert (
        "torch-varlen cannot run on cpu: torch's varlen_attn says \"Could not run 'aten::_flash_attention_forward'"
        in output
    )


WRONG_PAGE = """
    import pytest
    import torch
    from pytest_attnperf import register_backend
    from pytest_attnperf.measure.reference import eager_attention

    def attend(q, k, v, shape, paged, table):
        # Read each sequence's pages through ``table``, then attend over its valid tokens.
        tokens = torch.arange(shape.k_len)
        slots = table.long()[:, tokens // paged.page_size] * paged.page_size + tokens % paged.page_size
        keys, values = (pool[0][:, slots].transpose(0, 1) for pool in (k, v))
        return eager_attention(q, keys, values, causal=shape.causal, scale=shape.scale)

    @register_backend("follows-the-table", workloads={"paged"})
    def right(q, k, v, shape, paged):
        return attend(q, k, v, shape, paged, paged.block_table)

    @register_backend("reads-the-next-page", workloads={"paged"})
    def wrong(q, k, v, shape, paged):
        # An off-by-one in the physical page: each lookup lands one page further into the pool.
        pages = k.shape[2] // paged.page_size
        return attend(q, k, v, shape, paged, (paged.block_table + 1) % pages)
"""


def test_a_decode_kernel_that_reads_the_wrong_page_fails(pytester: pytest.Pytester) -> None:
    """A page of another sequence (or of the pool's unused slots) changes the output; the equivalence check fails.

    (Reading one's own pages in a wrong order would go unseen by a one-query decode: softmax does not care
    about the order of its keys. The paged cache's pages are scattered over the pool for this reason.)
    """
    pytester.makeconftest(WRONG_PAGE)
    pytester.makepyfile(
        test_paged="""
        import pytest

        @pytest.mark.attnperf_equivalence
        @pytest.mark.attnperf_backends("follows-the-table", "reads-the-next-page")
        @pytest.mark.attnperf_shape(workload="paged", batch=2)
        def test_paged(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
        """
    )
    result = pytester.runpytest_inprocess(*FAST, "--attnperf", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_paged[[]paged-follows-the-table-64[]] PASSED*",
            "*test_paged[[]paged-reads-the-next-page-64[]] FAILED*",
        ]
    )
    assert re.search(r"max \|out - ref\| = \S+ exceeds the budget", result.stdout.str())
