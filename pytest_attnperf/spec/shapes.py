"""What one attention problem is: sizes, dtype, masking, the workload and what is timed (no torch import).

The mask rule lives here once. ``window`` is FlashAttention's ``(left, right)`` sliding window,
``-1`` meaning unbounded on that side; query row i sees key j when
``i + offset - left <= j <= i + offset + right`` with ``offset = k_len - q_len`` (bottom-right
aligned, as FlashAttention does when the lengths differ); causal masking is ``right = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .dtypes import SHORT_NAME, dtype_bytes, parse_dtype
from .workloads import MODES as MODES  # re-exported: modes lived here before
from .workloads import VARLEN_DEFAULT_BATCH, WORKLOADS, Workload, default_q_len, seeded_lengths
from .workloads import Mode as Mode

Window = tuple[int, int]
NO_WINDOW: Window = (-1, -1)
Layout = Literal["bhsd", "bshd"]
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


def band_pairs(q_len: int, k_len: int, *, causal: bool, window: Window) -> int:
    """(query, key) pairs one sequence's band holds, exactly: the bottom-right aligned rule above."""
    left, right = mask_bounds(causal, window)
    offset = k_len - q_len
    if left < 0 and right < 0:
        return q_len * k_len
    if left < 0 and right == 0 and offset >= 0:
        return q_len * offset + q_len * (q_len + 1) // 2  # causal: row i sees offset + i + 1 keys
    last_key = k_len - 1
    pairs = 0
    for row in range(q_len):
        diagonal = row + offset
        upper = min(diagonal + right, last_key) if right >= 0 else last_key
        lower = max(diagonal - left, 0) if left >= 0 else 0
        pairs += max(0, upper - lower + 1)
    return pairs


def keys_read(q_len: int, k_len: int, *, causal: bool, window: Window) -> int:
    """Keys some query of the sequence sees: what a kernel must read from the cache (once each)."""
    left, right = mask_bounds(causal, window)
    offset = k_len - q_len
    lower = max(0, offset - left) if left >= 0 else 0
    upper = min(k_len - 1, offset + q_len - 1 + right) if right >= 0 else k_len - 1
    return max(0, upper - lower + 1)


@dataclass(frozen=True)
class AttnShape:
    """One attention problem: sizes, dtype, masking and the workload (how queries meet the KV cache).

    ``q_len``/``k_len`` are queries and keys per sequence (for ``varlen``, the longest; ``q_lens`` and
    ``k_lens`` hold each sequence's). ``page_size`` is the ``paged`` cache's tokens per page;
    ``softcap`` caps the scaled scores at ``softcap * tanh(score / softcap)`` (Gemma-2).
    """

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
    softcap: float | None = None
    workload: Workload = "prefill"
    page_size: int | None = None
    q_lens: tuple[int, ...] | None = None
    k_lens: tuple[int, ...] | None = None

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
        for name in ("scale", "softcap"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        self._check_workload()

    def _check_workload(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload {self.workload!r} is not one of {', '.join(WORKLOADS)}")
        if self.workload in ("decode", "paged", "chunked") and self.q_len > self.k_len:
            raise ValueError(
                f"a {self.workload} step's {self.q_len} queries are the newest tokens of its cache of {self.k_len}: "
                "q_len must not exceed the context length"
            )
        if (self.workload == "paged") != (self.page_size is not None):
            raise ValueError("page_size goes with the paged workload, and the paged workload needs a page_size")
        if self.page_size is not None and (isinstance(self.page_size, bool) or self.page_size < 1):
            raise ValueError(f"page_size must be a positive integer, got {self.page_size!r}")
        lengths = (self.q_lens, self.k_lens)
        if self.workload != "varlen":
            if lengths != (None, None):
                raise ValueError("q_lens and k_lens (per-sequence lengths) belong to the varlen workload")
            return
        if self.q_lens is None or self.k_lens is None:
            raise ValueError("the varlen workload needs q_lens and k_lens, one length per sequence")
        object.__setattr__(self, "q_lens", tuple(self.q_lens))
        object.__setattr__(self, "k_lens", tuple(self.k_lens))
        if not len(self.q_lens) == len(self.k_lens) == self.batch:
            raise ValueError(f"q_lens and k_lens need one length per sequence ({self.batch})")
        for q, k in zip(self.q_lens, self.k_lens, strict=True):
            if not (isinstance(q, int) and isinstance(k, int) and 1 <= q <= k):
                raise ValueError(f"each varlen sequence needs 1 <= q_len <= k_len, got {q} over {k}")
        if (max(self.q_lens), max(self.k_lens)) != (self.q_len, self.k_len):
            raise ValueError("q_len and k_len of a varlen shape are its longest sequence's")

    @property
    def seqlen(self) -> int:
        return self.q_len

    @property
    def context_len(self) -> int:
        """The case's length: keys per sequence (the longest for varlen); q_len for prefill."""
        return self.k_len

    def with_seqlen(self, seqlen: int) -> AttnShape:
        return replace(self, q_len=seqlen, k_len=seqlen)

    def sequences(self) -> list[tuple[int, int]]:
        """(q_len, k_len) of each sequence of the batch."""
        return [(q_len, k_len) for q_len, k_len, count in self._sequence_counts() for _ in range(count)]

    def _sequence_counts(self) -> list[tuple[int, int, int]]:
        """(q_len, k_len, how many sequences): a uniform batch is one group, whatever its size."""
        if self.q_lens is not None and self.k_lens is not None:
            return [(q, k, 1) for q, k in zip(self.q_lens, self.k_lens, strict=True)]
        return [(self.q_len, self.k_len, self.batch)]

    def total_pairs(self) -> float:
        """(query, key) pairs computed per head over the batch; a square causal band counts half (FACTS §2)."""
        left, right = mask_bounds(self.causal, self.window)
        total = 0.0
        for q_len, k_len, count in self._sequence_counts():
            if left < 0 and right >= 0 and self.causal and q_len == k_len:
                total += count * q_len * k_len / 2  # the convention every published TFLOP/s figure uses
            else:
                total += count * band_pairs(q_len, k_len, causal=self.causal, window=self.window)
        return total

    def attended_pairs(self) -> float:
        """(query, key) pairs per head and sequence (the batch's mean for varlen)."""
        return self.total_pairs() / self.batch

    def flops(self, mode: Mode = "forward") -> float:
        """Standard count 4*H*D*pairs (causal halved) over the batch, times 2.5 backward or 3.5 forward+backward."""
        return 4.0 * self.heads * self.head_dim * self.total_pairs() * MODE_FLOP_FACTOR[mode]

    def bytes_moved(self) -> int:
        """Bytes a forward call must move at least: Q read, the visible KV cache read once per KV head, O written.

        What bounds decode, which does too little arithmetic per byte to be limited by FLOPs. Counts the
        valid keys, not the allocated cache (pages, capacity), and each KV head once, as GQA kernels read it.
        """
        groups = self._sequence_counts()
        queries = sum(count * q for q, _, count in groups)
        keys = sum(count * keys_read(q, k, causal=self.causal, window=self.window) for q, k, count in groups)
        element = dtype_bytes(self.dtype)
        return element * self.head_dim * (2 * queries * self.heads + 2 * keys * self.kv_heads)

    def input_bytes(self) -> int:
        element = dtype_bytes(self.dtype)
        groups = self._sequence_counts()
        queries = sum(count * q for q, _, count in groups)
        keys = sum(count * k for _, k, count in groups)
        return element * self.head_dim * (self.heads * queries + 2 * self.kv_heads * keys)

    def label(self) -> str:
        """Short id: 'fp16-causal-h32-d128' (+ workload, gqa, window, softcap when set)."""
        parts = [] if self.workload == "prefill" else [self.workload + (f"{self.page_size}" if self.page_size else "")]
        parts += [SHORT_NAME[self.dtype], "causal" if self.causal else "full"]
        if self.window != NO_WINDOW:
            parts.append(f"win{self.window[0]}_{self.window[1]}")
        if self.softcap is not None:
            parts.append(f"softcap{self.softcap:g}")
        parts.append(f"b{self.batch}-h{self.heads}" + (f"kv{self.kv_heads}" if self.kv_heads != self.heads else ""))
        parts.append(f"d{self.head_dim}")
        return "-".join(parts)

    def as_dict(self) -> dict[str, object]:
        described: dict[str, object] = {
            "workload": self.workload,
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
        optional = {"softcap": self.softcap, "page_size": self.page_size, "q_lens": self.q_lens, "k_lens": self.k_lens}
        described.update({key: list(v) if isinstance(v, tuple) else v for key, v in optional.items() if v is not None})
        return described


def shape_for_case(fields: Mapping[str, Any], *, context_len: int, seed: int, batch_given: bool) -> AttnShape:
    """The AttnShape of one test case from its merged settings (options < mark < variant).

    ``fields`` holds AttnShape fields plus ``workload``, ``q_len``, ``page_size``, ``model`` and
    ``layer``: a model sets heads, KV heads, head dim and its layer's window, soft-cap and scale;
    a varlen batch draws its sequence lengths from ``seed`` (four sequences unless a batch was given).
    """
    values = dict(fields)
    for unused in ("mode", "seqlens"):
        values.pop(unused, None)
    model, layer = values.pop("model", None), values.pop("layer", None)
    if model is not None:
        values.update(model.attention(layer))
    workload = values.pop("workload", "prefill")
    given_q_len = values.pop("q_len", None)
    q_len = (given_q_len if workload != "prefill" else None) or default_q_len(workload, context_len)
    page_size = values.pop("page_size", None)
    if workload == "paged":
        values["page_size"] = page_size
    if workload == "varlen":
        if q_len is not None and q_len > context_len:
            # the longest sequence's q_len newest tokens: more than it holds is refused as for decode and chunked
            raise ValueError(
                f"a varlen step's {q_len} queries are the newest tokens of its longest sequence of {context_len}: "
                "q_len must not exceed the context length"
            )
        batch = values["batch"] = int(values["batch"]) if batch_given else VARLEN_DEFAULT_BATCH
        k_lens = seeded_lengths(context_len, batch, seed=seed)
        q_lens = tuple(min(q_len, k) for k in k_lens) if q_len else k_lens
        return AttnShape(max(q_lens), context_len, workload=workload, q_lens=q_lens, k_lens=k_lens, **values)
    return AttnShape(q_len or context_len, context_len, workload=workload, **values)
