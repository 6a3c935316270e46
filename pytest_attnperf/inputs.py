"""Attention shapes and seeded Q/K/V: the same seed gives the same bits on every run and machine.

``torch.randn`` is not used: CPU and CUDA generators give different streams, and CUDA's can
depend on the GPU's SM count. Instead each element is a pure function of (seed, tensor, index):
a splitmix64 hash in int64 arithmetic, turned into an approximately normal value (the sum of
four 16-bit uniforms, unit variance) with operations that are exact or correctly rounded on
every device. No global RNG state is read or written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from .standard_attention import NO_WINDOW, Window

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
SHORT_DTYPE = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
Layout = Literal["bhsd", "bshd"]
Mode = Literal["forward", "backward", "forward+backward"]
MODES: tuple[Mode, ...] = ("forward", "backward", "forward+backward")
# Backward costs 2.5x the forward FLOPs, forward+backward 3.5x (FlashAttention's convention).
_MODE_FLOP_FACTOR = {"forward": 1.0, "backward": 2.5, "forward+backward": 3.5}


def parse_dtype(value: object) -> str:
    """Canonical dtype name from 'float16', 'fp16', 'bf16', torch.float16, ..."""
    if isinstance(value, torch.dtype):
        for name, dtype in DTYPES.items():
            if dtype == value:
                return name
    if isinstance(value, str):
        name = DTYPE_ALIASES.get(value.strip().lower(), value.strip().lower())
        if name in DTYPES:
            return name
    raise ValueError(f"unsupported dtype {value!r}; expected one of {', '.join(DTYPES)} (or fp16, bf16, fp32)")


@dataclass(frozen=True)
class AttnShape:
    """One attention problem: sizes, dtype and masking. Lengths are query and key lengths."""

    q_len: int
    k_len: int
    batch: int = 1
    heads: int = 32
    kv_heads: int = 32
    head_dim: int = 128
    dtype: str = "float16"
    causal: bool = True
    window: Window = NO_WINDOW
    scale: float | None = None

    def __post_init__(self) -> None:
        for name in ("q_len", "k_len", "batch", "heads", "kv_heads", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        left, right = self.window
        if left < -1 or right < -1:
            raise ValueError(f"window {self.window!r} must hold sizes >= 0, or -1 for unbounded")
        object.__setattr__(self, "window", (int(left), int(right)))
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {self.scale!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def seqlen(self) -> int:
        return self.q_len

    def with_seqlen(self, seqlen: int) -> AttnShape:
        return replace(self, q_len=seqlen, k_len=seqlen)

    def attended_pairs(self) -> float:
        """(query, key) pairs computed per head: Sq*Sk, causal halved; windows count their band."""
        left, right = self.window
        if left < 0 and (right < 0 or self.causal):
            return self.q_len * self.k_len / (2 if self.causal else 1)
        offset = self.k_len - self.q_len
        rows = torch.arange(self.q_len, dtype=torch.int64) + offset
        upper = rows if self.causal else (rows + right if right >= 0 else torch.full_like(rows, self.k_len - 1))
        lower = rows - left if left >= 0 else torch.zeros_like(rows)
        visible = (upper.clamp(max=self.k_len - 1) - lower.clamp(min=0) + 1).clamp(min=0)
        return float(visible.sum())

    def flops(self, mode: Mode = "forward") -> float:
        """Standard count 4*B*H*Sq*Sk*D (causal halved), times 2.5 backward or 3.5 forward+backward."""
        return 4.0 * self.batch * self.heads * self.head_dim * self.attended_pairs() * _MODE_FLOP_FACTOR[mode]

    def input_bytes(self) -> int:
        element = torch.finfo(self.torch_dtype).bits // 8
        return element * self.batch * self.head_dim * (self.heads * self.q_len + 2 * self.kv_heads * self.k_len)

    def label(self) -> str:
        """Short id: 'fp16-causal-h32-d128' (+ gqa, window, lengths when they differ)."""
        parts = [SHORT_DTYPE[self.dtype], "causal" if self.causal else "full"]
        if self.window != NO_WINDOW:
            parts.append(f"win{self.window[0]}_{self.window[1]}")
        parts.append(f"b{self.batch}-h{self.heads}" + (f"kv{self.kv_heads}" if self.kv_heads != self.heads else ""))
        parts.append(f"d{self.head_dim}")
        return "-".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "q_len": self.q_len,
            "k_len": self.k_len,
            "head_dim": self.head_dim,
            "dtype": self.dtype,
            "causal": self.causal,
            "window": list(self.window),
            "scale": self.scale,
        }


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
    dtype = shape.torch_dtype
    q = seeded_normal(
        (shape.batch, shape.heads, shape.q_len, shape.head_dim), seed=seed, stream=0, dtype=dtype, device=target
    )
    kv_shape = (shape.batch, shape.kv_heads, shape.k_len, shape.head_dim)
    k = seeded_normal(kv_shape, seed=seed, stream=1, dtype=dtype, device=target)
    v = seeded_normal(kv_shape, seed=seed, stream=2, dtype=dtype, device=target)
    return QKV(shape=shape, q=q, k=k, v=v, seed=seed)
