"""Upper bounds of every size a user gives (options, marks, ``attnperf memory``, a model's config.json), in one place.

Each bound is far beyond any real model or run (the longest contexts are ~10M tokens, the most heads 128, the
largest head dim 576), yet small enough that a typo (an extra zero run, a 10**30) is a clear refusal that
names the option, the value and the bound, not a KV cache of 10**23 TiB or an allocation that hangs the GPU.
"""

from __future__ import annotations

TOKENS = 1 << 25  # 33,554,432: context lengths, queries per step, page sizes
SIZE_BOUNDS: dict[str, int] = {
    "context": TOKENS,
    "context length": TOKENS,
    "context_len": TOKENS,
    "seqlen": TOKENS,
    "q_len": TOKENS,
    "k_len": TOKENS,
    "tokens": TOKENS,
    "page_size": TOKENS,
    "batch": 1 << 16,  # 65,536 sequences
    "heads": 1 << 12,  # 4,096 (the most of any model: 128)
    "kv_heads": 1 << 12,
    "head_dim": 1 << 12,  # 4,096 (the largest of any model: 576)
    "layers": 1 << 12,  # 4,096 decoder layers (the most of any model: ~200)
    "min_samples": 1 << 20,  # samples per case: a million already takes minutes of a fast kernel
    "runs": 1000,  # independent processes of `attnperf update`
}
# A model's config.json, by transformers' key names: the same bounds where a key is one of the sizes above.
CONFIG_BOUNDS: dict[str, int] = {
    "num_attention_heads": SIZE_BOUNDS["heads"],
    "num_key_value_heads": SIZE_BOUNDS["kv_heads"],
    "head_dim": SIZE_BOUNDS["head_dim"],
    "num_hidden_layers": SIZE_BOUNDS["layers"],
    "max_window_layers": SIZE_BOUNDS["layers"],
    "hidden_size": 1 << 20,  # 1,048,576 (the widest model: ~25,000)
    "intermediate_size": 1 << 22,
    "vocab_size": 1 << 24,  # 16,777,216 (the largest vocabulary: ~260,000)
    "max_position_embeddings": 1 << 31,
    "sliding_window": 1 << 31,
    "query_pre_attn_scalar": 1 << 20,
}


def size_bound(what: str) -> int | None:
    """The largest value ``what`` (an option, mark or argument name: 'kv-heads', 'kv_heads') may take."""
    return SIZE_BOUNDS.get(what.strip().lstrip("-").replace("-", "_"))


def check_size(what: str, value: int, bound: int | None = None) -> int:
    """``value`` when it is within ``what``'s bound; a ValueError naming both otherwise."""
    limit = bound if bound is not None else size_bound(what)
    if limit is not None and value > limit:
        raise ValueError(f"{what} {value:,} is larger than {limit:,}, the most pytest-attnperf accepts")
    return value
