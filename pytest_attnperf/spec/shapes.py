"""What one attention problem is: sizes, dtype, masking and what is timed (no torch import).

The mask rule lives here once. ``window`` is FlashAttention's ``(left, right)`` sliding window,
``-1`` meaning unbounded on that side; query row i sees key j when
``i + offset - left <= j <= i + offset + right`` with ``offset = k_len - q_len`` (bottom-right
aligned, as FlashAttention does when the lengths differ); causal masking is ``right = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from .dtypes import SHORT_NAME, dtype_bytes, parse_dtype

Window = tuple[int, int]
NO_WINDOW: Window = (-1, -1)
Layout = Literal["bhsd", "bshd"]
Mode = Literal["forward", "backward", "forward+backward"]
MODES: tuple[Mode, ...] = ("forward", "backward", "forward+backward")
# Backward costs 2.5x the forward FLOPs, forward+backward 3.5x (FlashAttention's convention).
MODE_FLOP_FACTOR: dict[str, float] = {"forward": 1.0, "backward": 2.5, "forward+backward": 3.5}


def mask_bounds(causal: bool, window: Window) -> Window:
    """The (left, right) band a query sees; causal masking closes the right side at the diagonal."""
    left, right = window
    return left, (0 if causal else right)


def needs_mask(causal: bool, window: Window) -> bool:
    """Whether any key is hidden from some query (False: every query sees every key)."""
    left, right = mask_bounds(causal, window)
    return not (left < 0 and right < 0)


def has_rows_without_keys(q_len: int, k_len: int, *, causal: bool, window: Window) -> bool:
    """Whether some query sees no key: only when the band's right edge falls before key 0 (q_len > k_len)."""
    _, right = mask_bounds(causal, window)
    return right >= 0 and k_len - q_len + right < 0


def length_id(length: int) -> str:
    """1024 -> '1K', 32768 -> '32K', 1048576 -> '1M'; lengths that are not whole K stay exact."""
    if length >= 1 << 20 and length % (1 << 20) == 0:
        return f"{length >> 20}M"
    if length >= 1024 and length % 1024 == 0:
        return f"{length // 1024}K"
    return str(length)


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
    def seqlen(self) -> int:
        return self.q_len

    def with_seqlen(self, seqlen: int) -> AttnShape:
        return replace(self, q_len=seqlen, k_len=seqlen)

    def attended_pairs(self) -> float:
        """(query, key) pairs computed per head: Sq*Sk, causal halved; windows count their band."""
        left, right = mask_bounds(self.causal, self.window)
        if left < 0 and (right < 0 or (self.causal and self.q_len == self.k_len)):
            return self.q_len * self.k_len / (2 if right >= 0 else 1)
        offset = self.k_len - self.q_len
        last_key = self.k_len - 1
        pairs = 0
        for row in range(self.q_len):
            diagonal = row + offset
            upper = min(diagonal + right, last_key) if right >= 0 else last_key
            lower = max(diagonal - left, 0) if left >= 0 else 0
            pairs += max(0, upper - lower + 1)
        return float(pairs)

    def flops(self, mode: Mode = "forward") -> float:
        """Standard count 4*B*H*Sq*Sk*D (causal halved), times 2.5 backward or 3.5 forward+backward."""
        return 4.0 * self.batch * self.heads * self.head_dim * self.attended_pairs() * MODE_FLOP_FACTOR[mode]

    def input_bytes(self) -> int:
        element = dtype_bytes(self.dtype)
        return element * self.batch * self.head_dim * (self.heads * self.q_len + 2 * self.kv_heads * self.k_len)

    def label(self) -> str:
        """Short id: 'fp16-causal-h32-d128' (+ gqa, window, lengths when they differ)."""
        parts = [SHORT_NAME[self.dtype], "causal" if self.causal else "full"]
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
