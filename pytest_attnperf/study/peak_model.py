"""Peak memory and the largest context of materialised attention, predicted from the timelines.

``predict_peak`` names each tensor live at the peak; ``predict_max_context`` bisects the longest
context whose inputs and peak fit (counting live tensors, or replaying the call through the
caching-allocator model); ``explain_gap`` says, in score-matrix equivalents, why a measured
frontier differs from a prediction. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..spec.dtypes import DTypeLike, dtype_name
from ..spec.shapes import NO_WINDOW, Window
from ..spec.units import format_bytes
from .allocator_model import SegmentView, simulate
from .memory_calculator import check_positive, qkv_bytes, score_matrix_bytes
from .timelines import Event, Role, input_tensors, timeline_for

Allocator = Literal["ideal", "cuda-caching"]
ALLOCATORS = ("ideal", "cuda-caching")


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
    timeline = timeline_for(
        backend, **shape, head_dim=head_dim, dtype=dtype, causal=causal, window=window, math_upcast=math_upcast
    )
    live: dict[int, Event] = {}
    total = peak = 0
    peak_items: tuple[Event, ...] = ()
    peak_statement = ""
    for event in timeline.events:
        if event.nbytes:
            live[event.key] = event
            total += event.nbytes
            if total > peak:
                peak, peak_items, peak_statement = total, tuple(live.values()), event.statement
        else:
            total -= live.pop(event.key).nbytes
    simulation = simulate(timeline, input_tensors(**shape, head_dim=head_dim, dtype=dtype), None)
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
    inputs = input_tensors(**shape, head_dim=head_dim, dtype=dtype)
    if allocator == "ideal":
        peak = predict_peak(
            backend, **shape, head_dim=head_dim, dtype=dtype, causal=causal, window=window, math_upcast=math_upcast
        )
        return peak.total_bytes + sum(nbytes for _, nbytes in inputs) <= budget
    timeline = timeline_for(
        backend, **shape, head_dim=head_dim, dtype=dtype, causal=causal, window=window, math_upcast=math_upcast
    )
    return simulate(timeline, inputs, budget).fits


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
    check_positive(granularity=granularity)
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
    check_positive(predicted_tokens=predicted_tokens, measured_tokens=measured_tokens, granularity=granularity)
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
