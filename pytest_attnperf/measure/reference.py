"""Materialised ("standard") attention: the eager backend and the high-precision reference, for every workload.

Tensors are (batch, heads, seqlen, head_dim); the mask follows the rule of
:mod:`pytest_attnperf.spec.shapes` (a bottom-right aligned ``(left, right)`` band). A paged case's
reference reads the logical cache, a varlen case's runs each packed sequence on its own.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..spec.shapes import NO_WINDOW, AttnShape, Window, has_rows_without_keys, mask_bounds
from .inputs import QKV, PagedKV


def band_mask(
    q_len: int,
    k_len: int,
    *,
    causal: bool,
    window: Window,
    device: torch.device,
    row_start: int = 0,
    row_stop: int | None = None,
) -> torch.Tensor | None:
    """Boolean (rows, k_len) mask of the keys each query may attend to, or None when all may."""
    left, right = mask_bounds(causal, window)
    if left < 0 and right < 0:
        return None
    stop = q_len if row_stop is None else row_stop
    offset = k_len - q_len
    rows = torch.arange(row_start, stop, device=device).unsqueeze(1) + offset
    cols = torch.arange(k_len, device=device).unsqueeze(0)
    allowed = torch.ones(stop - row_start, k_len, dtype=torch.bool, device=device)
    if right >= 0:
        allowed &= cols <= rows + right
    if left >= 0:
        allowed &= cols >= rows - left
    return allowed


def cap_scores(scores: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Logit soft-capping (Gemma-2, FlashAttention's ``softcap``): softcap * tanh(scaled score / softcap)."""
    return scores if softcap is None else torch.tanh(scores / softcap) * softcap


def expand_kv_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """Repeat grouped key/value heads so every query head has its own (GQA -> MHA)."""
    kv_heads = tensor.shape[1]
    if kv_heads == heads:
        return tensor
    return tensor.repeat_interleave(heads // kv_heads, dim=1)


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    window: Window = NO_WINDOW,
    scale: float | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """matmul, softmax, matmul in the input dtype: the full score matrix lives in memory."""
    heads, q_len, k_len = q.shape[1], q.shape[2], k.shape[2]
    k = expand_kv_heads(k, heads)
    v = expand_kv_heads(v, heads)
    softmax_scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = cap_scores(torch.matmul(q, k.transpose(-2, -1)) * softmax_scale, softcap)
    allowed = band_mask(q_len, k_len, causal=causal, window=window, device=q.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    # A query that sees no key gets a row of NaN; FlashAttention returns zeros there. Decided from the
    # shape, not the mask, so the call never waits on the GPU (and can be captured in a CUDA graph).
    if has_rows_without_keys(q_len, k_len, causal=causal, window=window):
        weights = weights.nan_to_num(0.0)
    return torch.matmul(weights, v)


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    window: Window = NO_WINDOW,
    scale: float | None = None,
    softcap: float | None = None,
    compute_dtype: torch.dtype = torch.float32,
    max_chunk_bytes: int = 1 << 30,
) -> torch.Tensor:
    """Attention computed in ``compute_dtype`` a block of query rows at a time, returned in that dtype.

    Chunking keeps the reference's memory bounded (a 32K fp32 score matrix would be 128 GiB for
    32 heads) without changing any row's arithmetic. A block reads only the keys some row of it may see
    (:func:`key_range`): a masked key's weight is exactly 0, so the causal 32K reference does half the work.
    """
    batch, heads, q_len, _ = q.shape
    k_len = k.shape[2]
    softmax_scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    k = expand_kv_heads(k, heads).to(compute_dtype)
    v = expand_kv_heads(v, heads).to(compute_dtype)
    bytes_per_row = batch * heads * k_len * torch.finfo(compute_dtype).bits // 8 * 3
    rows_per_chunk = max(1, min(q_len, max_chunk_bytes // max(1, bytes_per_row)))
    output = torch.empty(q.shape, dtype=compute_dtype, device=q.device)
    # TF32 would make an fp32 reference only as precise as the kernels it judges.
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for start in range(0, q_len, rows_per_chunk):
            stop = min(q_len, start + rows_per_chunk)
            q_rows = q[:, :, start:stop].to(compute_dtype)
            keys = key_range(q_len, k_len, start, stop, causal=causal, window=window)
            scores = cap_scores(torch.matmul(q_rows, k[:, :, keys].transpose(-2, -1)) * softmax_scale, softcap)
            allowed = band_mask(
                q_len, k_len, causal=causal, window=window, device=q.device, row_start=start, row_stop=stop
            )
            if allowed is not None:
                scores.masked_fill_(~allowed[:, keys], float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            if allowed is not None:
                weights = weights.nan_to_num_(0.0)
            output[:, :, start:stop] = torch.matmul(weights, v[:, :, keys])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    return output


def key_range(q_len: int, k_len: int, row_start: int, row_stop: int, *, causal: bool, window: Window) -> slice:
    """The keys that query rows ``row_start:row_stop`` may see, as one slice (the band's union over the rows);
    every key when none of them sees any (their rows come out zero, as they do over all keys)."""
    left, right = mask_bounds(causal, window)
    offset = k_len - q_len
    first = max(0, row_start + offset - left) if left >= 0 else 0
    stop = min(k_len, row_stop - 1 + offset + right + 1) if right >= 0 else k_len
    return slice(first, stop) if first < stop else slice(0, k_len)


def gather_pages(pool: torch.Tensor, paged: PagedKV, k_len: int) -> torch.Tensor:
    """A paged pool (1, kv_heads, pages * page_size, head_dim) read back as (batch, kv_heads, k_len, head_dim)."""
    tokens = torch.arange(k_len, device=pool.device)
    pages = paged.block_table.long()[:, tokens // paged.page_size]  # (batch, k_len) physical page of each token
    slots = pages * paged.page_size + tokens % paged.page_size
    return pool[0][:, slots].transpose(0, 1)


def sequence_slices(shape: AttnShape) -> list[tuple[slice, slice]]:
    """The packed rows of each varlen sequence: (query rows, key rows)."""
    q_start = k_start = 0
    slices = []
    for q_len, k_len in shape.sequences():
        slices.append((slice(q_start, q_start + q_len), slice(k_start, k_start + k_len)))
        q_start, k_start = q_start + q_len, k_start + k_len
    return slices


def reference_output(qkv: QKV, compute_dtype: torch.dtype) -> torch.Tensor:
    """The case's output computed in ``compute_dtype`` from the logical inputs, in the canonical layout."""
    shape = qkv.shape
    arguments: dict[str, Any] = {
        "causal": shape.causal,
        "window": shape.window,
        "scale": shape.scale,
        "softcap": shape.softcap,
    }
    if shape.workload != "varlen":
        return reference_attention(qkv.q, qkv.k, qkv.v, compute_dtype=compute_dtype, **arguments)
    parts = [
        reference_attention(
            qkv.q[:, :, rows], qkv.k[:, :, keys], qkv.v[:, :, keys], compute_dtype=compute_dtype, **arguments
        )
        for rows, keys in sequence_slices(shape)
    ]
    return torch.cat(parts, dim=2)
