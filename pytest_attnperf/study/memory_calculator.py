"""Memory arithmetic for attention at model scale: KV cache, score matrices, FlashAttention state, weights.

Closed-form sizes (no torch import), and ``attnperf memory``'s report, which corrects the popular
"128 GB of KV cache, FlashAttention reduces it to 16 GB" claim: the 128 GiB is one layer's score
matrix, and FlashAttention removes that, not the KV cache. A sliding-window layer (Mistral, Gemma-2's
local layers) keeps at most its window of tokens, so its share of the cache stops growing there.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.dtypes import DTypeLike, dtype_bytes, dtype_name
from ..spec.presets import ModelPreset, resolve_model
from ..spec.units import format_bytes

_LSE_BYTES = 4  # FlashAttention keeps its row statistics in fp32


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, dtype: DTypeLike, tokens: int, batch: int) -> int:
    """KV cache of a whole model: 2 (K and V) · layers · kv_heads · head_dim · bytes · tokens · batch."""
    check_positive(layers=layers, kv_heads=kv_heads, head_dim=head_dim, tokens=tokens, batch=batch)
    return 2 * layers * kv_heads * head_dim * dtype_bytes(dtype) * tokens * batch


def cached_tokens(preset: ModelPreset | None, layers: int, tokens: int) -> int:
    """Tokens the KV cache holds summed over layers: a sliding layer keeps at most its window.

    A preset's layer pattern (full / sliding) repeats when ``layers`` differs from its own count.
    """
    if preset is None or preset.sliding_window is None:
        return layers * tokens
    kinds = preset.layer_kinds()
    window = preset.sliding_window
    return sum(min(tokens, window) if kinds[i % len(kinds)] == "sliding" else tokens for i in range(layers))


def model_kv_cache_bytes(preset: ModelPreset, *, tokens: int, batch: int, dtype: DTypeLike) -> int:
    """The whole model's KV cache at ``tokens`` of context: every layer, each sliding layer capped at its window."""
    check_positive(tokens=tokens, batch=batch)
    per_token = 2 * preset.num_key_value_heads * preset.head_dim * dtype_bytes(dtype) * batch
    return per_token * cached_tokens(preset, preset.num_hidden_layers, tokens)


def kv_cache_limit(
    preset: ModelPreset, *, batch: int, dtype: DTypeLike, free_bytes: int, granularity: int = 1024
) -> int:
    """The longest context (a multiple of ``granularity``) whose weights plus whole-model KV cache fit in ``free_bytes``.

    0 when not even ``granularity`` tokens fit beside the weights. The cache grows monotonically (a sliding
    layer stops growing at its window), so a bisection over multiples of ``granularity`` finds it.
    """
    room = free_bytes - weights_bytes(preset, dtype)

    def fits(steps: int) -> bool:
        return model_kv_cache_bytes(preset, tokens=steps * granularity, batch=batch, dtype=dtype) <= room

    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        if high > 1 << 40:  # only sliding layers, each capped: the cache never outgrows memory
            return high * granularity
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low * granularity


def score_matrix_bytes(batch: int, heads: int, q_len: int, k_len: int, dtype: DTypeLike) -> int:
    """One layer's materialised B·H·Sq·Sk score matrix (the probability matrix is as large)."""
    check_positive(batch=batch, heads=heads, q_len=q_len, k_len=k_len)
    return batch * heads * q_len * k_len * dtype_bytes(dtype)


def flash_state_bytes(batch: int, heads: int, q_len: int) -> int:
    """FlashAttention's O(N) state instead of the score matrix: fp32 log-sum-exp per row, B·H·S·4."""
    check_positive(batch=batch, heads=heads, q_len=q_len)
    return batch * heads * q_len * _LSE_BYTES


def weights_bytes(preset: ModelPreset | str, dtype: DTypeLike) -> int:
    """Bytes of a preset's weights stored in ``dtype``."""
    return resolve_model(preset).parameter_count() * dtype_bytes(dtype)


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
    kv_cache_unwindowed_bytes: int  # as large as kv_cache_bytes unless some layers slide
    sliding_layers: int
    sliding_window: int | None
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
    model = resolve_model(preset) if isinstance(preset, str) else preset
    if model is not None:
        layers = model.num_hidden_layers if layers is None else layers
        heads = model.num_attention_heads if heads is None else heads
        kv_heads = model.num_key_value_heads if kv_heads is None else kv_heads
        head_dim = model.head_dim if head_dim is None else head_dim
    elif layers is None or heads is None or head_dim is None:
        raise ValueError("model_memory needs a preset, or layers, heads and head_dim (kv_heads defaults to heads)")
    kv_heads = heads if kv_heads is None else kv_heads
    check_positive(layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim, context_len=context_len)
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    name = dtype_name(dtype)
    score = score_matrix_bytes(batch, heads, context_len, context_len, name)
    per_token_and_head = 2 * head_dim * dtype_bytes(name) * batch
    tokens = cached_tokens(model, layers, context_len)
    window = model.sliding_window if model is not None else None
    kinds = model.layer_kinds() if model is not None else ("full",)
    sliding = sum(1 for i in range(layers) if kinds[i % len(kinds)] == "sliding") if window else 0
    return ModelMemory(
        name=model.name if model is not None else "custom",
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context_len=context_len,
        batch=batch,
        dtype=name,
        kv_cache_bytes=per_token_and_head * kv_heads * tokens,
        kv_cache_without_gqa_bytes=per_token_and_head * heads * tokens,
        kv_cache_unwindowed_bytes=kv_cache_bytes(layers, kv_heads, head_dim, name, context_len, batch),
        sliding_layers=sliding,
        sliding_window=window if sliding else None,
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
    how = f"2 x {m.layers} layers x {m.kv_heads} x {m.head_dim} x {size} B x {ctx} tokens x batch {m.batch}"
    if m.sliding_layers and m.sliding_window is not None:
        kept = min(m.context_len, m.sliding_window)
        full = m.layers - m.sliding_layers
        layers = ([f"{full} full layers x {ctx}"] if full else []) + [f"{m.sliding_layers} sliding layers x {kept:,}"]
        how = f"2 x {m.kv_heads} x {m.head_dim} x {size} B x batch {m.batch} x ({' + '.join(layers)}) tokens"
    rows.append((f"KV cache, all layers ({m.kv_heads} KV heads, {gqa})", format_bytes(m.kv_cache_bytes), how))
    if m.kv_cache_unwindowed_bytes != m.kv_cache_bytes:
        rows.append(
            (
                "KV cache if sliding layers kept every token",
                format_bytes(m.kv_cache_unwindowed_bytes),
                f"{m.sliding_layers} of {m.layers} layers attend to the last {m.sliding_window:,} tokens only",
            )
        )
    rows += [
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
