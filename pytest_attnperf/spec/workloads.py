"""Inference workloads beside prefill: what each one is, its defaults, and seeded sequence lengths (no torch import).

A *workload* says how queries meet keys:

- ``prefill``: the prompt, ``q_len == k_len`` (what the kernel suite always measured);
- ``decode``: ``q_len`` new tokens (1; a few with speculative decoding) over a dense KV cache of ``k_len``;
- ``paged``: decode over a KV cache kept in fixed-size pages that a block table points to;
- ``varlen``: sequences of different lengths packed one after another with cumulative lengths (prefill;
  decode when ``q_len`` is given: each sequence's ``q_len`` new tokens over its own cache);
- ``chunked``: a chunk of ``q_len`` queries over a longer cache (chunked prefill).

Queries are the last ``q_len`` positions of their sequence: causal masking is bottom-right aligned.
"""

from __future__ import annotations

from typing import Literal

# What a case times (here, not in shapes.py: the options parse modes at every run's start, shapes load later).
Mode = Literal["forward", "backward", "forward+backward"]
MODES: tuple[Mode, ...] = ("forward", "backward", "forward+backward")

Workload = Literal["prefill", "decode", "paged", "varlen", "chunked"]
WORKLOADS: tuple[Workload, ...] = ("prefill", "decode", "paged", "varlen", "chunked")
WORKLOAD_HELP: dict[str, str] = {
    "prefill": "the prompt: q_len == k_len",
    "decode": "q_len new tokens (default 1) over a dense KV cache of the context length",
    "paged": "decode over a KV cache in fixed-size pages found through a block table",
    "varlen": "sequences of seeded different lengths packed with cumulative lengths (decode when q_len is given)",
    "chunked": "a chunk of q_len queries (default a quarter of the context) over the whole cache",
}
# q (batch, heads, q_len, head_dim) against k/v (batch, kv_heads, k_len, head_dim): what every backend takes.
DENSE_WORKLOADS: frozenset[str] = frozenset({"prefill", "decode", "chunked"})
# Training modes time a backward pass: only the prompt-shaped workloads have one worth timing.
TRAINABLE_WORKLOADS: frozenset[str] = frozenset({"prefill", "varlen"})
VARLEN_DEFAULT_BATCH = 4  # a packed batch of one sequence would not be variable-length
SHORTEST_FRACTION = 4  # varlen sequences are between a quarter of the longest and the longest
CHUNK_FRACTION = 4  # a chunked prefill's default chunk is a quarter of the context


def parse_workload(value: object) -> Workload:
    """A workload name, or ValueError listing the accepted ones."""
    text = value.strip().lower() if isinstance(value, str) else value
    for workload in WORKLOADS:
        if text == workload:
            return workload
    raise ValueError(f"workload {value!r} is not one of {', '.join(WORKLOADS)}")


def default_q_len(workload: str, context_len: int) -> int | None:
    """Queries per sequence when none is given: None means 'as many as keys' (prefill, varlen prefill)."""
    if workload in ("decode", "paged"):
        return 1
    if workload == "chunked":
        return max(1, context_len // CHUNK_FRACTION)
    return None


_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """The splitmix64 finaliser on Python ints: the same integer on every machine."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def seeded_integers(count: int, *, seed: int, stream: int) -> list[int]:
    """``count`` 64-bit integers that depend only on (seed, stream, index): no RNG state anywhere."""
    key = (seed * 0x100000001B3 + stream * 0x1F3) & ((1 << 62) - 1)
    return [_splitmix64(key + index) for index in range(count)]


def seeded_lengths(longest: int, count: int, *, seed: int) -> tuple[int, ...]:
    """Per-sequence lengths of a varlen batch: the first is ``longest``, the others seeded in [longest/4, longest].

    The first sequence keeps the case's context length, so the test id's length is the longest one.
    """
    if count < 1 or longest < 1:
        raise ValueError(f"a varlen batch needs at least one sequence of at least one token, not {count} x {longest}")
    shortest = max(1, -(-longest // SHORTEST_FRACTION))
    span = longest - shortest + 1
    drawn = seeded_integers(count - 1, seed=seed, stream=5)
    return (longest, *(shortest + value % span for value in drawn))


def pages_needed(length: int, page_size: int) -> int:
    """Pages a sequence of ``length`` tokens occupies (the last one partly filled)."""
    return -(-length // page_size)
