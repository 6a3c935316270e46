"""The GPU backends' calls, checked on a CPU against fakes of their libraries.

flash-attn 2, FlashAttention-4 and torch's varlen_attn cannot run here. Each fake below takes exactly the
arguments its library's documented interface takes, enforces the rules the research note found in its
source (int32 index tensors, a (batch,) cache_seqlens tensor, flash-attn's page size multiple of 256, no
in-place append, FlashAttention-4's page table without cu_seqlens_k, torch 2.11's smaller signature), and
computes the attention from those arguments alone. A backend that passes a wrong layout, a wrong index or
the wrong lengths gets a wrong output, and the comparison with the reference fails.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch
from fast_run import CPU

from pytest_attnperf import REGISTRY
from pytest_attnperf.backends import varlen as torch_varlen
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.reference import eager_attention, reference_output
from pytest_attnperf.spec.shapes import AttnShape, shape_for_case

SMALL = {"batch": 2, "heads": 4, "kv_heads": 2, "head_dim": 8, "dtype": "float32", "causal": True, "page_size": 256}
H200 = dataclasses.replace(CPU, device="cuda:0", name="NVIDIA H200", capability=(9, 0), generation="Hopper")
CALLS: list[tuple[str, dict[str, Any]]] = []


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options: Any) -> torch.Tensor:
    """One sequence, (seqlen, heads, head_dim) in and out, bottom-right causal: what every kernel computes."""
    window = tuple(-1 if side is None else side for side in options["window_size"])
    output = eager_attention(
        q.transpose(0, 1)[None],
        k.transpose(0, 1)[None],
        v.transpose(0, 1)[None],
        causal=options["causal"],
        window=window,  # type: ignore[arg-type]
        scale=options["softmax_scale"],
        softcap=options.get("softcap") or None,
    )
    return output[0].transpose(0, 1)


def _int32(tensor: torch.Tensor, what: str) -> None:
    assert isinstance(tensor, torch.Tensor), f"{what} must be a tensor"
    assert tensor.dtype == torch.int32, f"{what} must be int32"
    assert tensor.is_contiguous(), f"{what} must be contiguous"


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "causal": kwargs.get("causal", False),
        "window_size": kwargs.get("window_size", (-1, -1)),
        "softmax_scale": kwargs.get("softmax_scale"),
        "softcap": kwargs.get("softcap", 0.0),
    }


# ---------------------------------------------------------------- flash-attn 2's interface


def _batched(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    return torch.stack([_attend(q[b], k[b], v[b], **_options(kwargs)) for b in range(q.shape[0])])


def fa2_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    CALLS.append(("flash_attn_func", kwargs))
    return _batched(q, k, v, kwargs)


def fa2_with_kvcache(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k: Any = None, v: Any = None, **kwargs: Any
) -> torch.Tensor:
    CALLS.append(("flash_attn_with_kvcache", kwargs))
    assert k is None, "given k/v, flash_attn_with_kvcache appends them into the cache in place"
    assert v is None
    seqlens, table = kwargs["cache_seqlens"], kwargs.get("block_table")
    _int32(seqlens, "cache_seqlens")
    assert seqlens.shape == (q.shape[0],), "seqlens_k must have shape (batch_size)"
    outputs = []
    for b in range(q.shape[0]):
        if table is not None:
            _int32(table, "block_table")
            if k_cache.shape[1] % 256:
                raise RuntimeError("Paged KV cache block size must be divisible by 256")
            keys, values = (cache[table[b].long()].flatten(0, 1) for cache in (k_cache, v_cache))
        else:
            keys, values = k_cache[b], v_cache[b]
        length = int(seqlens[b])
        outputs.append(_attend(q[b], keys[:length], values[:length], **_options(kwargs)))
    return torch.stack(outputs)


def _varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor, options: dict[str, Any]
) -> torch.Tensor:
    _int32(cu_q, "cu_seqlens_q")
    _int32(cu_k, "cu_seqlens_k")
    parts = [
        _attend(q[cu_q[b] : cu_q[b + 1]], k[cu_k[b] : cu_k[b + 1]], v[cu_k[b] : cu_k[b + 1]], **options)
        for b in range(cu_q.numel() - 1)
    ]
    return torch.cat(parts)


def fa2_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
    **kwargs: Any,
) -> torch.Tensor:
    CALLS.append(("flash_attn_varlen_func", kwargs))
    assert isinstance(max_q, int)
    assert isinstance(max_k, int)
    return _varlen(q, k, v, cu_q, cu_k, _options(kwargs))


# ---------------------------------------------------------------- FlashAttention-4's interface


def fa4_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
    CALLS.append(("cute.flash_attn_func", kwargs))
    assert all(side is None or side >= 0 for side in kwargs["window_size"]), "FA4 spells unbounded None, not -1"
    return _batched(q, k, v, kwargs), None


def fa4_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
    CALLS.append(("cute.flash_attn_varlen_func", kwargs))
    options = _options(kwargs)
    table = kwargs.get("page_table")
    if table is None:
        return _varlen(q, k, v, kwargs["cu_seqlens_q"], kwargs["cu_seqlens_k"], options), None
    assert kwargs.get("cu_seqlens_k") is None, "page_table cannot be combined with cu_seqlens_k"
    _int32(table, "page_table")
    _int32(kwargs["seqused_k"], "seqused_k")
    assert q.dim() == 4, "a paged decode passes q as (batch, seqlen, heads, head_dim)"
    outputs = []
    for b in range(q.shape[0]):
        keys, values = (cache[table[b].long()].flatten(0, 1) for cache in (k, v))
        length = int(kwargs["seqused_k"][b])
        outputs.append(_attend(q[b], keys[:length], values[:length], **options))
    return torch.stack(outputs), None


# ---------------------------------------------------------------- torch's varlen_attn, 2.13 and 2.11


def varlen_213(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor | None,
    max_q: int,
    max_k: int,
    *,
    return_aux: Any = None,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
    enable_gqa: bool = False,
    seqused_k: torch.Tensor | None = None,
    block_table: torch.Tensor | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    CALLS.append(("varlen_attn", {"window_size": window_size, "enable_gqa": enable_gqa}))
    if query.shape[1] != key.shape[-2] and not enable_gqa:
        raise ValueError("Try setting enable_gqa=True for GQA.")
    options = {"causal": window_size == (-1, 0), "window_size": window_size, "softmax_scale": scale}
    if block_table is None:
        assert cu_seq_k is not None
        return _varlen(query, key, value, cu_seq_q, cu_seq_k, options)
    assert seqused_k is not None, "a block table needs seqused_k"
    _int32(block_table, "block_table")
    parts = []
    for b in range(cu_seq_q.numel() - 1):
        keys, values = (cache[block_table[b].long()].flatten(0, 1)[: int(seqused_k[b])] for cache in (key, value))
        parts.append(_attend(query[cu_seq_q[b] : cu_seq_q[b + 1]], keys, values, **options))
    return torch.cat(parts)


def varlen_211(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    max_k: int,
    *,
    return_aux: Any = None,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
) -> torch.Tensor:
    return varlen_213(
        query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=window_size, enable_gqa=True
    )


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def fake_flash(monkeypatch: pytest.MonkeyPatch) -> None:
    """flash_attn (FA2) and flash_attn.cute (FA4, with the cutlass DSL) as modules whose functions are the fakes above."""
    package = types.ModuleType("flash_attn")
    package.flash_attn_func = fa2_func  # type: ignore[attr-defined]
    package.flash_attn_with_kvcache = fa2_with_kvcache  # type: ignore[attr-defined]
    package.flash_attn_varlen_func = fa2_varlen  # type: ignore[attr-defined]
    package.__path__ = []  # a package, so flash_attn.cute can be found under it
    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func = fa4_func  # type: ignore[attr-defined]
    cute.flash_attn_varlen_func = fa4_varlen  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flash_attn", package)
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    cutlass = types.ModuleType("cutlass")  # the CuTe DSL FlashAttention-4 runs on
    cutlass.__spec__ = importlib.machinery.ModuleSpec("cutlass", None)
    monkeypatch.setitem(sys.modules, "cutlass", cutlass)
    CALLS.clear()


@pytest.fixture
def fake_varlen(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[..., torch.Tensor]], None]:
    """Install one of the varlen_attn fakes as torch.nn.attention.varlen.varlen_attn."""
    import torch.nn.attention.varlen as module

    def install(function: Callable[..., torch.Tensor]) -> None:
        monkeypatch.setattr(module, "varlen_attn", function)
        torch_varlen.parameters.cache_clear()
        CALLS.clear()

    yield install  # type: ignore[misc]
    torch_varlen.parameters.cache_clear()


def case(workload: str, context_len: int = 37, **fields: Any) -> AttnShape:
    return shape_for_case({**SMALL, "workload": workload, **fields}, context_len=context_len, seed=0, batch_given=True)


def run_against_reference(name: str, shape: AttnShape) -> None:
    backend = REGISTRY.get(name)
    qkv = make_qkv(shape, seed=0)
    output = qkv.canonical_output(backend.run(*qkv.call_arguments(backend.layout)), backend.layout)
    assert torch.allclose(output.double(), reference_output(qkv, torch.float64), atol=1e-5)


WORKLOADS = [
    ("prefill", {}),
    ("decode", {}),
    ("decode", {"q_len": 3, "softcap": 4.0}),
    ("chunked", {"window": (6, 0)}),
    ("paged", {"q_len": 2}),
    ("varlen", {}),
    ("varlen", {"q_len": 1}),
]
IDS = ["prefill", "decode", "decode-q3-softcap", "chunked-window", "paged-q2", "varlen", "varlen-decode"]


# ---------------------------------------------------------------- flash-attn 2


@pytest.mark.parametrize(("workload", "fields"), WORKLOADS, ids=IDS)
def test_flash_attn_2_calls_the_right_entry_point(fake_flash: None, workload: str, fields: dict[str, Any]) -> None:
    run_against_reference("flash-attn", case(workload, **fields))
    entry = {"prefill": "flash_attn_func", "varlen": "flash_attn_varlen_func"}.get(workload, "flash_attn_with_kvcache")
    assert [name for name, _ in CALLS] == [entry]
    assert ("softcap" in CALLS[0][1]) == ("softcap" in fields)


def test_flash_attn_2_refuses_pages_that_are_no_multiple_of_256_before_calling() -> None:
    backend = REGISTRY.get("flash-attn")
    reason = backend.check(case("paged", page_size=16), H200)  # type: ignore[misc]
    assert reason is not None
    assert "pages of a multiple of 256 tokens" in reason
    assert "not 16" in reason
    assert backend.check(case("paged"), H200) is None  # type: ignore[misc]


# ---------------------------------------------------------------- FlashAttention-4


@pytest.mark.parametrize(("workload", "fields"), WORKLOADS, ids=IDS)
def test_flash_attn_4_calls_the_right_entry_point(fake_flash: None, workload: str, fields: dict[str, Any]) -> None:
    run_against_reference("flash-attn-4", case(workload, **fields))
    entry = "cute.flash_attn_varlen_func" if workload in ("paged", "varlen") else "cute.flash_attn_func"
    assert [name for name, _ in CALLS] == [entry]


@pytest.mark.parametrize(
    ("capability", "fields", "fragment"),
    [
        ((9, 0), {"head_dim": 12}, "on Hopper takes head_dim 8..256 in steps of 8, not 12"),
        ((10, 0), {"head_dim": 192}, "on Blackwell takes head_dim up to 128, or 256, not 192"),
        ((12, 0), {"workload": "paged"}, "no paged KV cache on compute capability 12.x"),
    ],
)
def test_flash_attn_4_rules_per_architecture(
    capability: tuple[int, int], fields: dict[str, Any], fragment: str
) -> None:
    device = dataclasses.replace(H200, capability=capability)
    shape = case(**{"workload": "decode", **fields})
    reason = REGISTRY.get("flash-attn-4").check(shape, device)  # type: ignore[misc]
    assert reason is not None
    assert fragment in reason


def test_flash_attn_4_needs_hopper_and_says_so() -> None:
    ampere = dataclasses.replace(H200, capability=(8, 0), generation="Ampere")
    reason = REGISTRY.get("flash-attn-4").unavailable_reason(ampere)
    assert reason is not None
    assert "needs compute capability >= 9.0" in reason or "flash_attn.cute" in reason


# ---------------------------------------------------------------- torch's varlen_attn


@pytest.mark.parametrize(("workload", "fields"), WORKLOADS, ids=IDS)
def test_torch_varlen_on_the_213_signature(
    fake_varlen: Callable[[Callable[..., torch.Tensor]], None], workload: str, fields: dict[str, Any]
) -> None:
    fake_varlen(varlen_213)
    shape = case(workload, **{key: value for key, value in fields.items() if key != "softcap"})
    assert REGISTRY.get("torch-varlen").check(shape, H200) is None  # type: ignore[misc]
    run_against_reference("torch-varlen", shape)
    assert CALLS[-1][1]["enable_gqa"] is True  # 4 query heads over 2 KV heads


def test_torch_varlen_on_the_211_signature_has_no_paging(
    fake_varlen: Callable[[Callable[..., torch.Tensor]], None],
) -> None:
    fake_varlen(varlen_211)
    backend = REGISTRY.get("torch-varlen")
    reason = backend.check(case("paged"), H200)  # type: ignore[misc]
    assert reason == "this torch's varlen_attn has no block_table/seqused_k parameters (they came in torch 2.12)"
    run_against_reference("torch-varlen", case("decode", q_len=2))  # GQA without enable_gqa: 2.11 has no such flag


def test_torch_varlen_refuses_softcap() -> None:
    on_a_gpu = dataclasses.replace(REGISTRY.get("torch-varlen"), probe=None)  # the probe would need CUDA here
    reason = on_a_gpu.unsupported_reason(case("decode", dtype="float16", softcap=30.0), H200)
    assert reason == "torch-varlen has no logit soft-capping (softcap=30, as in Gemma-2)"


def test_torch_varlen_is_skipped_on_this_cpu_with_torchs_own_words() -> None:
    """torch 2.13's CPU build has varlen_attn but no kernel behind it: the probe says so, once per device."""
    reason = REGISTRY.get("torch-varlen").unavailable_reason(CPU)
    if reason is None:
        pytest.skip("this torch's varlen_attn runs on the CPU")
    assert reason.startswith("torch-varlen cannot run on cpu: torch's varlen_attn says ") or "lacks" in reason


def test_flash_attn_4_alone_does_not_pass_for_flash_attn_2(fake_flash: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """flash-attn-4's wheel has no flash_attn/__init__.py: `flash_attn` is then a namespace package holding only cute."""
    namespace = types.ModuleType("flash_attn")
    namespace.__path__ = []  # type: ignore[attr-defined]
    namespace.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None, is_package=True)
    sys.modules["flash_attn.cute"].__spec__ = importlib.machinery.ModuleSpec("flash_attn.cute", None)
    monkeypatch.setitem(sys.modules, "flash_attn", namespace)
    assert REGISTRY.get("flash-attn").unavailable_reason(H200) == (
        "flash-attn needs the Python module 'flash_attn.flash_attn_interface', which is not installed "
        "(pip install 'pytest-attnperf[flash]')"
    )
    assert REGISTRY.get("flash-attn-4").unavailable_reason(H200) is None
