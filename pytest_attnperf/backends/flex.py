"""FlexAttention, compiled: block masks with the bottom-right offset, paged caches through its PagedAttention,
packed varlen batches through a document mask, soft-capping as a ``score_mod``.

Everything a call needs besides the kernel (block masks, the page table's mapping) is made on its first,
untimed call and kept: dense masks in a small cache by shape, paged and varlen ones with the case's index
(the varlen one from the sequences' boundaries, :mod:`.packed_mask`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ..measure.inputs import PackedSeqs, PagedKV
from ..spec.shapes import AttnShape, mask_bounds
from . import packed_mask
from .registry import Unsupported

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _raise_recompile_limit() -> None:
    import torch._dynamo

    # Every new shape recompiles; past the limit dynamo would fall back to the slow unfused
    # path without a word. Raise the limit, and make hitting it an error, not a fallback.
    for option, value in (("recompile_limit", 256), ("cache_size_limit", 256), ("fail_on_recompile_limit_hit", True)):
        if hasattr(torch._dynamo.config, option):
            setattr(torch._dynamo.config, option, value)


@functools.lru_cache(maxsize=1)
def compiled_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    _raise_recompile_limit()
    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=1)
def _compiled_create_block_mask() -> Callable[..., Any]:
    from torch.nn.attention.flex_attention import create_block_mask

    _raise_recompile_limit()
    return torch.compile(create_block_mask)  # what torch recommends over its deprecated _compile=True


def band(offset: torch.Tensor | int, causal: bool, window: tuple[int, int]) -> Callable[[Any, Any], Any]:
    """(query row, key) -> allowed, for rows whose diagonal sits ``offset`` keys on (the mask rule of spec.shapes)."""
    left, right = mask_bounds(causal, window)

    def allowed(q_idx: Any, kv_idx: Any) -> Any:
        diagonal = q_idx + offset
        keep = kv_idx >= 0
        if right >= 0:
            keep = keep & (kv_idx <= diagonal + right)
        if left >= 0:
            keep = keep & (kv_idx >= diagonal - left)
        return keep

    return allowed


_EAGER_MASK_ELEMENTS = 1 << 28  # above this, the mask is built by a compiled kernel, never materialised whole


def block_mask(mask_mod: MaskMod, batch: int | None, q_len: int, k_len: int, device: str, **options: Any) -> Any:
    """create_block_mask, compiled when the (batch x) q_len x k_len boolean mask would be too large to hold."""
    from torch.nn.attention.flex_attention import create_block_mask

    large = (batch or 1) * q_len * k_len > _EAGER_MASK_ELEMENTS
    make = _compiled_create_block_mask() if large else create_block_mask
    return make(mask_mod, B=batch, H=None, Q_LEN=q_len, KV_LEN=k_len, device=device, **options)


@functools.lru_cache(maxsize=32)
def _dense_block_mask(q_len: int, k_len: int, causal: bool, window: tuple[int, int], device: str) -> Any:
    left, right = mask_bounds(causal, window)
    if left < 0 and right < 0:
        return None
    rule = band(k_len - q_len, causal, window)

    def mask_mod(batch: torch.Tensor, head: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return rule(q_idx, kv_idx)  # type: ignore[no-any-return]

    from torch.nn.attention.flex_attention import create_block_mask

    # Built as it always was (measured this way on the H100 up to 32K): the packed and paged masks below may be
    # far larger (every sequence of a batch in one mask), so they go through block_mask.
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=q_len, KV_LEN=k_len, device=device)


@functools.lru_cache(maxsize=8)
def _softcap_mod(cap: float) -> Callable[..., torch.Tensor]:
    """Gemma-2's soft-capping as a score_mod: the score it gets is already scaled, as in FlashAttention."""

    def softcap(score: torch.Tensor, batch: Any, head: Any, q_idx: Any, kv_idx: Any) -> torch.Tensor:
        return torch.tanh(score / cap) * cap

    return softcap


def forget_compiled_kernels() -> None:
    """Drop the compiled FlexAttention and its block masks (after torch._dynamo.reset())."""
    compiled_flex.cache_clear()
    _compiled_create_block_mask.cache_clear()
    _dense_block_mask.cache_clear()


def flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, index: Any = None) -> torch.Tensor:
    if q.is_cuda and shape.head_dim < 16:
        raise Unsupported(f"flex on CUDA needs head_dim >= 16 (Inductor's flex_attention kernel), not {shape.head_dim}")
    score_mod = _softcap_mod(shape.softcap) if shape.softcap is not None else None
    if isinstance(index, PagedKV):
        block_mask, score_mod = _paged(q, k, shape, index, score_mod)
    elif isinstance(index, PackedSeqs):
        block_mask = _packed(q, shape, index)
    else:
        block_mask = _dense_block_mask(shape.q_len, shape.k_len, shape.causal, shape.window, str(q.device))
    return compiled_flex()(
        q, k, v, block_mask=block_mask, score_mod=score_mod, scale=shape.scale, enable_gqa=shape.kv_heads != shape.heads
    )


def _paged(
    q: torch.Tensor, pool: torch.Tensor, shape: AttnShape, paged: PagedKV, score_mod: Callable[..., Any] | None
) -> tuple[Any, Callable[..., Any]]:
    """The physical block mask and score_mod of a paged case, through torch's PagedAttention (made once)."""
    if "flex" not in paged.memo:
        try:
            from torch.nn.attention.experimental._paged_attention import PagedAttention
        except ImportError as error:
            raise Unsupported(f"flex needs torch's PagedAttention for a paged cache: {error}") from None
        pages = pool.shape[2] // paged.page_size
        table = paged.block_table.long()
        per_sequence = table.shape[1]
        attention = PagedAttention(pages, paged.page_size, shape.batch, device=str(q.device))
        # Our block table, not pages PagedAttention would pick: logical page j of sequence b is table[b, j].
        attention.page_table[:, :per_sequence] = table
        logical = torch.arange(per_sequence, device=q.device).expand_as(table)
        attention.physical_to_logical.scatter_(1, table, logical)
        attention.capacity.fill_(per_sequence * paged.page_size)
        rule = band(shape.k_len - shape.q_len, shape.causal, shape.window)

        def mask_mod(
            batch: torch.Tensor, head: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
        ) -> torch.Tensor:
            return rule(q_idx, kv_idx)  # type: ignore[no-any-return]

        kv_len = paged.seqlens.long()
        slots = per_sequence * paged.page_size
        logical_mask = block_mask(
            mask_mod, shape.batch, shape.q_len, slots, str(q.device), BLOCK_SIZE=(128, paged.page_size)
        )
        paged.memo["flex"] = (
            attention.convert_logical_block_mask(logical_mask, kv_len=kv_len),
            attention.get_score_mod(score_mod, kv_len=kv_len),
        )
    return paged.memo["flex"]  # type: ignore[no-any-return]


def _packed(q: torch.Tensor, shape: AttnShape, packed: PackedSeqs) -> Any:
    """A document mask over the packed sequences: a query sees its own sequence's keys, bottom-right aligned."""
    if "flex" not in packed.memo:
        assert shape.q_lens is not None
        assert shape.k_lens is not None
        device = q.device
        sequences = torch.arange(shape.batch, device=device)
        q_lens = torch.tensor(shape.q_lens, device=device)
        k_lens = torch.tensor(shape.k_lens, device=device)
        q_sequence = sequences.repeat_interleave(q_lens)
        k_sequence = sequences.repeat_interleave(k_lens)
        q_position = torch.arange(int(q_lens.sum()), device=device) - packed.cu_seqlens_q.long()[q_sequence]
        k_position = torch.arange(int(k_lens.sum()), device=device) - packed.cu_seqlens_k.long()[k_sequence]
        offset = k_lens - q_lens

        def mask_mod(
            batch: torch.Tensor, head: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
        ) -> torch.Tensor:
            sequence = q_sequence[q_idx]
            rule = band(offset[sequence], shape.causal, shape.window)
            return (sequence == k_sequence[kv_idx]) & rule(q_position[q_idx], k_position[kv_idx])  # type: ignore[no-any-return]

        if packed_mask.available():  # from the sequences' boundaries, not mask_mod on every pair (2^30 at 32K)
            packed.memo["flex"] = packed_mask.packed_block_mask(
                mask_mod, shape.q_lens, shape.k_lens, shape.causal, shape.window, device
            )
        else:
            packed.memo["flex"] = block_mask(mask_mod, None, q_sequence.numel(), k_sequence.numel(), str(device))
    return packed.memo["flex"]
