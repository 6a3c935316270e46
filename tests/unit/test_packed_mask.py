"""The varlen FlexAttention block mask, computed from the sequences' boundaries, is create_block_mask's, exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_attnperf.backends import flex
from pytest_attnperf.backends.packed_mask import key_intervals, packed_block_mask
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.spec.shapes import AttnShape

pytest.importorskip("torch.nn.attention.flex_attention")
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

LAYOUT = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices")
TRANSPOSED = ("q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")


def assert_same_mask(got: BlockMask, expected: BlockMask) -> None:
    for name in (*LAYOUT, *TRANSPOSED):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name  # torch.equal ignores dtypes
    assert got.seq_lengths == expected.seq_lengths
    assert got.BLOCK_SIZE == expected.BLOCK_SIZE


@st.composite
def packed_shapes(draw: st.DrawFn) -> AttnShape:
    """Packed batches whose sequences straddle the 128-token tiles, under every kind of band."""
    batch = draw(st.integers(1, 4))
    k_lens = draw(st.lists(st.integers(1, 400), min_size=batch, max_size=batch))
    q_lens = [draw(st.integers(1, k)) for k in k_lens]
    causal = draw(st.booleans())
    window = draw(st.sampled_from([(-1, -1), (0, 0), (64, -1), (-1, 5), (100, 30), (130, 0)]))
    return AttnShape(
        max(q_lens),
        max(k_lens),
        batch=batch,
        heads=1,
        kv_heads=1,
        head_dim=16,
        dtype="float32",
        causal=causal,
        window=window,
        workload="varlen",
        q_lens=tuple(q_lens),
        k_lens=tuple(k_lens),
    )


@settings(max_examples=60, deadline=None)
@given(packed_shapes())
def test_the_varlen_block_mask_is_the_one_create_block_mask_makes(shape: AttnShape) -> None:
    qkv = make_qkv(shape, seed=0)
    got = flex._packed(qkv.q, shape, qkv.index)  # the backend's own path (kept in the case's index)
    expected = create_block_mask(got.mask_mod, None, None, sum(shape.q_lens), sum(shape.k_lens), device="cpu")
    assert_same_mask(got, expected)


def test_a_torch_without_seq_lengths_keeps_create_block_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_attnperf.backends import packed_mask

    assert packed_mask.available()  # this torch (2.6 or later) takes seq_lengths
    made: list[int] = []
    monkeypatch.setattr(packed_mask, "available", lambda: False)
    monkeypatch.setattr(flex, "block_mask", lambda *arguments, **options: made.append(1) or "the element-wise mask")
    shape = AttnShape(3, 5, batch=2, heads=1, kv_heads=1, head_dim=16, dtype="float32", workload="varlen",
                      q_lens=(3, 2), k_lens=(5, 4))  # fmt: skip
    qkv = make_qkv(shape, seed=0)
    assert flex._packed(qkv.q, shape, qkv.index) == "the element-wise mask"
    assert made == [1]


def test_each_query_sees_one_interval_of_its_own_sequence() -> None:
    # two sequences of 3 queries over 4 and 5 keys, causal: bottom-right aligned, the second starts at key 4
    first, last = key_intervals((3, 3), (4, 5), True, (-1, -1), torch.device("cpu"))
    assert first.tolist() == [0, 0, 0, 4, 4, 4]
    assert last.tolist() == [1, 2, 3, 6, 7, 8]
    # a window of one key to the left: [diagonal - 1, diagonal]
    first, last = key_intervals((2,), (4,), True, (1, -1), torch.device("cpu"))
    assert (first.tolist(), last.tolist()) == ([1, 2], [2, 3])


def test_a_batch_longer_than_one_chunk_of_rows_counts_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_attnperf.backends import packed_mask

    monkeypatch.setattr(packed_mask, "ROWS_AT_ONCE", 100)  # chunks that cut through tiles and sequences
    q_lens, k_lens = (300, 129, 77), (300, 400, 77)
    rule = flex.band(0, True, (-1, -1))
    starts_q, starts_k = [0, 300, 429], [0, 300, 700]

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        sequence_q = (q >= starts_q[1]).int() + (q >= starts_q[2]).int()
        sequence_k = (k >= starts_k[1]).int() + (k >= starts_k[2]).int()
        offsets = torch.tensor([0, 271, 0])
        position_q = q - torch.tensor(starts_q)[sequence_q]
        position_k = k - torch.tensor(starts_k)[sequence_k]
        return (sequence_q == sequence_k) & rule(position_q + offsets[sequence_q], position_k)

    got = packed_block_mask(mask_mod, q_lens, k_lens, True, (-1, -1), torch.device("cpu"))
    assert_same_mask(got, create_block_mask(mask_mod, None, None, 506, 777, device="cpu"))
