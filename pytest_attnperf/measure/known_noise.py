"""Other packages' warnings that say nothing about the kernels measured, filtered where they are emitted.

A run's warnings summary should show the plugin's findings and the user's own warnings, not hundreds of a
dependency's deprecation notices. Each filter here matches one message and its category, and is applied
only around the call that emits it: the same warning from anywhere else still shows, and no warning
class is hidden wholesale. (No torch import: these are plain ``warnings`` filters.)
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Noise:
    """One known warning: its category, a regex its message starts with, and who emits it."""

    category: type[Warning]
    message: str
    source: str


# torch.utils.mkldnn declares its modules with torch.jit.script_method, which warns once per method when
# the module is first imported (torch.compile's CPU passes import it): 14 warnings in a CPU main job.
JIT_SCRIPT_METHOD = Noise(
    DeprecationWarning, r"`torch\.jit\.script_method` is deprecated", "torch.utils.mkldnn, imported by torch.compile"
)
# transformers builds flex_attention's block masks with create_block_mask(..., _compile=True), which torch
# deprecates: one warning per model call (694 in a CPU main job).
CREATE_BLOCK_MASK_COMPILE = Noise(
    DeprecationWarning,
    r"_compile flag on create_block_mask was originally added",
    "transformers' flex_attention masks",
)
# FlashAttention-4's CuTe DSL compiles each new problem and says it cannot turn an argument's aux_data into a
# JIT argument: one UserWarning per case, about its own internals.
FA4_AUX_DATA = Noise(
    UserWarning, r"Argument aux_data .* cannot be converted to a JitArgument", "flash_attn.cute (FlashAttention-4)"
)


@contextlib.contextmanager
def without(*noises: Noise) -> Iterator[None]:
    """Ignore exactly these warnings inside the block; every other warning is untouched."""
    with warnings.catch_warnings():
        for noise in noises:
            warnings.filterwarnings("ignore", message=noise.message, category=noise.category)
        yield


def import_quietly() -> None:
    """Import the modules that warn at import, once, with only their known warning filtered."""
    with without(JIT_SCRIPT_METHOD):
        importlib.import_module("torch.utils.mkldnn")
