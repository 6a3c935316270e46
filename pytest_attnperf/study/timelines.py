"""How the materialising backends allocate and free, statement by statement (no torch import).

* ``eager`` is :func:`pytest_attnperf.measure.reference.eager_attention`; Python frees a
  temporary when its last reference goes, and a local (``scores``) lives until the function returns.
* ``sdpa-math`` is PyTorch's ``_scaled_dot_product_attention_math`` (aten/src/ATen/native/
  transformers/attention.cpp, torch 2.5+) called through ``F.scaled_dot_product_attention`` the
  way the ``sdpa-*`` backends call it. Its C++ locals (the fp32 copies of q, k, v, the additive
  mask) live until it returns, and ``_safe_softmax`` keeps its input, its output and a bool
  ``isneginf`` mask of the same shape alive at once.
* ``naive`` is the popular model: one score and one probability matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..spec.dtypes import DTYPE_BYTES, REDUCED_FLOATS, DTypeLike, dtype_bytes, dtype_name
from ..spec.shapes import NO_WINDOW, Window, has_rows_without_keys, mask_bounds, needs_mask
from .memory_calculator import check_positive

BACKENDS = ("eager", "sdpa-math", "naive")
_INDEX_BYTES = 8  # torch.arange defaults to int64

Role = Literal["score", "prob", "other"]


@dataclass(frozen=True)
class Event:
    """One allocation (nbytes > 0) or free (nbytes == 0) of a named tensor, inside one statement."""

    key: int
    label: str
    nbytes: int
    role: Role
    statement: str


@dataclass
class Timeline:
    """The allocations and frees of one backend call, in program order."""

    events: list[Event] = field(default_factory=list)
    statement: str = ""
    _labels: dict[int, str] = field(default_factory=dict)

    def alloc(self, label: str, nbytes: int, role: Role = "other") -> int:
        """Record a new tensor; returns its key (0 for an empty tensor, which allocates nothing)."""
        if nbytes <= 0:
            return 0
        key = len(self._labels) + 1
        self._labels[key] = label
        self.events.append(Event(key, label, nbytes, role, self.statement))
        return key

    def free(self, *keys: int) -> None:
        """Record that these tensors lost their last reference."""
        for key in keys:
            if key:
                self.events.append(Event(key, self._labels[key], 0, "other", self.statement))


def _band_mask_events(t: Timeline, q_len: int, k_len: int, causal: bool, window: Window) -> int:
    """standard_attention.band_mask: index vectors, the bool mask and one bool temporary per bound."""
    left, right = mask_bounds(causal, window)
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
) -> Timeline:
    """standard_attention.eager_attention, statement by statement."""
    t = Timeline()
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
    if needs_mask(causal, window):
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
        if has_rows_without_keys(q_len, k_len, causal=causal, window=window):
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
) -> Timeline:
    """F.scaled_dot_product_attention pinned to MATH, as backends._sdpa_call calls it."""
    t = Timeline()
    size = DTYPE_BYTES[dtype]
    upcasting = upcast and dtype in REDUCED_FLOATS
    # allowFP16BF16ReductionMathSDP() is False by default: fp16/bf16 inputs are computed in fp32.
    acc = 4 if upcasting else size
    cells = q_len * k_len
    score_cells = batch * heads * q_len * k_len
    q_elems = batch * heads * q_len * head_dim
    kv_elems = batch * kv_heads * k_len * head_dim
    # backends._sdpa_call passes a bool band mask whenever is_causal's top-left diagonal would be wrong.
    explicit_mask = needs_mask(causal, window) and (window != NO_WINDOW or (causal and q_len != k_len))
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


def _naive_timeline(batch: int, heads: int, q_len: int, k_len: int, size: int) -> Timeline:
    """The popular model: one score matrix and one probability matrix."""
    t = Timeline()
    t.statement = "naive model"
    score = batch * heads * q_len * k_len * size
    t.alloc("score matrix", score, "score")
    t.alloc("probability matrix", score, "prob")
    return t


def timeline_for(
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
) -> Timeline:
    check_positive(batch=batch, heads=heads, kv_heads=kv_heads, q_len=q_len, k_len=k_len, head_dim=head_dim)
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    if len(window) != 2 or not all(isinstance(side, int) for side in window):
        raise ValueError(f"window must be a (left, right) pair of integers, -1 meaning unbounded; got {window!r}")
    name = dtype_name(dtype)
    size = DTYPE_BYTES[name]
    window = (window[0], window[1])
    if backend == "eager":
        return _eager_timeline(batch, heads, kv_heads, q_len, k_len, head_dim, size, causal, window)
    if backend == "sdpa-math":
        return _sdpa_math_timeline(batch, heads, kv_heads, q_len, k_len, head_dim, name, causal, window, math_upcast)
    if backend == "naive":
        return _naive_timeline(batch, heads, q_len, k_len, size)
    raise ValueError(f"unknown backend {backend!r} for memory prediction; expected one of {', '.join(BACKENDS)}")


def input_tensors(
    *, batch: int, heads: int, kv_heads: int, q_len: int, k_len: int, head_dim: int, dtype: DTypeLike
) -> tuple[tuple[str, int], ...]:
    size = dtype_bytes(dtype)
    kv = batch * kv_heads * k_len * head_dim * size
    return (("q", batch * heads * q_len * head_dim * size), ("k", kv), ("v", kv))
