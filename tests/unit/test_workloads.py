"""Inference workloads as shapes: decode, paged, varlen, chunked; their seeded inputs, reference and bytes moved."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from fast_run import CPU

from pytest_attnperf import REGISTRY
from pytest_attnperf.measure.inputs import PackedSeqs, PagedKV, _splitmix64, make_qkv, seeded_permutation
from pytest_attnperf.measure.reference import eager_attention, gather_pages, reference_output
from pytest_attnperf.spec.presets import get_preset
from pytest_attnperf.spec.shapes import AttnShape, band_pairs, keys_read, shape_for_case
from pytest_attnperf.spec.workloads import default_q_len, parse_workload, seeded_integers, seeded_lengths

SMALL = {"batch": 2, "heads": 4, "kv_heads": 2, "head_dim": 8, "dtype": "float32", "causal": True, "page_size": 8}


def case(workload: str, context_len: int = 37, **fields: Any) -> AttnShape:
    return shape_for_case(
        {**SMALL, "workload": workload, **fields}, context_len=context_len, seed=0, batch_given="batch" in fields
    )


# ---------------------------------------------------------------- shapes


def test_each_workload_has_its_own_queries_over_the_cache() -> None:
    decode, chunked, prefill = case("decode"), case("chunked", 40), case("prefill")
    assert (decode.q_len, decode.k_len, decode.workload) == (1, 37, "decode")
    assert (chunked.q_len, chunked.k_len) == (10, 40)  # a quarter of the context by default
    assert prefill.q_len == prefill.k_len == 37
    assert case("decode", q_len=4).q_len == 4  # speculative decoding: a few new tokens
    paged = case("paged")
    assert (paged.q_len, paged.page_size) == (1, 8)
    assert default_q_len("varlen", 100) is None


def test_varlen_draws_its_lengths_from_the_seed() -> None:
    varlen = case("varlen", 64)
    assert varlen.batch == 4  # several sequences unless a batch is given
    assert varlen.k_lens == varlen.q_lens  # prefill: every token a query
    assert varlen.k_lens is not None
    assert varlen.k_lens[0] == 64
    assert all(16 <= length <= 64 for length in varlen.k_lens)
    assert len(set(varlen.k_lens)) > 1
    assert varlen.k_lens == seeded_lengths(64, 4, seed=0)  # the same on every machine
    assert seeded_lengths(64, 4, seed=1) != varlen.k_lens
    assert case("varlen", 64, batch=3).batch == 3
    decoding = case("varlen", 64, q_len=1)
    assert decoding.q_lens == (1, 1, 1, 1)
    assert (decoding.q_len, decoding.k_len) == (1, 64)


@pytest.mark.parametrize("workload", ["varlen", "decode", "chunked"])
def test_a_q_len_above_the_context_is_refused_by_every_workload_that_takes_one(workload: str) -> None:
    """A varlen q_len of 1000 over a context of 64 was clipped silently: the id said q1000, a prefill was measured."""
    with pytest.raises(ValueError, match="q_len must not exceed the context length"):
        case(workload, 64, q_len=1000)
    assert case(workload, 64, q_len=64).q_len == 64  # the whole longest sequence is still accepted


def test_seeded_integers_are_the_same_hash_as_the_seeded_tensors() -> None:
    """Python ints (lengths, page order) and torch's int64 arithmetic (tensor values): one splitmix64, two codes."""
    key = 5 * 0x1F3  # seed 0, stream 5
    hashed = _splitmix64(torch.arange(64, dtype=torch.int64) + key)
    assert seeded_integers(64, seed=0, stream=5) == [value & (2**64 - 1) for value in hashed.tolist()]
    # Pinned: a varlen batch, or a page order, must be the same on every machine and Python.
    assert seeded_lengths(1024, 4, seed=0) == (1024, 925, 799, 409)
    assert seeded_permutation(6, seed=0, stream=8) == [3, 5, 0, 2, 1, 4]


def test_a_model_preset_sets_heads_kv_heads_head_dim_and_its_layers_attention() -> None:
    llama = shape_for_case(
        {**SMALL, "model": get_preset("Llama-3-70B"), "workload": "decode"}, context_len=64, seed=0, batch_given=False
    )
    assert (llama.heads, llama.kv_heads, llama.head_dim, llama.q_len, llama.k_len) == (64, 8, 128, 1, 64)
    gemma = shape_for_case(
        {**SMALL, "model": get_preset("Gemma-2-9B"), "layer": "sliding"}, context_len=64, seed=0, batch_given=False
    )
    assert (gemma.head_dim, gemma.softcap, gemma.scale, gemma.window) == (256, 50.0, 1 / 16, (4095, 0))


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"workload": "decode", "q_len": 9, "k_len": 8}, "q_len must not exceed the context length"),
        ({"workload": "paged"}, "the paged workload needs a page_size"),
        ({"workload": "decode", "page_size": 16}, "page_size goes with the paged workload"),
        ({"workload": "varlen"}, "the varlen workload needs q_lens and k_lens"),
        ({"workload": "varlen", "q_lens": (2,), "k_lens": (1,), "q_len": 2, "k_len": 1}, "1 <= q_len <= k_len"),
        ({"workload": "varlen", "batch": 2, "q_lens": (4,), "k_lens": (4,), "q_len": 4}, "one length per sequence"),
        ({"workload": "decode", "k_lens": (4,)}, "belong to the varlen workload"),
        ({"workload": "speculative"}, "workload 'speculative' is not one of prefill, decode, paged, varlen, chunked"),
        ({"softcap": -1.0}, "softcap must be a positive finite number"),
    ],
)
def test_impossible_workload_shapes_are_refused(fields: dict[str, Any], fragment: str) -> None:
    arguments: dict[str, Any] = {"q_len": 4, "k_len": 8, "heads": 4, "kv_heads": 4, **fields}
    with pytest.raises(ValueError, match=re.escape(fragment)):
        AttnShape(**arguments)


def test_parse_workload_is_case_insensitive_and_names_the_accepted_ones() -> None:
    assert parse_workload(" Decode ") == "decode"
    with pytest.raises(ValueError, match="is not one of prefill, decode, paged, varlen, chunked"):
        parse_workload(3)


# ---------------------------------------------------------------- what is counted


def test_decode_bytes_are_the_kv_cache_read_once_plus_q_and_o() -> None:
    # The research note's example: a Llama-3-70B layer, batch 1, 32K cache, one new token, bf16.
    shape = AttnShape(1, 32768, heads=64, kv_heads=8, head_dim=128, dtype="bfloat16", workload="decode")
    kv_cache = 2 * 32768 * 8 * 128 * 2
    q_and_o = 2 * 64 * 128 * 2
    assert shape.bytes_moved() == kv_cache + q_and_o == 134_250_496
    assert shape.flops() == 4 * 64 * 32768 * 128  # QK^T and PV over every cached key, nothing halved


def test_a_sliding_window_reads_only_the_window() -> None:
    windowed = AttnShape(1, 32768, heads=32, kv_heads=8, head_dim=128, window=(4095, 0), workload="decode")
    assert keys_read(1, 32768, causal=True, window=(4095, 0)) == 4096
    assert windowed.bytes_moved() == 2 * (2 * 4096 * 8 * 128 + 2 * 32 * 128)


def test_varlen_counts_each_sequence() -> None:
    shape = AttnShape(3, 10, batch=2, heads=2, kv_heads=1, head_dim=4, workload="varlen", q_lens=(3, 1), k_lens=(6, 10))
    assert shape.total_pairs() == band_pairs(3, 6, causal=True, window=(-1, -1)) + 10
    assert band_pairs(3, 6, causal=True, window=(-1, -1)) == 4 + 5 + 6  # bottom-right: row i sees 3 + i + 1 keys
    assert shape.bytes_moved() == 2 * 4 * (2 * 4 * 2 + 2 * 16 * 1)
    assert shape.input_bytes() == 2 * 4 * (2 * 4 + 2 * 16)


# ---------------------------------------------------------------- seeded inputs


def test_a_paged_cache_reads_back_through_its_block_table() -> None:
    shape = case("paged", 37, q_len=2)
    qkv = make_qkv(shape, seed=3)
    paged = qkv.index
    assert isinstance(paged, PagedKV)
    assert paged.block_table.dtype == paged.seqlens.dtype == torch.int32
    assert paged.block_table.shape == (2, 5)  # 37 tokens in pages of 8
    assert paged.seqlens.tolist() == [37, 37]
    assert sorted(paged.block_table.flatten().tolist()) == list(range(10))
    assert paged.block_table.flatten().tolist() != list(range(10))  # scattered: a kernel must follow the table
    assert qkv.k_pages is not None
    pool = qkv.in_layout("bhsd")[1]
    assert pool.shape == (1, 2, 80, 8)
    assert torch.equal(gather_pages(pool, paged, 37), qkv.k)
    # The slots past each sequence's end hold seeded values, never zeros a careless kernel could read harmlessly.
    last_pages = paged.block_table[:, -1].long()
    assert bool((qkv.k_pages[last_pages, 5:].abs() > 0).all())
    again = make_qkv(shape, seed=3)
    assert torch.equal(again.index.block_table, paged.block_table)  # type: ignore[union-attr]
    assert torch.equal(again.k_pages, qkv.k_pages)
    # The logical cache is the dense decode case's, bit for bit: paging changes where it lives, not what it is.
    assert torch.equal(make_qkv(case("decode", 37, q_len=2), seed=3).k, qkv.k)


def test_a_varlen_batch_is_packed_with_cumulative_lengths() -> None:
    shape = case("varlen", 32, q_len=2)
    qkv = make_qkv(shape, seed=0)
    packed = qkv.index
    assert isinstance(packed, PackedSeqs)
    assert shape.k_lens is not None
    assert packed.cu_seqlens_q.tolist() == [0, 2, 4, 6, 8]
    assert packed.cu_seqlens_k.tolist() == [0, *torch.tensor(shape.k_lens).cumsum(0).tolist()]
    assert (packed.max_q, packed.max_k) == (2, 32)
    assert qkv.q.shape == (1, 4, 8, 8)
    q, k, _ = qkv.in_layout("bshd")
    assert q.shape == (8, 4, 8)
    assert k.shape == (sum(shape.k_lens), 2, 8)


# ---------------------------------------------------------------- reference and the CPU backends


def test_the_varlen_reference_attends_within_each_sequence_bottom_right() -> None:
    shape = case("varlen", 16, q_len=3)
    qkv = make_qkv(shape, seed=0)
    reference = reference_output(qkv, torch.float64)
    assert shape.k_lens is not None
    second_keys = slice(shape.k_lens[0], shape.k_lens[0] + shape.k_lens[1])
    alone = eager_attention(
        qkv.q[:, :, 3:6].double(), qkv.k[:, :, second_keys].double(), qkv.v[:, :, second_keys].double(), causal=True
    )
    assert torch.allclose(reference[:, :, 3:6], alone)


def test_softcap_caps_the_scaled_scores() -> None:
    shape = AttnShape(1, 8, heads=1, kv_heads=1, head_dim=4, dtype="float32", softcap=0.5, workload="decode")
    qkv = make_qkv(shape, seed=0)
    scores = (qkv.q.double() @ qkv.k.double().transpose(-1, -2)) / 2
    expected = torch.softmax(torch.tanh(scores / 0.5) * 0.5, dim=-1) @ qkv.v.double()
    assert torch.allclose(reference_output(qkv, torch.float64), expected)


@pytest.mark.parametrize(
    "fields",
    [
        {"workload": "decode"},
        {"workload": "decode", "q_len": 3},
        {"workload": "chunked"},
        {"workload": "paged", "q_len": 2},
        {"workload": "varlen"},
        {"workload": "varlen", "q_len": 1, "window": (5, 0)},
        {"workload": "decode", "softcap": 4.0},
    ],
    ids=["decode", "decode-q3", "chunked", "paged-q2", "varlen", "varlen-decode-window", "decode-softcap"],
)
@pytest.mark.parametrize("name", ["eager", "sdpa-math", "sdpa-flash"])
def test_cpu_backends_match_the_reference_or_say_why_not(name: str, fields: dict[str, Any]) -> None:
    shape = case(context_len=29, **fields)
    backend = REGISTRY.get(name)
    reason = backend.unsupported_reason(shape, CPU)
    if reason is not None:
        assert name != "eager"  # eager runs every workload
        assert re.search(r"does not run the (paged|varlen) workload: PyTorch's SDPA has no|has no logit soft", reason)
        return
    qkv = make_qkv(shape, seed=0)
    output = qkv.canonical_output(backend.run(*qkv.call_arguments(backend.layout)), backend.layout)
    assert torch.allclose(output.double(), reference_output(qkv, torch.float64), atol=1e-5)


@pytest.mark.parametrize("workload", ["paged", "varlen"])
def test_flex_runs_paged_and_varlen_through_its_own_machinery(workload: str) -> None:
    """PagedAttention with our block table; a document mask over the packed sequences (compiled: slow on a CPU)."""
    shape = case(workload, 40, q_len=2, softcap=3.0)
    qkv = make_qkv(shape, seed=0)
    flex = REGISTRY.get("flex")
    assert flex.unsupported_reason(shape, CPU) is None
    output = qkv.canonical_output(flex.run(*qkv.call_arguments("bhsd")), "bhsd")
    assert torch.allclose(output.double(), reference_output(qkv, torch.float64), atol=1e-5)
    assert "flex" in qkv.index.memo  # type: ignore[union-attr]  # prepared once, on the untimed first call
    qkv.release_layouts()
    assert not qkv.index.memo  # type: ignore[union-attr]


def test_a_large_paged_mask_is_built_by_a_compiled_create_block_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU a paged batch's mask spans every sequence's slots: it must not be materialised. (Inductor's CPU
    code for a compiled create_block_mask does not build here, so the compiled one is stood in for.)"""
    from torch.nn.attention.flex_attention import create_block_mask

    from pytest_attnperf.backends import flex

    compiled: list[tuple[int, ...]] = []

    def stand_in(*arguments: Any, **options: Any) -> Any:
        compiled.append(arguments[1:5])
        return create_block_mask(*arguments, **options)

    monkeypatch.setattr(flex, "_EAGER_MASK_ELEMENTS", 1)  # this toy mask counts as large
    monkeypatch.setattr(flex, "_compiled_create_block_mask", lambda: stand_in)
    shape = case("paged", 40, q_len=3)
    qkv = make_qkv(shape, seed=0)
    output = qkv.canonical_output(flex.flex(*qkv.call_arguments("bhsd")), "bhsd")
    assert len(compiled) == 1
    assert torch.allclose(output.double(), reference_output(qkv, torch.float64), atol=1e-5)


def test_a_packed_mask_is_never_evaluated_element_by_element(monkeypatch: pytest.MonkeyPatch) -> None:
    """A varlen batch's mask (8G elements at 4 x 32K) comes from the sequences' boundaries (backends/packed_mask)."""
    from pytest_attnperf.backends import flex

    def refused(*arguments: object, **options: object) -> None:
        raise AssertionError("create_block_mask evaluated the packed mask element by element")

    monkeypatch.setattr(flex, "block_mask", refused)
    monkeypatch.setattr("torch.nn.attention.flex_attention.create_block_mask", refused)
    shape = case("varlen", 40, q_len=3)
    qkv = make_qkv(shape, seed=0)
    output = qkv.canonical_output(flex.flex(*qkv.call_arguments("bhsd")), "bhsd")
    assert torch.allclose(output.double(), reference_output(qkv, torch.float64), atol=1e-5)
