"""Seeded Q/K/V: the same seed gives the same bits on every run and machine.

``torch.randn`` is not used: CPU and CUDA generators give different streams, and CUDA's can
depend on the GPU's SM count. Instead each element is a pure function of (seed, tensor, index):
a splitmix64 hash in int64 arithmetic, turned into an approximately normal value (the sum of
four 16-bit uniforms, unit variance) with operations that are exact or correctly rounded on
every device. No global RNG state is read or written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..spec.dtypes import parse_dtype
from ..spec.shapes import AttnShape, Layout

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


def _logical_shift_right(values: torch.Tensor, bits: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; mask off the copied sign bits.
    return (values >> bits) & ((1 << (64 - bits)) - 1)


def _splitmix64(values: torch.Tensor) -> torch.Tensor:
    z = values + _GOLDEN
    z = (z ^ _logical_shift_right(z, 30)) * _MIX_1
    z = (z ^ _logical_shift_right(z, 27)) * _MIX_2
    return z ^ _logical_shift_right(z, 31)


def seeded_normal(
    shape: tuple[int, ...], *, seed: int, stream: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Deterministic, roughly N(0, 1) tensor: element i depends only on (seed, stream, i)."""
    numel = math.prod(shape)
    output = torch.empty(numel, dtype=dtype, device=device)
    key = (seed * 0x100000001B3 + stream * 0x1F3) & ((1 << 62) - 1)
    sqrt3 = torch.tensor(math.sqrt(3.0), dtype=torch.float32, device=device)
    for start in range(0, numel, _CHUNK):
        stop = min(numel, start + _CHUNK)
        hashed = _splitmix64(torch.arange(start, stop, dtype=torch.int64, device=device) + key)
        total = hashed & 0xFFFF
        for shift in (16, 32, 48):
            total += _logical_shift_right(hashed, shift) & 0xFFFF
        # total < 2**18, so the float32 conversion and the division by 2**16 are exact.
        uniform_sum = total.to(torch.float32) / 65536.0
        output[start:stop] = ((uniform_sum - 2.0) * sqrt3).to(dtype)
    return output.view(shape)


@dataclass
class QKV:
    """Seeded query, key and value in (batch, heads, seqlen, head_dim) layout, with their shape."""

    shape: AttnShape
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    seed: int
    _layouts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.q.device

    def in_layout(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three tensors in ``layout``, contiguous (made once, outside any timed region)."""
        if layout == "bhsd":
            return self.q, self.k, self.v
        if layout not in self._layouts:
            self._layouts[layout] = tuple(t.transpose(1, 2).contiguous() for t in (self.q, self.k, self.v))  # type: ignore[assignment]
        return self._layouts[layout]

    def release_layouts(self) -> None:
        self._layouts.clear()


def make_qkv(shape: AttnShape, *, seed: int = 0, device: torch.device | str = "cpu") -> QKV:
    """Seeded Q/K/V for ``shape`` on ``device``; the same (shape, seed) gives the same bits anywhere."""
    target = torch.device(device)
    dtype = torch_dtype(shape.dtype)
    q = seeded_normal(
        (shape.batch, shape.heads, shape.q_len, shape.head_dim), seed=seed, stream=0, dtype=dtype, device=target
    )
    kv_shape = (shape.batch, shape.kv_heads, shape.k_len, shape.head_dim)
    k = seeded_normal(kv_shape, seed=seed, stream=1, dtype=dtype, device=target)
    v = seeded_normal(kv_shape, seed=seed, stream=2, dtype=dtype, device=target)
    return QKV(shape=shape, q=q, k=k, v=v, seed=seed)
