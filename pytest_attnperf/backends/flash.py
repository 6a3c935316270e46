"""FlashAttention packages: flash-attn 2 (``flash_attn``), FlashAttention-3 (``flash_attn_interface``) and
FlashAttention-4 (``flash_attn.cute``, CuTe DSL), each on every workload its interface takes.

All take (batch, seqlen, heads, head_dim) tensors (``layout="bshd"``) and align causal masking bottom-right.
flash-attn 2's ``flash_attn_with_kvcache`` writes ``k``/``v`` into the cache *in place* when given them:
they are never given here (the decode step's own keys are already in the cache), so repeated timed calls
read the same cache and change nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..measure.inputs import PackedSeqs, PagedKV
from ..measure.known_noise import FA4_AUX_DATA, without
from ..spec.device_info import DeviceInfo
from ..spec.shapes import AttnShape, mask_bounds
from .registry import Unsupported

FA2_PAGE_MULTIPLE = 256  # flash_api.cpp: "Paged KV cache block size must be divisible by 256"


def check_flash_window(name: str, shape: AttnShape) -> None:
    """flash-attn turns a -1 (unbounded) right window into k_len, which bottom-right alignment makes too short."""
    left, right = shape.window
    if not shape.causal and 0 <= left < shape.k_len and right < 0 and shape.q_len > shape.k_len + 1:
        raise Unsupported(
            f"{name} cannot take window={shape.window} with q_len {shape.q_len} > k_len {shape.k_len} + 1: it "
            "replaces the -1 by k_len, which under bottom-right alignment hides keys from the first query rows"
        )


@functools.lru_cache(maxsize=16)
def uniform_lengths(batch: int, length: int, device: str) -> torch.Tensor:
    """(batch,) int32 of one length, made once: a tensor, never an int (an int with a block table is
    expanded over the pages, not the batch, and fails flash-attn's shape check)."""
    return torch.full((batch,), length, dtype=torch.int32, device=device)


def _fa2_keywords(shape: AttnShape) -> dict[str, Any]:
    keywords: dict[str, Any] = {"softmax_scale": shape.scale, "causal": shape.causal, "window_size": shape.window}
    if shape.softcap is not None:
        keywords["softcap"] = shape.softcap
    return keywords


def flash_attn_2(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, index: Any = None
) -> torch.Tensor:
    import flash_attn

    check_flash_window("flash-attn", shape)
    keywords = _fa2_keywords(shape)
    if isinstance(index, PackedSeqs):
        return flash_attn.flash_attn_varlen_func(  # type: ignore[no-any-return]
            q, k, v, index.cu_seqlens_q, index.cu_seqlens_k, index.max_q, index.max_k, **keywords
        )
    if isinstance(index, PagedKV):
        return flash_attn.flash_attn_with_kvcache(  # type: ignore[no-any-return]
            q, k, v, cache_seqlens=index.seqlens, block_table=index.block_table, **keywords
        )
    if shape.workload == "prefill":
        return flash_attn.flash_attn_func(q, k, v, **keywords)  # type: ignore[no-any-return]
    # decode and chunked: the serving entry point, split-KV included; no k=/v=, so no in-place append.
    seqlens = uniform_lengths(shape.batch, shape.k_len, str(q.device))
    return flash_attn.flash_attn_with_kvcache(q, k, v, cache_seqlens=seqlens, **keywords)  # type: ignore[no-any-return]


def flash_attn_2_check(shape: AttnShape, info: DeviceInfo) -> str | None:
    if shape.page_size is not None and shape.page_size % FA2_PAGE_MULTIPLE:
        return (
            f"flash-attn takes paged KV caches only in pages of a multiple of {FA2_PAGE_MULTIPLE} tokens ('Paged KV "
            f"cache block size must be divisible by 256'), not {shape.page_size} (--attnperf-page-size=256)"
        )
    return None


def flash_attn_3(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    from flash_attn_interface import flash_attn_func

    check_flash_window("flash-attn-3", shape)
    output = flash_attn_func(q, k, v, **_fa2_keywords(shape))
    # Some FA3 releases return (out, softmax_lse).
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def _fa4_keywords(shape: AttnShape) -> dict[str, Any]:
    # FlashAttention-4 spells "unbounded" None, not -1; causal closes the right side itself.
    left, right = mask_bounds(shape.causal, shape.window)
    keywords: dict[str, Any] = {
        "softmax_scale": shape.scale,
        "causal": shape.causal,
        "window_size": (None if left < 0 else left, None if right < 0 or shape.causal else right),
    }
    if shape.softcap is not None:
        keywords["softcap"] = shape.softcap
    return keywords


@without(FA4_AUX_DATA)  # its CuTe DSL's note per new problem, filtered only here (host side, under the spin kernel)
def flash_attn_4(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, index: Any = None
) -> torch.Tensor:
    from flash_attn.cute import flash_attn_func, flash_attn_varlen_func

    keywords = _fa4_keywords(shape)
    if isinstance(index, PackedSeqs):
        output = flash_attn_varlen_func(
            q,
            k,
            v,
            cu_seqlens_q=index.cu_seqlens_q,
            cu_seqlens_k=index.cu_seqlens_k,
            max_seqlen_q=index.max_q,
            max_seqlen_k=index.max_k,
            **keywords,
        )
    elif isinstance(index, PagedKV):
        # A 4-D q with per-sequence valid lengths: the page table cannot be combined with cu_seqlens_k.
        output = flash_attn_varlen_func(q, k, v, page_table=index.block_table, seqused_k=index.seqlens, **keywords)
    else:
        output = flash_attn_func(q, k, v, **keywords)
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]  # (out, lse)


def flash_attn_4_probe(info: DeviceInfo) -> str | None:
    """flash_attn.cute imported (the registry checked that): does it hold the entry points this backend calls?"""
    try:
        from flash_attn.cute import flash_attn_func, flash_attn_varlen_func  # noqa: F401
    except ImportError as error:
        return f"flash-attn-4's flash_attn.cute lacks its entry points ({error}): pip install -U flash-attn-4"
    return None


def flash_attn_4_check(shape: AttnShape, info: DeviceInfo) -> str | None:
    """FlashAttention-4's head-dim and paging rules per architecture (its interface asserts them)."""
    major = info.capability[0] if info.capability else 0
    head_dim = shape.head_dim
    if major == 9 and not (8 <= head_dim <= 256 and head_dim % 8 == 0):
        return f"flash-attn-4 on Hopper takes head_dim 8..256 in steps of 8, not {head_dim}"
    if major in (10, 11) and not (head_dim <= 128 or head_dim == 256):
        return f"flash-attn-4 on Blackwell takes head_dim up to 128, or 256, not {head_dim}"
    if shape.workload == "paged" and major not in (9, 10, 11):
        return f"flash-attn-4 has no paged KV cache on compute capability {major}.x (Hopper and Blackwell B200 only)"
    return None
