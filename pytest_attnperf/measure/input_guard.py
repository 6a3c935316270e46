"""A backend must not write to its inputs: every backend of a case reuses them, and the reference too.

The plugin makes Q/K/V once per shape and hands the same tensors to each backend in turn (making them
is slow on a CPU, and the reference output is computed once from them). A backend that writes to them
in place would be timed on drifting values, judged against a reference of already-changed inputs, and
would hand changed inputs to every backend after it. So the state of the inputs is recorded when they
are first measured: their version counters (bumped by every in-place torch op, through views and
``detach()`` too) and a checksum of their bits (for kernels that write through raw pointers). After a
backend ran, a change fails its test, naming the tensor; before each backend, changed inputs (left by a
backend whose test failed for another reason first) are put back from their seed.
"""

from __future__ import annotations

import weakref

import torch

from ..spec.shapes import Layout
from .inputs import QKV, make_qkv

_SAME_WIDTH_INTEGER = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_COPY_NAMES = ("q", "k", "v")  # what QKV.in_layout returns, in order

State = tuple[int, int]


def bits_checksum(tensor: torch.Tensor) -> int:
    """The sum of the tensor's elements read as integers of their width: exact, so the same bits give the same sum."""
    with torch.no_grad():
        as_integers = tensor.detach().view(_SAME_WIDTH_INTEGER[tensor.element_size()])
        return int(as_integers.sum(dtype=torch.int64))


def _state(tensor: torch.Tensor) -> State:
    return tensor._version, bits_checksum(tensor)


class InputGuard:
    """The pristine state of the inputs in use (one set at a time, as the session keeps them)."""

    def __init__(self) -> None:
        self._qkv: weakref.ref[QKV] | None = None  # weak: the session frees its inputs between test modules
        self._pristine: dict[str, State] = {}
        self._copies: dict[str, State] = {}  # the layout copies the current backend is given

    def _is_current(self, qkv: QKV) -> bool:
        return self._qkv is not None and self._qkv() is qkv

    def _record(self, qkv: QKV) -> None:
        self._qkv = weakref.ref(qkv)
        self._pristine = {name: _state(tensor) for name, tensor in qkv.named_tensors().items()}

    def prepare(self, qkv: QKV, layout: Layout) -> bool:
        """Before a backend runs: record new inputs, or put back what an earlier backend changed (True then).

        The backend's layout copies are made here, from the checked inputs, and their state recorded too.
        """
        restored = False
        if not self._is_current(qkv):
            self._record(qkv)
        elif self._changed_originals(qkv):
            self.restore(qkv)
            restored = True
        qkv.release_layouts()
        originals = {id(tensor) for tensor in qkv.named_tensors().values()}
        self._copies = {
            name: _state(copy)
            for name, copy in zip(_COPY_NAMES, qkv.in_layout(layout), strict=True)
            if id(copy) not in originals
        }
        return restored

    def modified(self, qkv: QKV, layout: Layout) -> list[str]:
        """After a backend ran: the names of the inputs it changed (its own layout's copies included)."""
        changed = self._changed_originals(qkv)
        given = dict(zip(_COPY_NAMES, qkv.in_layout(layout), strict=True))
        changed += [
            f"{name} (its {layout} copy)" for name, before in self._copies.items() if _state(given[name]) != before
        ]
        return changed

    def restore(self, qkv: QKV) -> None:
        """Put the seeded values back (in place: the session's cache holds these very tensors)."""
        qkv.release_layouts()
        fresh = make_qkv(qkv.shape, seed=qkv.seed, device=qkv.device).named_tensors()
        with torch.no_grad():
            for name, tensor in qkv.named_tensors().items():
                tensor.copy_(fresh[name])
        self._record(qkv)
        self._copies = {}

    def _changed_originals(self, qkv: QKV) -> list[str]:
        if not self._is_current(qkv):
            return []
        now = qkv.named_tensors()
        return [name for name, before in self._pristine.items() if _state(now[name]) != before]
