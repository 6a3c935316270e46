"""Seeded inputs of every workload: the same seed gives the same bits on every run and machine.

``torch.randn`` is not used: CPU and CUDA generators give different streams, and CUDA's can
depend on the GPU's SM count. Instead each element is a pure function of (seed, tensor, index):
a splitmix64 hash in int64 arithmetic, turned into an approximately normal value (the sum of
four 16-bit uniforms, unit variance) with operations that are exact or correctly rounded on
every device. No global RNG state is read or written. A paged cache's page order and a varlen
batch's lengths come from the same kind of hash (:mod:`pytest_attnperf.spec.workloads`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..spec.dtypes import parse_dtype
from ..spec.shapes import AttnShape, Layout
from ..spec.workloads import pages_needed, seeded_integers

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


def torch_dtype(name: object) -> torch.dtype:
    """The torch dtype of an input dtype given by any accepted name (or as a torch.dtype)."""
    return TORCH_DTYPES[parse_dtype(name)]


_GOLDEN = -0x61C8864680B583EB  # 0x9E3779B97F4A7C15 as a signed int64
_MIX_1 = -0x40A7B892E31B1A47  # 0xBF58476D1CE4E5B9
_MIX_2 = -0x6B2FB644ECCEEE15  # 0x94D049BB133111EB
_CHUNK = 1 << 24  # elements hashed at a time: bounds the int64 temporaries to a few hundred MiB


def _shift_right_into(values: torch.Tensor, bits: int, out: torch.Tensor, mask: int) -> torch.Tensor:
    """``out`` = the logical right shift of ``values`` by ``bits``, masked: torch's >> on int64 is arithmetic, so
    the copied sign bits are masked off (``mask`` within the low 64 - bits)."""
    torch.bitwise_right_shift(values, bits, out=out)
    return out.bitwise_and_(mask)


def _splitmix64(values: torch.Tensor) -> torch.Tensor:
    """splitmix64 of every element (a new tensor), in place on it and one scratch buffer."""
    z = values + _GOLDEN
    scratch = torch.empty_like(z)
    for bits, multiplier in ((30, _MIX_1), (27, _MIX_2)):
        z.bitwise_xor_(_shift_right_into(z, bits, scratch, (1 << (64 - bits)) - 1)).mul_(multiplier)
    return z.bitwise_xor_(_shift_right_into(z, 31, scratch, (1 << 33) - 1))


def seeded_normal(
    shape: tuple[int, ...], *, seed: int, stream: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Deterministic, roughly N(0, 1) tensor: element i depends only on (seed, stream, i).

    Element i hashes i + key with splitmix64 and sums the hash's four 16-bit words (Irwin-Hall, scaled). In place
    on two int64 buffers per chunk: the inputs of a case are made in its set-up, and on a CPU the
    out-of-place version took most of it.
    """
    numel = math.prod(shape)
    output = torch.empty(numel, dtype=dtype, device=device)
    key = (seed * 0x100000001B3 + stream * 0x1F3) & ((1 << 62) - 1)
    sqrt3 = torch.tensor(math.sqrt(3.0), dtype=torch.float32, device=device)
    for start in range(0, numel, _CHUNK):
        stop = min(numel, start + _CHUNK)
        z = _splitmix64(torch.arange(start, stop, dtype=torch.int64, device=device).add_(key))
        scratch = torch.empty_like(z)
        total = z.bitwise_and(0xFFFF)
        for shift in (16, 32, 48):
            total.add_(_shift_right_into(z, shift, scratch, 0xFFFF))
        del z, scratch
        # total < 2**18, so the float32 conversion and the division by 2**16 are exact.
        uniform_sum = total.to(torch.float32).div_(65536.0)
        output[start:stop] = uniform_sum.sub_(2.0).mul_(sqrt3).to(dtype)
    return output.view(shape)


@dataclass(eq=False)
class PagedKV:
    """Where a paged cache's tokens are: page ``block_table[b, j]`` holds tokens ``j*page_size ...`` of sequence b.

    ``memo`` keeps what a backend prepares from it (index tensors, block masks) on its first, untimed call.
    """

    block_table: torch.Tensor  # (batch, pages per sequence) int32
    seqlens: torch.Tensor  # (batch,) int32: valid tokens per sequence
    page_size: int
    memo: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(eq=False)
class PackedSeqs:
    """Sequences packed one after another: sequence b's queries are rows ``cu_seqlens_q[b]:cu_seqlens_q[b+1]``."""

    cu_seqlens_q: torch.Tensor  # (batch + 1,) int32, from 0
    cu_seqlens_k: torch.Tensor
    max_q: int
    max_k: int
    memo: dict[str, Any] = field(default_factory=dict, repr=False)


KVIndex = PagedKV | PackedSeqs


@dataclass
class QKV:
    """Seeded query, key and value, with their shape and, for paged and varlen workloads, the cache's index.

    ``q``, ``k`` and ``v`` are the *logical* tensors in (batch, heads, seqlen, head_dim) layout, what the
    reference reads: for ``varlen`` the sequences packed along one sequence axis of batch 1. A ``paged``
    case also holds ``k_pages``/``v_pages``, (pages, page_size, kv_heads, head_dim) pools whose pages are
    scattered in seeded order and whose slots past a sequence's length hold seeded values that a kernel
    must not read.
    """

    shape: AttnShape
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    seed: int
    index: KVIndex | None = None
    k_pages: torch.Tensor | None = None
    v_pages: torch.Tensor | None = None
    _layouts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.q.device

    def in_layout(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k and v as a backend of ``layout`` takes them, contiguous (made once, outside any timed region).

        Dense workloads: bhsd (batch, heads, seqlen, head_dim) or bshd (batch, seqlen, heads, head_dim).
        paged: q as above; the k/v pools as (pages, page_size, kv_heads, head_dim) for bshd, or as one
        sequence of pages * page_size slots, (1, kv_heads, slots, head_dim), for bhsd (FlexAttention's).
        varlen: (total tokens, heads, head_dim) for bshd, (1, heads, total tokens, head_dim) for bhsd.
        """
        if layout not in self._layouts:
            self._layouts[layout] = self._make_layout(layout)
        return self._layouts[layout]

    def _make_layout(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def bshd(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.transpose(1, 2).contiguous()

        workload = self.shape.workload
        if workload == "paged":
            assert self.k_pages is not None
            assert self.v_pages is not None
            if layout == "bshd":
                return bshd(self.q), self.k_pages, self.v_pages
            pools = (_pool_as_sequence(self.k_pages), _pool_as_sequence(self.v_pages))
            return self.q, *pools
        if layout == "bhsd":
            return self.q, self.k, self.v
        if workload == "varlen":
            return tuple(bshd(tensor)[0] for tensor in (self.q, self.k, self.v))  # type: ignore[return-value]
        return bshd(self.q), bshd(self.k), bshd(self.v)

    def call_arguments(self, layout: Layout) -> tuple[Any, ...]:
        """What a backend of ``layout`` is called with: (q, k, v, shape), plus the cache index when there is one."""
        q, k, v = self.in_layout(layout)
        return (q, k, v, self.shape) if self.index is None else (q, k, v, self.shape, self.index)

    def canonical_output(self, output: torch.Tensor, layout: Layout) -> torch.Tensor:
        """A backend's output in the reference's layout: (batch, heads, q_len, head_dim); varlen (1, heads, tokens, head_dim)."""
        if layout == "bhsd":
            return output
        if self.shape.workload == "varlen":
            return output.transpose(0, 1).unsqueeze(0)
        return output.transpose(1, 2)

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """Every input tensor of the case by name (what a kernel must leave as it found it)."""
        named = {"q": self.q, "k": self.k, "v": self.v}
        if self.k_pages is not None and self.v_pages is not None:
            named.update(k_pages=self.k_pages, v_pages=self.v_pages)
        if isinstance(self.index, PagedKV):
            named.update(block_table=self.index.block_table, seqlens=self.index.seqlens)
        elif isinstance(self.index, PackedSeqs):
            named.update(cu_seqlens_q=self.index.cu_seqlens_q, cu_seqlens_k=self.index.cu_seqlens_k)
        return named

    def tensors(self) -> list[torch.Tensor]:
        """Every input tensor of the case."""
        return list(self.named_tensors().values())

    def release_layouts(self) -> None:
        """Drop the layout copies and what backends prepared (kept only while one backend runs the case)."""
        self._layouts.clear()
        if self.index is not None:
            self.index.memo.clear()


def _pool_as_sequence(pool: torch.Tensor) -> torch.Tensor:
    pages, page_size, kv_heads, head_dim = pool.shape
    return pool.permute(2, 0, 1, 3).reshape(1, kv_heads, pages * page_size, head_dim).contiguous()


def _int32(values: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32, device=device)


def _cumulative(lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return _int32([0, *itertools.accumulate(lengths)], device)


def seeded_permutation(count: int, *, seed: int, stream: int) -> list[int]:
    """A permutation of range(count) that depends only on (seed, stream): the order of seeded hashes."""
    keys = seeded_integers(count, seed=seed, stream=stream)
    return sorted(range(count), key=keys.__getitem__)


def _paged(shape: AttnShape, k: torch.Tensor, v: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, PagedKV]:
    """Scatter the logical cache into pages in seeded order; unused slots keep seeded values."""
    assert shape.page_size is not None
    per_sequence = pages_needed(shape.k_len, shape.page_size)
    count = shape.batch * per_sequence
    order = seeded_permutation(count, seed=seed, stream=8)  # logical page i lives in physical page order[i]
    physical = torch.tensor(order, dtype=torch.int64, device=k.device)
    pool_shape = (count, shape.page_size, shape.kv_heads, shape.head_dim)
    pools = []
    for tensor, stream in ((k, 6), (v, 7)):
        logical = seeded_normal(pool_shape, seed=seed, stream=stream, dtype=tensor.dtype, device=tensor.device)
        logical.view(shape.batch, per_sequence * shape.page_size, shape.kv_heads, shape.head_dim)[:, : shape.k_len] = (
            tensor.transpose(1, 2)
        )
        pool = torch.empty_like(logical)
        pool[physical] = logical
        pools.append(pool)
    index = PagedKV(
        block_table=physical.to(torch.int32).view(shape.batch, per_sequence).contiguous(),
        seqlens=_int32([shape.k_len] * shape.batch, k.device),
        page_size=shape.page_size,
    )
    return pools[0], pools[1], index


def make_qkv(shape: AttnShape, *, seed: int = 0, device: torch.device | str = "cpu") -> QKV:
    """Seeded inputs for ``shape`` on ``device``; the same (shape, seed) gives the same bits anywhere."""
    target = torch.device(device)
    dtype = torch_dtype(shape.dtype)
    if shape.workload == "varlen":
        assert shape.q_lens is not None
        assert shape.k_lens is not None
        q_shape: tuple[int, ...] = (1, shape.heads, sum(shape.q_lens), shape.head_dim)
        kv_shape: tuple[int, ...] = (1, shape.kv_heads, sum(shape.k_lens), shape.head_dim)
    else:
        q_shape = (shape.batch, shape.heads, shape.q_len, shape.head_dim)
        kv_shape = (shape.batch, shape.kv_heads, shape.k_len, shape.head_dim)
    q = seeded_normal(q_shape, seed=seed, stream=0, dtype=dtype, device=target)
    k = seeded_normal(kv_shape, seed=seed, stream=1, dtype=dtype, device=target)
    v = seeded_normal(kv_shape, seed=seed, stream=2, dtype=dtype, device=target)
    if shape.workload == "paged":
        k_pages, v_pages, paged = _paged(shape, k, v, seed)
        return QKV(shape=shape, q=q, k=k, v=v, seed=seed, index=paged, k_pages=k_pages, v_pages=v_pages)
    if shape.workload == "varlen":
        assert shape.q_lens is not None
        assert shape.k_lens is not None
        packed = PackedSeqs(
            cu_seqlens_q=_cumulative(shape.q_lens, target),
            cu_seqlens_k=_cumulative(shape.k_lens, target),
            max_q=shape.q_len,
            max_k=shape.k_len,
        )
        return QKV(shape=shape, q=q, k=k, v=v, seed=seed, index=packed)
    return QKV(shape=shape, q=q, k=k, v=v, seed=seed)
