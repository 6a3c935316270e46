"""Memory arithmetic for attention: KV cache, score matrices, weights, and peak-memory predictions.

Pure functions (no torch import): dtypes may be given as names ("float16", "bf16", ...) or as
``torch.dtype`` objects. The peak predictions walk the materialising backends statement by
statement, the way their memory is really allocated and freed:

* ``eager`` is :func:`pytest_attnperf.standard_attention.eager_attention`; Python frees a
  temporary when its last reference goes, and a local (``scores``) lives until the function returns.
* ``sdpa-math`` is PyTorch's ``_scaled_dot_product_attention_math`` (aten/src/ATen/native/
  transformers/attention.cpp, torch 2.5+) called through ``F.scaled_dot_product_attention`` the
  way ``backends._sdpa_call`` calls it. Its C++ locals (the fp32 copies of q, k, v, the additive
  mask) live until it returns, and ``_safe_softmax`` keeps its input, its output and a bool
  ``isneginf`` mask of the same shape alive at once.

Two accountings come out of one timeline: the bytes of live tensors (what
``torch.cuda.max_memory_allocated`` measures) and the bytes PyTorch's CUDA caching allocator has to
reserve for them, from a small model of its best-fit, block-splitting behaviour. They differ when a
freed score-sized block is split to hold a small tensor and so cannot take the next score-sized one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Union

from .presets import ModelPreset, get_preset
from .units import format_bytes

if TYPE_CHECKING:
    import torch

DTypeLike = Union[str, "torch.dtype"]
Window = tuple[int, int]
NO_WINDOW: Window = (-1, -1)
Allocator = Literal["ideal", "cuda-caching"]

BACKENDS = ("eager", "sdpa-math", "naive")
ALLOCATORS = ("ideal", "cuda-caching")

_DTYPE_BYTES = {
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
    "uint8": 1,
}
_DTYPE_ALIASES = {
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "float": "float32",
    "fp64": "float64",
    "double": "float64",
    "fp8": "float8_e4m3fn",
}
_REDUCED_FLOATS = ("float16", "bfloat16")
_INDEX_BYTES = 8  # torch.arange defaults to int64
_LSE_BYTES = 4  # FlashAttention keeps its row statistics in fp32


# --- dtypes and closed-form sizes -------------------------------------------------------------


def dtype_name(dtype: DTypeLike) -> str:
    """Canonical name of a dtype given as text ('fp16', 'bfloat16') or as a torch.dtype."""
    text = str(dtype).strip()
    text = text.removeprefix("torch.")
    text = _DTYPE_ALIASES.get(text.lower(), text.lower())
    if text not in _DTYPE_BYTES:
        accepted = ", ".join([*_DTYPE_BYTES, *_DTYPE_ALIASES])
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {accepted} or a torch.dtype")
    return text


def dtype_bytes(dtype: DTypeLike) -> int:
    """Bytes per element of a dtype."""
    return _DTYPE_BYTES[dtype_name(dtype)]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, dtype: DTypeLike, tokens: int, batch: int) -> int:
    """KV cache of a whole model: 2 (K and V) · layers · kv_heads · head_dim · bytes · tokens · batch."""
    _check_positive(layers=layers, kv_heads=kv_heads, head_dim=head_dim, tokens=tokens, batch=batch)
    return 2 * layers * kv_heads * head_dim * dtype_bytes(dtype) * tokens * batch


def score_matrix_bytes(batch: int, heads: int, q_len: int, k_len: int, dtype: DTypeLike) -> int:
    """One layer's materialised B·H·Sq·Sk score matrix (the probability matrix is as large)."""
    _check_positive(batch=batch, heads=heads, q_len=q_len, k_len=k_len)
    return batch * heads * q_len * k_len * dtype_bytes(dtype)


def flash_state_bytes(batch: int, heads: int, q_len: int) -> int:
    """FlashAttention's O(N) state instead of the score matrix: fp32 log-sum-exp per row, B·H·S·4."""
    _check_positive(batch=batch, heads=heads, q_len=q_len)
    return batch * heads * q_len * _LSE_BYTES


def weights_bytes(preset: ModelPreset | str, dtype: DTypeLike) -> int:
    """Bytes of a preset's weights stored in ``dtype``."""
    model = get_preset(preset) if isinstance(preset, str) else preset
    return model.parameter_count() * dtype_bytes(dtype)


def qkv_bytes(*, batch: int, heads: int, kv_heads: int, q_len: int, k_len: int, head_dim: int, dtype: DTypeLike) -> int:
    """The attention inputs q, k and v, which a measured peak is taken above."""
    size = dtype_bytes(dtype)
    return batch * head_dim * size * (heads * q_len + 2 * kv_heads * k_len)


def naive_peak(batch: int, heads: int, q_len: int, k_len: int, dtype: DTypeLike) -> int:
    """The popular model of materialised attention: one score plus one probability matrix."""
    return 2 * score_matrix_bytes(batch, heads, q_len, k_len, dtype)


# --- whole-model memory -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelMemory:
    """Memory of one model shape at one context length: KV cache, score matrix, flash state, weights."""

    name: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    context_len: int
    batch: int
    dtype: str
    kv_cache_bytes: int
    kv_cache_without_gqa_bytes: int
    score_matrix_bytes: int
    probability_matrix_bytes: int
    flash_state_bytes: int
    weights_bytes: int | None
    parameter_count: int | None


def model_memory(
    preset: ModelPreset | str | None = None,
    *,
    context_len: int,
    batch: int = 1,
    dtype: DTypeLike = "float16",
    layers: int | None = None,
    heads: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
) -> ModelMemory:
    """Build a :class:`ModelMemory` from a preset (name or object) or from an explicit shape."""
    model = get_preset(preset) if isinstance(preset, str) else preset
    if model is not None:
        layers = model.num_hidden_layers if layers is None else layers
        heads = model.num_attention_heads if heads is None else heads
        kv_heads = model.num_key_value_heads if kv_heads is None else kv_heads
        head_dim = model.head_dim if head_dim is None else head_dim
    elif layers is None or heads is None or head_dim is None:
        raise ValueError("model_memory needs a preset, or layers, heads and head_dim (kv_heads defaults to heads)")
    kv_heads = heads if kv_heads is None else kv_heads
    _check_positive(layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim, context_len=context_len)
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    name = dtype_name(dtype)
    score = score_matrix_bytes(batch, heads, context_len, context_len, name)
    return ModelMemory(
        name=model.name if model is not None else "custom",
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context_len=context_len,
        batch=batch,
        dtype=name,
        kv_cache_bytes=kv_cache_bytes(layers, kv_heads, head_dim, name, context_len, batch),
        kv_cache_without_gqa_bytes=kv_cache_bytes(layers, heads, head_dim, name, context_len, batch),
        score_matrix_bytes=score,
        probability_matrix_bytes=score,
        flash_state_bytes=flash_state_bytes(batch, heads, context_len),
        weights_bytes=model.parameter_count() * dtype_bytes(name) if model is not None else None,
        parameter_count=model.parameter_count() if model is not None else None,
    )


def format_model_memory(m: ModelMemory) -> str:
    """A readable report, including the correction of the popular 'KV cache vs FlashAttention' claim."""
    size = dtype_bytes(m.dtype)
    ctx = f"{m.context_len:,}"
    lines = [
        f"{m.name} at {ctx} tokens, batch {m.batch}, {m.dtype} "
        f"({m.layers} layers, {m.heads} query heads, {m.kv_heads} KV heads, head_dim {m.head_dim})",
    ]
    rows: list[tuple[str, str, str]] = []
    if m.weights_bytes is not None and m.parameter_count is not None:
        rows.append(
            (
                "weights",
                format_bytes(m.weights_bytes),
                f"{m.parameter_count / 1e9:.2f}e9 parameters x {size} B = {m.weights_bytes / 2**30:.1f} GiB",
            )
        )
    else:
        rows.append(("weights", "-", "no preset given"))
    gqa = "GQA" if m.kv_heads < m.heads else "no GQA"
    rows += [
        (
            f"KV cache, all layers ({m.kv_heads} KV heads, {gqa})",
            format_bytes(m.kv_cache_bytes),
            f"2 x {m.layers} layers x {m.kv_heads} x {m.head_dim} x {size} B x {ctx} tokens x batch {m.batch}",
        ),
        (
            f"KV cache if every query head had its own ({m.heads})",
            format_bytes(m.kv_cache_without_gqa_bytes),
            "what the cache would be without grouped-query attention",
        ),
        (
            f"score matrix, one layer ({m.heads} heads)",
            format_bytes(m.score_matrix_bytes),
            f"{m.batch} x {m.heads} x {ctx} x {ctx} x {size} B, materialised by standard attention",
        ),
        (
            "probability matrix, one layer",
            format_bytes(m.probability_matrix_bytes),
            "softmax of the scores, as large again",
        ),
        (
            "FlashAttention state, one layer",
            format_bytes(m.flash_state_bytes),
            f"fp32 log-sum-exp, {m.batch} x {m.heads} x {ctx} x 4 B",
        ),
    ]
    label_width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines += [f"  {label:<{label_width}}  {value:>{value_width}}   {how}" for label, value, how in rows]
    kv = format_bytes(m.kv_cache_bytes)
    lines += [
        'Correcting a popular claim: "standard attention on a 70B model at 32K needs ~128 GB for KV cache alone;',
        'FlashAttention reduces this to ~16 GB".',
        f"  - The KV cache is {kv} here ({format_bytes(m.kv_cache_without_gqa_bytes)} without GQA), all layers "
        f"together. The {format_bytes(m.score_matrix_bytes)} figure is one layer's {m.heads}-head score matrix, "
        "not the KV cache.",
        f"  - FlashAttention removes the score matrix (it keeps {format_bytes(m.flash_state_bytes)} of row "
        f"statistics per layer instead of {format_bytes(m.score_matrix_bytes)}), not the KV cache: it does not "
        f"shrink the KV cache at all, which stays {kv} with or without it.",
    ]
    return "\n".join(lines)


# --- timelines of the materialising backends --------------------------------------------------

Role = Literal["score", "prob", "other"]


@dataclass(frozen=True)
class _Event:
    """One allocation (nbytes > 0) or free (nbytes == 0) of a named tensor, inside one statement."""

    key: int
    label: str
    nbytes: int
    role: Role
    statement: str


@dataclass
class _Timeline:
    """The allocations and frees of one backend call, in program order."""

    events: list[_Event] = field(default_factory=list)
    statement: str = ""
    _labels: dict[int, str] = field(default_factory=dict)

    def alloc(self, label: str, nbytes: int, role: Role = "other") -> int:
        """Record a new tensor; returns its key (0 for an empty tensor, which allocates nothing)."""
        if nbytes <= 0:
            return 0
        key = len(self._labels) + 1
        self._labels[key] = label
        self.events.append(_Event(key, label, nbytes, role, self.statement))
        return key

    def free(self, *keys: int) -> None:
        """Record that these tensors lost their last reference."""
        for key in keys:
            if key:
                self.events.append(_Event(key, self._labels[key], 0, "other", self.statement))


def _mask_bounds(causal: bool, window: Window) -> tuple[int, int]:
    left, right = window
    return left, (0 if causal else right)


def _needs_mask(causal: bool, window: Window) -> bool:
    """Whether band_mask returns a tensor (it returns None when every key is visible)."""
    left, right = _mask_bounds(causal, window)
    return not (left < 0 and right < 0)


def _has_empty_rows(q_len: int, k_len: int, causal: bool, window: Window) -> bool:
    """Whether some query sees no key (bottom-right alignment with q_len > k_len + right)."""
    _, right = _mask_bounds(causal, window)
    return right >= 0 and (k_len - q_len) + right < 0


def _band_mask_events(t: _Timeline, q_len: int, k_len: int, causal: bool, window: Window) -> int:
    """standard_attention.band_mask: index vectors, the bool mask and one bool temporary per bound."""
    left, right = _mask_bounds(causal, window)
    cells = q_len * k_len
    t.statement = "band_mask: rows = torch.arange(row_start, stop).unsqueeze(1) + offset"
    arange = t.alloc("arange(q_len)", q_len * _INDEX_BYTES)
    rows = t.alloc("row indices", q_len * _INDEX_BYTES)
    t.free(arange)
    t.statement = "band_mask: cols = torch.arange(k_len).unsqueeze(0)"
    cols = t.alloc("column indices", k_len * _INDEX_BYTES)
    t.statement = "band_mask: allowed = torch.ones(rows, k_len, dtype=torch.bool)"
    allowed = t.alloc("allowed (bool mask)", cells)
    for bound, text in ((right, "allowed &= cols <= rows + right"), (left, "allowed &= cols >= rows - left")):
        if bound >= 0:
            t.statement = f"band_mask: {text}"
            shifted = t.alloc("shifted row indices", q_len * _INDEX_BYTES)
            compared = t.alloc("comparison (bool temporary)", cells)
            t.free(shifted, compared)
    t.free(rows, cols)
    return allowed


def _eager_timeline(
    batch: int,
    heads: int,
    kv_heads: int,
    q_len: int,
    k_len: int,
    head_dim: int,
    size: int,
    causal: bool,
    window: Window,
) -> _Timeline:
    """standard_attention.eager_attention, statement by statement."""
    t = _Timeline()
    score = batch * heads * q_len * k_len * size
    kv_copy = batch * heads * k_len * head_dim * size if kv_heads != heads else 0
    t.statement = "k = expand_kv_heads(k, heads)"
    k_rep = t.alloc("k repeated for every query head (GQA)", kv_copy)
    t.statement = "v = expand_kv_heads(v, heads)"
    v_rep = t.alloc("v repeated for every query head (GQA)", kv_copy)
    t.statement = "scores = torch.matmul(q, k.transpose(-2, -1)) * softmax_scale"
    raw = t.alloc("q @ k^T (matmul output)", score, "score")
    scores = t.alloc("scores (scaled copy)", score, "score")
    t.free(raw)
    allowed = 0
    if _needs_mask(causal, window):
        allowed = _band_mask_events(t, q_len, k_len, causal, window)
        t.statement = "scores = scores.masked_fill(~allowed, float('-inf'))"
        negated = t.alloc("~allowed (bool)", q_len * k_len)
        masked = t.alloc("masked scores (masked_fill copy)", score, "score")
        t.free(negated, scores)
        scores = masked
    t.statement = "weights = torch.softmax(scores, dim=-1)"
    weights = t.alloc("weights (softmax output)", score, "prob")
    if allowed:
        t.statement = "allowed.any(dim=-1).all()"
        t.free(t.alloc("allowed.any(dim=-1)", q_len))
        if _has_empty_rows(q_len, k_len, causal, window):
            t.statement = "weights = weights.nan_to_num(0.0)"
            cleaned = t.alloc("weights (nan_to_num copy)", score, "prob")
            t.free(weights)
            weights = cleaned
    t.statement = "return torch.matmul(weights, v)"
    t.alloc("output", batch * heads * q_len * head_dim * size)
    t.statement = "return (locals freed)"
    t.free(scores, weights, allowed, k_rep, v_rep)
    return t


def _sdpa_math_timeline(
    batch: int,
    heads: int,
    kv_heads: int,
    q_len: int,
    k_len: int,
    head_dim: int,
    dtype: str,
    causal: bool,
    window: Window,
    upcast: bool,
) -> _Timeline:
    """F.scaled_dot_product_attention pinned to MATH, as backends._sdpa_call calls it."""
    t = _Timeline()
    size = _DTYPE_BYTES[dtype]
    upcasting = upcast and dtype in _REDUCED_FLOATS
    # allowFP16BF16ReductionMathSDP() is False by default: fp16/bf16 inputs are computed in fp32.
    acc = 4 if upcasting else size
    cells = q_len * k_len
    score_cells = batch * heads * q_len * k_len
    q_elems = batch * heads * q_len * head_dim
    kv_elems = batch * kv_heads * k_len * head_dim
    # backends._sdpa_call passes a bool band mask whenever is_causal's top-left diagonal would be wrong.
    explicit_mask = _needs_mask(causal, window) and (window != NO_WINDOW or (causal and q_len != k_len))
    local: list[int] = []
    if explicit_mask:
        local.append(_band_mask_events(t, q_len, k_len, causal, window))
        t.statement = "scaled_dot_product_attention: convert_boolean_attn_mask(attn_mask, query.dtype())"
        local.append(t.alloc("additive mask (where(mask, 0, -inf))", cells * size))
    if upcasting:
        t.statement = "query_acc = query_.to(at::kFloat)"
        local.append(t.alloc("q.to(float32)", q_elems * 4))
        t.statement = "key_acc = key.to(at::kFloat)"
        local.append(t.alloc("k.to(float32)", kv_elems * 4))
        t.statement = "value_acc = value.to(at::kFloat)"
        local.append(t.alloc("v.to(float32)", kv_elems * 4))
    t.statement = "query = query_acc * sqrt(scale)"
    local.append(t.alloc("q * sqrt(scale)", q_elems * acc))
    if causal and not explicit_mask:
        t.statement = "attn_mask = at::ones({L, S}, kBool).tril()"
        ones = t.alloc("ones(L, S) (bool)", cells)
        lower = t.alloc("tril (bool causal mask)", cells)
        t.free(ones)
        t.statement = "attn_mask = convert_boolean_attn_mask(attn_mask, query.dtype())"
        local.append(t.alloc(f"additive causal mask ({'float32' if upcasting else dtype})", cells * acc))
        t.free(lower)
    if kv_heads != heads:
        t.statement = "pre_process_group_query_attention_input (enable_gqa): repeat_interleave"
        local.append(t.alloc("k repeated for every query head (GQA)", batch * heads * k_len * head_dim * acc))
        local.append(t.alloc("v repeated for every query head (GQA)", batch * heads * k_len * head_dim * acc))
    t.statement = "attn = at::matmul(query, key_expanded.transpose(-2, -1) * sqrt(scale))"
    scaled_k = t.alloc("k^T * sqrt(scale)", batch * heads * k_len * head_dim * acc)
    attn = t.alloc("attn = q @ k^T" + (" (float32)" if upcasting else ""), score_cells * acc, "score")
    t.free(scaled_k)
    t.statement = "_safe_softmax: out = at::softmax(attn, -1)"
    out = t.alloc("softmax output" + (" (float32)" if upcasting else ""), score_cells * acc, "prob")
    t.statement = "_safe_softmax: masked = attn.isneginf()"
    neg_inf = t.alloc("isneginf(attn) (bool)", score_cells)
    t.statement = "_safe_softmax: masked_rows = all(masked, -1, keepdim)"
    rows = t.alloc("fully masked rows (bool)", batch * heads * q_len)
    # where_out(out, masked_rows, 0, out) writes in place; then attn = out frees the old scores.
    t.statement = "attn = _safe_softmax(attn, -1) returns"
    t.free(rows, neg_inf, attn)
    t.statement = "return make_tuple(at::matmul(attn, value_expanded).to(dtype), attn.to(dtype))"
    # Temporaries live to the end of the full expression, so argument order does not matter.
    weights_copy = t.alloc(f"attn.to({dtype}) (unused weights output)", score_cells * size if upcasting else 0)
    product = t.alloc("attn @ v" + (" (float32)" if upcasting else ""), q_elems * acc)
    cast = t.alloc("output.to(dtype)", q_elems * size if upcasting else 0)
    t.statement = "return (locals freed)"
    t.free(weights_copy, out, *local)
    if cast:
        t.free(product)
    return t


def _naive_timeline(batch: int, heads: int, q_len: int, k_len: int, size: int) -> _Timeline:
    """The popular model: one score matrix and one probability matrix."""
    t = _Timeline()
    t.statement = "naive model"
    score = batch * heads * q_len * k_len * size
    t.alloc("score matrix", score, "score")
    t.alloc("probability matrix", score, "prob")
    return t


# --- accounting: live tensors and the CUDA caching allocator ----------------------------------

# PyTorch's CUDACachingAllocator constants (c10/cuda/CUDACachingAllocator.cpp).
_MIN_BLOCK = 512
_SMALL_SIZE = 1 << 20
_SMALL_BUFFER = 2 << 20
_LARGE_BUFFER = 20 << 20
_MIN_LARGE_ALLOC = 10 << 20
_ROUND_LARGE = 2 << 20


def _round_block(nbytes: int) -> int:
    return max(_MIN_BLOCK, _MIN_BLOCK * math.ceil(nbytes / _MIN_BLOCK))


def _segment_size(block: int) -> int:
    if block <= _SMALL_SIZE:
        return _SMALL_BUFFER
    if block < _MIN_LARGE_ALLOC:
        return _LARGE_BUFFER
    return _ROUND_LARGE * math.ceil(block / _ROUND_LARGE)


@dataclass
class _Block:
    offset: int
    size: int
    owner: int  # allocation key; 0 when the block is free


@dataclass
class _Segment:
    order: int
    size: int
    small: bool
    creator: str
    blocks: list[_Block]


@dataclass(frozen=True)
class SegmentView:
    """One cudaMalloc'd segment at the reserved peak: its size, who caused it, who lives in it now."""

    size: int
    created_for: str
    live: tuple[str, ...]
    live_bytes: int


class _CachingAllocatorModel:
    """Best-fit reuse of cached blocks with splitting, new segments on a miss, release only when needed."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.segments: list[_Segment] = []
        self.home: dict[int, _Segment] = {}
        self.labels: dict[int, str] = {}
        self.reserved = 0
        self.peak_reserved = 0
        self.peak_segments: tuple[SegmentView, ...] = ()
        self._order = 0

    def malloc(self, key: int, label: str, nbytes: int) -> bool:
        """Allocate; False when a new segment would exceed the capacity even after releasing cached ones."""
        size = _round_block(nbytes)
        small = size <= _SMALL_SIZE
        found = self._best_fit(size, small)
        if found is None:
            segment_size = _segment_size(size)
            if self.capacity is not None and self.reserved + segment_size > self.capacity:
                # On a failed cudaMalloc PyTorch frees every cached segment that is entirely unused.
                self._release_unused()
                if self.reserved + segment_size > self.capacity:
                    return False
            self._order += 1
            segment = _Segment(self._order, segment_size, small, label, [_Block(0, segment_size, 0)])
            self.segments.append(segment)
            self.reserved += segment_size
            found = (segment, 0)
        segment, index = found
        block = segment.blocks[index]
        remaining = block.size - size
        # Large blocks are split only when more than 1 MiB would be left over.
        if (remaining >= _MIN_BLOCK) if small else (remaining > _SMALL_SIZE):
            segment.blocks[index : index + 1] = [
                _Block(block.offset, size, key),
                _Block(block.offset + size, remaining, 0),
            ]
        else:
            block.owner = key
        self.home[key] = segment
        self.labels[key] = label
        if self.reserved > self.peak_reserved:
            self.peak_reserved = self.reserved
            self.peak_segments = self._view()
        return True

    def free(self, key: int) -> None:
        """Return a block to the cache, merging it with free neighbours in its segment."""
        segment = self.home.pop(key)
        blocks = segment.blocks
        index = next(i for i, block in enumerate(blocks) if block.owner == key)
        blocks[index].owner = 0
        if index + 1 < len(blocks) and not blocks[index + 1].owner:
            blocks[index].size += blocks.pop(index + 1).size
        if index > 0 and not blocks[index - 1].owner:
            blocks[index - 1].size += blocks.pop(index).size

    def _best_fit(self, size: int, small: bool) -> tuple[_Segment, int] | None:
        best: tuple[int, int, int] | None = None
        found: tuple[_Segment, int] | None = None
        for segment in self.segments:
            if segment.small != small:
                continue
            for index, block in enumerate(segment.blocks):
                if not block.owner and block.size >= size:
                    rank = (block.size, segment.order, block.offset)
                    if best is None or rank < best:
                        best, found = rank, (segment, index)
        return found

    def _release_unused(self) -> None:
        unused = [s for s in self.segments if len(s.blocks) == 1 and not s.blocks[0].owner]
        for segment in unused:
            self.segments.remove(segment)
            self.reserved -= segment.size

    def _view(self) -> tuple[SegmentView, ...]:
        return tuple(
            SegmentView(
                size=s.size,
                created_for=s.creator,
                live=tuple(self.labels[b.owner] for b in s.blocks if b.owner),
                live_bytes=sum(b.size for b in s.blocks if b.owner),
            )
            for s in self.segments
        )


@dataclass(frozen=True)
class _Simulation:
    fits: bool
    reserved_rise: int
    segments: tuple[SegmentView, ...]


def _simulate(timeline: _Timeline, inputs: Sequence[tuple[str, int]], capacity: int | None) -> _Simulation:
    """Replay a timeline through the caching-allocator model, the inputs already allocated."""
    model = _CachingAllocatorModel(capacity)
    for key, (label, nbytes) in enumerate(inputs, start=-len(inputs)):
        if nbytes and not model.malloc(key, label, nbytes):
            return _Simulation(False, 0, ())
    baseline = model.reserved
    model.peak_reserved = baseline
    model.peak_segments = model._view()
    for event in timeline.events:
        if event.nbytes:
            if not model.malloc(event.key, event.label, event.nbytes):
                return _Simulation(False, model.peak_reserved - baseline, model.peak_segments)
        else:
            model.free(event.key)
    return _Simulation(True, model.peak_reserved - baseline, model.peak_segments)


@dataclass(frozen=True)
class PeakPrediction:
    """Predicted peak memory of one attention call above its inputs, and what is live at that moment."""

    backend: str
    total_bytes: int
    items: tuple[tuple[str, int], ...]
    statement: str
    reserved_bytes: int
    score_matrix_bytes: int
    roles: tuple[Role, ...] = ()
    reserved_segments: tuple[SegmentView, ...] = ()

    @property
    def score_matrices(self) -> float:
        """The peak in units of one score matrix in the input dtype."""
        return self.total_bytes / self.score_matrix_bytes

    @property
    def reserved_score_matrices(self) -> float:
        """The caching allocator's reserved peak in units of one score matrix."""
        return self.reserved_bytes / self.score_matrix_bytes


def _timeline_for(
    backend: str,
    *,
    batch: int,
    heads: int,
    kv_heads: int,
    q_len: int,
    k_len: int,
    head_dim: int,
    dtype: DTypeLike,
    causal: bool,
    window: Window,
    math_upcast: bool,
) -> _Timeline:
    _check_positive(batch=batch, heads=heads, kv_heads=kv_heads, q_len=q_len, k_len=k_len, head_dim=head_dim)
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    if len(window) != 2 or not all(isinstance(side, int) for side in window):
        raise ValueError(f"window must be a (left, right) pair of integers, -1 meaning unbounded; got {window!r}")
    name = dtype_name(dtype)
    size = _DTYPE_BYTES[name]
    window = (window[0], window[1])
    if backend == "eager":
        return _eager_timeline(batch, heads, kv_heads, q_len, k_len, head_dim, size, causal, window)
    if backend == "sdpa-math":
        return _sdpa_math_timeline(batch, heads, kv_heads, q_len, k_len, head_dim, name, causal, window, math_upcast)
    if backend == "naive":
        return _naive_timeline(batch, heads, q_len, k_len, size)
    raise ValueError(f"unknown backend {backend!r} for memory prediction; expected one of {', '.join(BACKENDS)}")


def _input_tensors(
    *, batch: int, heads: int, kv_heads: int, q_len: int, k_len: int, head_dim: int, dtype: DTypeLike
) -> tuple[tuple[str, int], ...]:
    size = dtype_bytes(dtype)
    kv = batch * kv_heads * k_len * head_dim * size
    return (("q", batch * heads * q_len * head_dim * size), ("k", kv), ("v", kv))


def predict_peak(
    backend: str,
    *,
    batch: int,
    heads: int,
    kv_heads: int,
    q_len: int,
    k_len: int,
    head_dim: int,
    dtype: DTypeLike,
    causal: bool,
    window: Window = NO_WINDOW,
    math_upcast: bool = True,
) -> PeakPrediction:
    """Peak bytes above the inputs for 'eager', 'sdpa-math' (or 'naive'), naming each tensor live at the peak."""
    shape = {"batch": batch, "heads": heads, "kv_heads": kv_heads, "q_len": q_len, "k_len": k_len}
    timeline = _timeline_for(
        backend, **shape, head_dim=head_dim, dtype=dtype, causal=causal, window=window, math_upcast=math_upcast
    )
    live: dict[int, _Event] = {}
    total = peak = 0
    peak_items: tuple[_Event, ...] = ()
    peak_statement = ""
    for event in timeline.events:
        if event.nbytes:
            live[event.key] = event
            total += event.nbytes
            if total > peak:
                peak, peak_items, peak_statement = total, tuple(live.values()), event.statement
        else:
            total -= live.pop(event.key).nbytes
    simulation = _simulate(timeline, _input_tensors(**shape, head_dim=head_dim, dtype=dtype), None)
    return PeakPrediction(
        backend=backend,
        total_bytes=peak,
        items=tuple((item.label, item.nbytes) for item in peak_items),
        statement=peak_statement,
        reserved_bytes=simulation.reserved_rise,
        score_matrix_bytes=score_matrix_bytes(batch, heads, q_len, k_len, dtype),
        roles=tuple(item.role for item in peak_items),
        reserved_segments=simulation.segments,
    )


def _fits(
    backend: str,
    tokens: int,
    budget: int,
    *,
    batch: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    dtype: DTypeLike,
    causal: bool,
    window: Window,
    allocator: Allocator,
    math_upcast: bool,
) -> bool:
    shape = {"batch": batch, "heads": heads, "kv_heads": kv_heads, "q_len": tokens, "k_len": tokens}
    inputs = _input_tensors(**shape, head_dim=head_dim, dtype=dtype)
    if allocator == "ideal":
        peak = predict_peak(
            backend, **shape, head_dim=head_dim, dtype=dtype, causal=causal, window=window, math_upcast=math_upcast
        )
        return peak.total_bytes + sum(nbytes for _, nbytes in inputs) <= budget
    timeline = _timeline_for(
        backend, **shape, head_dim=head_dim, dtype=dtype, causal=causal, window=window, math_upcast=math_upcast
    )
    return _simulate(timeline, inputs, budget).fits


def predict_max_context(
    backend: str,
    free_bytes: int,
    *,
    batch: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    dtype: DTypeLike,
    causal: bool,
    granularity: int = 256,
    slack_bytes: int = 0,
    window: Window = NO_WINDOW,
    allocator: Allocator = "ideal",
    math_upcast: bool = True,
) -> int:
    """Largest Sq = Sk, a multiple of ``granularity``, whose inputs, peak and slack fit in ``free_bytes`` (0: none).

    ``free_bytes`` is the device memory before q, k, v exist (``torch.cuda.mem_get_info()[0]``, or the
    total with the CUDA context's share given as ``slack_bytes``). ``allocator='ideal'`` counts live
    tensors only (every freed byte reusable); ``'cuda-caching'`` replays the call through a model of
    PyTorch's CUDA caching allocator, whose split blocks can leave a score-sized hole unusable.
    """
    _check_positive(granularity=granularity)
    if allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator model {allocator!r}; expected one of {', '.join(ALLOCATORS)}")
    budget = free_bytes - slack_bytes

    def fits(steps: int) -> bool:
        return _fits(
            backend,
            steps * granularity,
            budget,
            batch=batch,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            dtype=dtype,
            causal=causal,
            window=window,
            allocator=allocator,
            math_upcast=math_upcast,
        )

    if budget <= 0 or not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):  # every term grows with the length, so the first misfit bounds the search
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low * granularity


def _naive_misses(prediction: PeakPrediction) -> list[tuple[str, float]]:
    """What the naive model (two score-sized matrices in the input dtype) leaves out of this peak."""
    unit = prediction.score_matrix_bytes
    misses: list[tuple[str, float]] = []
    covered = 0
    # The naive model's two matrices stand for the two largest score/probability tensors.
    ranked = sorted(zip(prediction.items, prediction.roles, strict=True), key=lambda pair: -pair[0][1])
    for (label, nbytes), role in ranked:
        if role != "other" and covered < 2:
            covered += 1
            if nbytes > unit:
                misses.append((f"the wider dtype of {label}", (nbytes - unit) / unit))
        else:
            misses.append((label, nbytes / unit))
    return misses


def explain_gap(
    backend: str,
    predicted_tokens: int,
    measured_tokens: int,
    *,
    free_bytes: int,
    batch: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    dtype: DTypeLike,
    causal: bool,
    window: Window = NO_WINDOW,
    granularity: int = 256,
    slack_bytes: int = 0,
    math_upcast: bool = True,
) -> str:
    """Explain a predicted vs measured frontier in score-matrix equivalents and the tensors behind them."""
    _check_positive(predicted_tokens=predicted_tokens, measured_tokens=measured_tokens, granularity=granularity)
    name = dtype_name(dtype)
    shape = {"batch": batch, "heads": heads, "kv_heads": kv_heads}

    def held(tokens: int) -> float:
        """Score matrices that the free memory, less inputs and slack, holds at this length."""
        inputs = qkv_bytes(**shape, q_len=tokens, k_len=tokens, head_dim=head_dim, dtype=name)
        return (free_bytes - slack_bytes - inputs) / score_matrix_bytes(batch, heads, tokens, tokens, name)

    failing = measured_tokens + granularity
    upper, lower = held(measured_tokens), held(failing)
    prediction = predict_peak(
        backend,
        **shape,
        q_len=measured_tokens,
        k_len=measured_tokens,
        head_dim=head_dim,
        dtype=name,
        causal=causal,
        window=window,
        math_upcast=math_upcast,
    )
    unit = prediction.score_matrix_bytes
    relative = predicted_tokens / measured_tokens - 1
    parts = [
        f"{backend}: predicted {predicted_tokens:,} tokens, measured {measured_tokens:,} ({relative:+.1%}).",
        f"Fitting {measured_tokens:,} tokens but not {failing:,} in {format_bytes(free_bytes)} means "
        f"{lower:.1f} to {upper:.1f} {name} score matrices ({format_bytes(unit)} each at {measured_tokens:,}) "
        "were held at the peak above q, k and v; the naive model counts 2.0 (one score, one probability matrix).",
    ]
    live = prediction.score_matrices
    if backend != "naive":
        misses = [(label, share) for label, share in _naive_misses(prediction) if share >= 0.005]
        missed = ", ".join(f"{label} (+{share:.2f})" for label, share in sorted(misses, key=lambda m: -m[1]))
        parts.append(
            f"Walked line by line, {backend} holds {live:.2f} at its peak ({prediction.statement}); "
            f"the naive model misses {missed or 'nothing of note'}."
        )
    explained = live
    reserved = prediction.reserved_score_matrices
    if lower - live > 0.25 and reserved - live > 0.25:
        holes = [
            s
            for s in prediction.reserved_segments
            if s.size >= unit / 4 and s.live_bytes < s.size / 2 and s.created_for not in s.live
        ]
        detail = "".join(
            f"; the {format_bytes(s.size)} block first allocated for {s.created_for} was split to hold "
            f"{' and '.join(s.live) or 'nothing'}, so the next score-sized tensor needed a fresh block"
            for s in holes
        )
        parts.append(
            f"The other {lower - live:.1f} is allocator fragmentation, not a live tensor: PyTorch's CUDA caching "
            f"allocator reserves {reserved:.2f} score matrices for this sequence{detail}."
        )
        explained = reserved
    if lower - explained > 0.25:
        parts.append(
            f"About {lower - explained:.1f} score matrices remain unexplained: the measured code keeps more alive "
            f"than {backend} as modelled here, or other memory was in use on the device."
        )
    elif upper < explained - 0.25:
        parts.append(
            f"The measured code held less than this model predicts ({upper:.1f} < {explained:.2f}): "
            f"it keeps fewer tensors alive than {backend} as modelled here."
        )
    else:
        parts.append(f"The model's {explained:.2f} accounts for the measured {lower:.1f} to {upper:.1f}.")
    return " ".join(parts)
