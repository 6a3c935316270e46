"""How the plugin calls an attention backend, said to the type checker and the reader (no torch import).

There are two call forms, one per kind of workload:

- prefill, decode and chunked: ``fn(q, k, v, shape)``, the tensors in the backend's layout;
- paged and varlen: ``fn(q, k, v, shape, index)``, with the cache's index (a :class:`PagedKV` block table
  or the :class:`PackedSeqs` offsets of a packed batch).

Either returns the output in the backend's layout. A backend that runs both forms takes ``index=None``.
A backend that cannot run a case raises :class:`Unsupported`, and the case is skipped with its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from ..measure.inputs import PackedSeqs, PagedKV
    from ..spec.shapes import AttnShape


class Unsupported(Exception):
    """This backend cannot run this case here; the message says why and what would make it run."""


class DenseAttention(Protocol):
    """``fn(q, k, v, shape) -> output``: prefill, decode and chunked cases."""

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, /) -> torch.Tensor: ...


class IndexedAttention(Protocol):
    """``fn(q, k, v, shape, index) -> output``: paged (``index`` a PagedKV) and varlen (a PackedSeqs) cases."""

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, index: PagedKV | PackedSeqs, /
    ) -> torch.Tensor: ...


# What a backend registers: either form (the workloads it declares say which the plugin will use).
AttentionFn = DenseAttention | IndexedAttention
