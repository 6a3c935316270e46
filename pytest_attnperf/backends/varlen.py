"""torch's ``torch.nn.attention.varlen.varlen_attn``: packed sequences over cumulative lengths, on every workload.

Its signature changed from release to release (2.10: ``is_causal``; 2.11: ``window_size``, no GQA flag, no
paging; 2.12+: ``enable_gqa``, ``seqused_k``, ``block_table``), so what it can do is read from the installed
function's parameters, never from a version string. Dense cases are packed for it (a uniform batch already
is: a view, no copy). Whether it runs on the device at all is probed once: torch 2.13's CPU build has the
function but no kernel behind it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

from ..measure.inputs import PackedSeqs, PagedKV
from ..spec.device_info import DeviceInfo
from ..spec.shapes import NO_WINDOW, AttnShape, mask_bounds
from .flash import check_flash_window


def _function() -> Callable[..., Any] | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@functools.cache
def parameters() -> frozenset[str]:
    """The installed varlen_attn's parameter names (empty when torch has none)."""
    function = _function()
    return frozenset(inspect.signature(function).parameters) if function is not None else frozenset()


@functools.cache
def _probe(device: str) -> str | None:
    function = _function()
    if function is None:
        return f"torch-varlen needs torch.nn.attention.varlen.varlen_attn, which torch {torch.__version__} lacks (it came in 2.10)"
    target = torch.device(device)
    dtype = torch.float16 if target.type == "cuda" else torch.float32
    tokens = torch.zeros(4, 1, 16, dtype=dtype, device=target)
    lengths = torch.tensor([0, 4], dtype=torch.int32, device=target)
    try:
        function(tokens, tokens, tokens, lengths, lengths, 4, 4)
    except Exception as error:  # what the device's build says, verbatim: that is the reason
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"torch-varlen cannot run on {device}: torch's varlen_attn says {message.split('. ')[0]!r}"
    return None


def probe(info: DeviceInfo) -> str | None:
    """Why varlen_attn cannot run on this device (missing, or no kernel for it), or None."""
    return _probe(info.device)


def check(shape: AttnShape, info: DeviceInfo) -> str | None:
    """What this torch's varlen_attn can express: a window, GQA, a block table."""
    names = parameters()
    if "window_size" not in names and (shape.window != NO_WINDOW or not shape.causal):
        return "this torch's varlen_attn takes only is_causal (no window_size): causal attention without a window"
    if shape.workload == "paged" and not {"block_table", "seqused_k"} <= names:
        return "this torch's varlen_attn has no block_table/seqused_k parameters (they came in torch 2.12)"
    return None


@functools.lru_cache(maxsize=32)
def _steps(batch: int, step: int, device: str) -> torch.Tensor:
    return torch.arange(0, (batch + 1) * step, step, dtype=torch.int32, device=device)


def torch_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, index: Any = None
) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    check_flash_window("torch-varlen", shape)
    names = parameters()
    keywords: dict[str, Any] = {}
    if "scale" in names:
        keywords["scale"] = shape.scale
    if "window_size" in names:
        keywords["window_size"] = mask_bounds(shape.causal, shape.window)  # (-1, 0) is causal, the only way to say it
    else:
        keywords["is_causal"] = shape.causal
    if "enable_gqa" in names and shape.kv_heads != shape.heads:
        keywords["enable_gqa"] = True
    device = str(q.device)
    if isinstance(index, PackedSeqs):
        output = varlen_attn(q, k, v, index.cu_seqlens_q, index.cu_seqlens_k, index.max_q, index.max_k, **keywords)
        return _tensor(output)
    batch, q_len = q.shape[0], q.shape[1]
    packed_q = q.reshape(batch * q_len, shape.heads, shape.head_dim)
    if isinstance(index, PagedKV):
        keywords.update(block_table=index.block_table, seqused_k=index.seqlens)
        output = varlen_attn(packed_q, k, v, _steps(batch, q_len, device), None, q_len, shape.k_len, **keywords)
    else:
        packed_k, packed_v = (t.reshape(batch * shape.k_len, shape.kv_heads, shape.head_dim) for t in (k, v))
        steps_q, steps_k = _steps(batch, q_len, device), _steps(batch, shape.k_len, device)
        output = varlen_attn(packed_q, packed_k, packed_v, steps_q, steps_k, q_len, shape.k_len, **keywords)
    return _tensor(output).view(batch, q_len, shape.heads, shape.head_dim)


def _tensor(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # (out, lse) when aux is asked for
