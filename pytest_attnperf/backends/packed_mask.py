"""FlexAttention's block mask of packed sequences, computed from their boundaries instead of from every element.

``create_block_mask`` evaluates the mask function on every (query, key) pair: for a packed batch of 32K tokens
that is 2^30 pairs, a compiled kernel and seconds of the case's first call on an H100, once per process. A
document mask with a causal or sliding-window band lets each query see one interval of keys, so how many
pairs of a 128 x 128 tile are allowed is a sum of interval overlaps: (tokens x key tiles) work. The result is
the block mask ``create_block_mask`` makes, tensor for tensor (tests/unit/test_packed_mask.py compares them),
with the same mask function for the kernel to apply inside partial tiles.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..spec.shapes import Window, mask_bounds

TILE = 128  # FlexAttention's default sparse block size, both sides
ROWS_AT_ONCE = 8192  # queries counted at once (x the key tiles, int64): 16 MiB at 256 key tiles


def key_intervals(
    q_lens: Sequence[int], k_lens: Sequence[int], causal: bool, window: Window, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every packed query, the first and last packed key it sees (first > last: none).

    A query at position p of its sequence sits on the diagonal at key p + (k_len - q_len) (bottom-right aligned)
    and sees its own sequence's keys within the band ``mask_bounds`` gives: the rule of ``flex.band``."""
    left, right = mask_bounds(causal, window)
    q = torch.tensor(list(q_lens), device=device, dtype=torch.int64)
    k = torch.tensor(list(k_lens), device=device, dtype=torch.int64)
    k_starts = torch.cumsum(k, 0) - k
    sequence = torch.repeat_interleave(torch.arange(len(q_lens), device=device), q)
    position = torch.arange(int(q.sum()), device=device) - (torch.cumsum(q, 0) - q)[sequence]
    diagonal = position + (k - q)[sequence]
    first = diagonal - left if left >= 0 else torch.zeros_like(diagonal)
    last = diagonal + right if right >= 0 else k[sequence] - 1
    first, last = first.clamp(min=0), torch.minimum(last, k[sequence] - 1)
    return k_starts[sequence] + first, k_starts[sequence] + last


@functools.cache
def available() -> bool:
    """Whether this torch's BlockMask.from_kv_blocks takes ``seq_lengths`` (torch 2.6 on): without it a mask's
    lengths would be rounded up to whole tiles, so torch 2.5 keeps create_block_mask."""
    from torch.nn.attention.flex_attention import BlockMask

    return "seq_lengths" in inspect.signature(BlockMask.from_kv_blocks).parameters


def _ordered(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(count per row, column indices listed ones first): BlockMask's layout, ordered as create_block_mask does."""
    dense = blocks.to(torch.int32)
    indices = torch.argsort(dense, dim=-1, descending=True, stable=True)
    return dense.sum(dim=-1).to(torch.int32), indices.to(torch.int32)


def packed_block_mask(
    mask_mod: Callable[..., Any],
    q_lens: Sequence[int],
    k_lens: Sequence[int],
    causal: bool,
    window: Window,
    device: torch.device,
) -> Any:
    """The BlockMask of ``mask_mod`` (a document mask with the band of ``causal``/``window``) over packed sequences."""
    from torch.nn.attention.flex_attention import BlockMask

    first, last = key_intervals(q_lens, k_lens, causal, window, device)
    q_total, k_total = int(sum(q_lens)), int(sum(k_lens))
    q_tiles, k_tiles = -(-q_total // TILE), -(-k_total // TILE)
    tile_first = torch.arange(k_tiles, device=device) * TILE
    tile_last = torch.clamp(tile_first + TILE - 1, max=k_total - 1)
    allowed = torch.zeros(q_tiles, k_tiles, dtype=torch.int64, device=device)  # allowed pairs per tile
    for start in range(0, q_total, ROWS_AT_ONCE):  # bounded memory: rows x key tiles at a time
        rows = torch.arange(start, min(start + ROWS_AT_ONCE, q_total), device=device)
        # each query's allowed keys in each key tile: the overlap of two intervals
        overlap = torch.minimum(last[rows, None], tile_last) - torch.maximum(first[rows, None], tile_first) + 1
        allowed.index_add_(0, rows // TILE, overlap.clamp(min=0))
    full = allowed == TILE * TILE  # a tile cut by the end of the batch is never full (create_block_mask pads)
    partial = (allowed > 0) & ~full
    kv_count, kv_indices = _ordered(partial[None, None])
    full_count, full_indices = _ordered(full[None, None])
    return BlockMask.from_kv_blocks(
        kv_count,
        kv_indices,
        full_count,
        full_indices,
        BLOCK_SIZE=(TILE, TILE),
        mask_mod=mask_mod,
        seq_lengths=(q_total, k_total),
    )
