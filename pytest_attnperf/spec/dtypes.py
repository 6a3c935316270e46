"""Dtypes by name: the one place that knows their spellings and sizes (no torch import).

Inputs take the three floating dtypes attention kernels run in; the memory calculator also
sizes float64, fp8 and int8 tensors. A ``torch.dtype`` is accepted wherever a name is, through
its ``str()`` ("torch.float16"), so callers need not convert.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

DTypeLike = Union[str, "torch.dtype"]

DTYPE_BYTES = {
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
    "uint8": 1,
}
ALIASES = {
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "float": "float32",
    "fp64": "float64",
    "double": "float64",
    "fp8": "float8_e4m3fn",
}
INPUT_DTYPES = ("float16", "bfloat16", "float32")
REDUCED_FLOATS = ("float16", "bfloat16")
SHORT_NAME = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def dtype_name(dtype: DTypeLike) -> str:
    """Canonical name of a dtype given as text ('fp16', 'bfloat16') or as a torch.dtype."""
    text = str(dtype).strip().removeprefix("torch.")
    text = ALIASES.get(text.lower(), text.lower())
    if text not in DTYPE_BYTES:
        accepted = ", ".join([*DTYPE_BYTES, *ALIASES])
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {accepted} or a torch.dtype")
    return text


def dtype_bytes(dtype: DTypeLike) -> int:
    """Bytes per element of a dtype."""
    return DTYPE_BYTES[dtype_name(dtype)]


def parse_dtype(value: object) -> str:
    """Canonical name of an input dtype: 'float16', 'fp16', 'bf16', torch.float16, ..."""
    name = None
    if isinstance(value, str) or type(value).__name__ == "dtype":
        with contextlib.suppress(ValueError):
            name = dtype_name(str(value))
    if name is None or name not in INPUT_DTYPES:
        raise ValueError(
            f"unsupported dtype {value!r}; expected one of {', '.join(INPUT_DTYPES)} (or fp16, bf16, fp32)"
        )
    return name
