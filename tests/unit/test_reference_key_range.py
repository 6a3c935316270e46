"""The fp32 reference reads, per block of query rows, only the keys some row of it may see: the same attention."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_attnperf.measure.reference import eager_attention, key_range, reference_attention


def test_a_block_reads_the_union_of_its_rows_bands() -> None:
    assert key_range(8, 8, 2, 4, causal=True, window=(-1, -1)) == slice(0, 4)  # rows 2, 3 see keys 0..3
    assert key_range(8, 8, 4, 6, causal=False, window=(2, 0)) == slice(2, 6)  # a sliding window of 2 back
    assert key_range(1, 64, 0, 1, causal=True, window=(-1, -1)) == slice(0, 64)  # decode: the whole cache
    assert key_range(4, 64, 0, 2, causal=True, window=(-1, -1)) == slice(0, 62)  # a chunk at the cache's end
    assert key_range(8, 8, 0, 8, causal=False, window=(-1, -1)) == slice(0, 8)  # no mask: every key
    # rows that see no key (q_len > k_len, causal): all keys, masked; they come out zero as before
    assert key_range(8, 4, 0, 2, causal=True, window=(-1, -1)) == slice(0, 4)


@settings(max_examples=60, deadline=None)
@given(
    q_len=st.integers(1, 24),
    k_len=st.integers(1, 24),
    causal=st.booleans(),
    left=st.integers(-1, 6),
    right=st.integers(-1, 6),
    chunk_rows=st.integers(1, 7),
)
def test_reading_only_the_seen_keys_gives_the_same_attention(
    q_len: int, k_len: int, causal: bool, left: int, right: int, chunk_rows: int
) -> None:
    generator = torch.Generator().manual_seed(q_len * 1000 + k_len)
    q, k, v = (torch.randn(1, 2, n, 8, dtype=torch.float64, generator=generator) for n in (q_len, k_len, k_len))
    window = (left, right)
    row_bytes = 2 * k_len * 8 * 3  # reference_attention's estimate per query row in float64
    chunked = reference_attention(
        q, k, v, causal=causal, window=window, compute_dtype=torch.float64, max_chunk_bytes=chunk_rows * row_bytes
    )
    whole = eager_attention(q, k, v, causal=causal, window=window)  # every key, masked
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
