"""A backend must not write to its inputs: every backend of a case reuses them, and the reference too.

The plugin makes Q/K/V once per shape and hands the same tensors to each backend in turn (making them
is slow on a CPU, and the reference output is computed once from them). A backend that writes to them
in place would be timed on drifting values, judged against a reference of already-changed inputs, and
would hand changed inputs to every backend after it. So the inputs are sealed before a backend runs:
their version counters (bumped by every in-place torch op, through views and ``detach()`` too) and a
checksum of their bits (for kernels that write through raw pointers). A changed input fails that
backend's test, naming it, and is restored from its seed, so the tests after it see the right values.
"""

from __future__ import annotations

import torch

from ..spec.shapes import Layout
from .inputs import QKV, make_qkv

_SAME_WIDTH_INTEGER = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits_checksum(tensor: torch.Tensor) -> int:
    """The sum of the tensor's elements read as integers of their width: exact, so the same bits give the same sum."""
    with torch.no_grad():
        as_integers = tensor.detach().view(_SAME_WIDTH_INTEGER[tensor.element_size()])
        return int(as_integers.sum(dtype=torch.int64))


class InputSeal:
    """The state of a case's inputs before a backend runs, to tell afterwards whether it wrote to them."""

    def __init__(self, qkv: QKV, layout: Layout) -> None:
        self.qkv = qkv
        given = qkv.in_layout(layout)
        self._watched = {name: tensor for name, tensor in zip("qkv", given, strict=True)}
        if layout != "bhsd":  # the copies it gets, and the shared tensors they were made from
            self._watched.update({f"{name} (shared)": getattr(qkv, name) for name in "qkv"})
        self._before = {name: self._state(tensor) for name, tensor in self._watched.items()}

    @staticmethod
    def _state(tensor: torch.Tensor) -> tuple[int, int]:
        return tensor._version, bits_checksum(tensor)

    def modified(self) -> list[str]:
        """Names of the inputs that changed since the seal was made."""
        return [name for name, tensor in self._watched.items() if self._state(tensor) != self._before[name]]

    def restore_if_modified(self) -> list[str]:
        """Put the seeded values back into changed shared inputs (the next backends use them); return the changed."""
        changed = self.modified()
        if changed:
            self.qkv.release_layouts()
            shape, seed = self.qkv.shape, self.qkv.seed
            fresh = make_qkv(shape, seed=seed, device=self.qkv.device)
            with torch.no_grad():
                for name in "qkv":
                    target = getattr(self.qkv, name)
                    if not torch.equal(target, getattr(fresh, name)):
                        target.copy_(getattr(fresh, name))
            self._before = {name: self._state(tensor) for name, tensor in self._watched.items()}
        return changed
