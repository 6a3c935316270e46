"""The built-in attention backends and the workloads each runs: eager, SDPA pinned to each of its kernels,
flash-attn 2, FlashAttention-3 and -4, torch's varlen_attn and compiled FlexAttention.

Loaded by the registry on first use (they import torch). No backend stands in for another: a workload or
case a backend cannot take is skipped with its reason.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from ..measure.inputs import PackedSeqs, PagedKV
from ..measure.reference import band_mask, eager_attention, gather_pages, sequence_slices
from ..spec.shapes import NO_WINDOW, AttnShape
from . import flash, varlen
from .flex import flex, forget_compiled_kernels
from .registry import HALF_DTYPES, AttentionFn, Backend, Unsupported

__all__ = ["builtin_backends", "forget_compiled_kernels", "sdpa_refused"]

# How torch says a pinned SDPA backend cannot run this case: CUDA's wording, then the CPU's.
_SDPA_REFUSALS = ("no available kernel", "no viable backend")
DENSE = frozenset({"prefill", "decode", "chunked"})
EVERY = frozenset({"prefill", "decode", "paged", "varlen", "chunked"})
_SDPA_NOTES = (
    ("paged", "PyTorch's SDPA has no block-table input"),
    ("varlen", "PyTorch's SDPA has no cu_seqlens input"),
)


def sdpa_refused(error: BaseException) -> bool:
    """Whether ``error`` is torch refusing a pinned SDPA backend (rather than a real failure)."""
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _SDPA_REFUSALS)


def _eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape, index: Any = None) -> torch.Tensor:
    arguments: dict[str, Any] = {
        "causal": shape.causal,
        "window": shape.window,
        "scale": shape.scale,
        "softcap": shape.softcap,
    }
    if isinstance(index, PackedSeqs):  # one sequence at a time, as the packed rows say
        parts = [
            eager_attention(q[:, :, rows], k[:, :, keys], v[:, :, keys], **arguments)
            for rows, keys in sequence_slices(shape)
        ]
        return torch.cat(parts, dim=2)
    if isinstance(index, PagedKV):  # read each token's page through the block table, then attend
        k, v = gather_pages(k, index, shape.k_len), gather_pages(v, index, shape.k_len)
    return eager_attention(q, k, v, **arguments)


def _sdpa_call(backend_enum: Any) -> AttentionFn:
    """SDPA pinned to one backend; 'no available kernel' becomes Unsupported with PyTorch's reasons."""
    from torch.nn.attention import sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        mask: Any = None
        is_causal = shape.causal
        # PyTorch's is_causal aligns the diagonal top-left; FlashAttention (and our reference) align it
        # bottom-right. One query at the bottom sees every key; more queries than one over a longer cache
        # take torch's lower-right causal bias (its flash and efficient kernels run it natively); a
        # window, or more queries than keys, an explicit mask.
        if shape.window != NO_WINDOW or (shape.causal and shape.q_len > shape.k_len):
            mask = band_mask(shape.q_len, shape.k_len, causal=shape.causal, window=shape.window, device=q.device)
            is_causal = False
        elif shape.causal and shape.q_len != shape.k_len:
            mask = None if shape.q_len == 1 else causal_lower_right(shape.q_len, shape.k_len)
            is_causal = False
        with warnings.catch_warnings(record=True) as caught, sdpa_kernel([backend_enum]):
            warnings.simplefilter("always")
            try:
                return F.scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    attn_mask=mask,
                    is_causal=is_causal,
                    scale=shape.scale,
                    enable_gqa=shape.kv_heads != shape.heads,
                )
            except RuntimeError as error:
                if not sdpa_refused(error):
                    raise
                reasons = "; ".join(dict.fromkeys(str(w.message).strip() for w in caught)) or str(error)
                raise Unsupported(f"PyTorch's {backend_enum.name} SDPA kernel refused this case: {reasons}") from None

    run.__qualname__ = f"sdpa[{backend_enum.name}]"
    return run


def builtin_backends() -> list[Backend]:
    """The built-in backends, in the order tests are parametrized (the registry asks once, on first use)."""
    from torch.nn.attention import SDPBackend

    sdpa: dict[str, Any] = {"workloads": DENSE, "workload_notes": _SDPA_NOTES}
    return [
        Backend(
            "eager",
            _eager,
            description="matmul, softmax, matmul in the input dtype (materialises scores)",
            materializes_scores=True,
            workloads=EVERY,
            supports_softcap=True,
        ),
        Backend(
            "sdpa-math",
            _sdpa_call(SDPBackend.MATH),
            description="PyTorch SDPA, math backend (fp32 compute)",
            materializes_scores=True,
            **sdpa,
        ),
        Backend(
            "sdpa-flash",
            _sdpa_call(SDPBackend.FLASH_ATTENTION),
            description="PyTorch SDPA, FlashAttention-2 backend",
            min_capability=(8, 0),
            max_head_dim=256,
            dtypes=HALF_DTYPES | {"float32"},
            flash=True,
            **sdpa,
        ),
        Backend(
            "sdpa-efficient",
            _sdpa_call(SDPBackend.EFFICIENT_ATTENTION),
            description="PyTorch SDPA, memory-efficient (xFormers) backend",
            devices=frozenset({"cuda"}),
            min_capability=(5, 0),
            **sdpa,
        ),
        Backend(
            "sdpa-cudnn",
            _sdpa_call(SDPBackend.CUDNN_ATTENTION),
            description="PyTorch SDPA, cuDNN backend",
            devices=frozenset({"cuda"}),
            min_capability=(8, 0),
            dtypes=HALF_DTYPES,
            **sdpa,
        ),
        Backend(
            "flash-attn",
            flash.flash_attn_2,
            layout="bshd",
            description="flash_attn (FlashAttention-2): flash_attn_func, flash_attn_with_kvcache, flash_attn_varlen_func",
            devices=frozenset({"cuda"}),
            dtypes=HALF_DTYPES,
            max_head_dim=256,
            head_dim_multiple=8,
            min_capability=(8, 0),
            # The FlashAttention-2 module itself: flash-attn-4 alone also makes `flash_attn` importable (a namespace
            # package holding only flash_attn.cute), which would pass for FlashAttention-2 and then fail.
            requires=("flash_attn.flash_attn_interface",),
            install_hint="pip install 'pytest-attnperf[flash]'",
            flash=True,
            workloads=EVERY,
            supports_softcap=True,
            check=flash.flash_attn_2_check,
        ),
        Backend(
            "flash-attn-3",
            flash.flash_attn_3,
            layout="bshd",
            description="flash_attn_interface.flash_attn_func (FlashAttention-3, Hopper)",
            devices=frozenset({"cuda"}),
            dtypes=HALF_DTYPES,
            max_head_dim=256,
            head_dim_multiple=8,
            only_capabilities=frozenset({(9, 0)}),
            requires=("flash_attn_interface",),
            install_hint="build it from flash-attention's hopper/ directory",
            flash=True,
            workloads=DENSE,
            workload_notes=(
                ("paged", "its flash_attn_func has no page table"),
                ("varlen", "not wired to its varlen entry point"),
            ),
            supports_softcap=True,
        ),
        Backend(
            "flash-attn-4",
            flash.flash_attn_4,
            layout="bshd",
            description="flash_attn.cute (FlashAttention-4, CuTe DSL): flash_attn_func, flash_attn_varlen_func",
            devices=frozenset({"cuda"}),
            dtypes=HALF_DTYPES,
            min_capability=(9, 0),
            # flash-attn 2's wheel ships flash_attn/cute too: without the CuTe DSL (`cutlass`) it cannot run.
            requires=("flash_attn.cute", "cutlass"),
            install_hint="pip install flash-attn-4 (Hopper and Blackwell)",
            flash=True,
            workloads=EVERY,
            supports_softcap=True,
            probe=flash.flash_attn_4_probe,
            check=flash.flash_attn_4_check,
        ),
        Backend(
            "torch-varlen",
            varlen.torch_varlen,
            layout="bshd",
            description="torch.nn.attention.varlen.varlen_attn (packed sequences; FlashAttention-2 kernel)",
            dtypes=HALF_DTYPES,
            flash=True,
            workloads=EVERY,
            probe=varlen.probe,
            check=varlen.check,
        ),
        Backend(
            "flex",
            flex,
            description="torch.compile'd FlexAttention: cached block masks, PagedAttention, document masks",
            cuda_requires=("triton",),
            install_hint="pip install triton",
            workloads=EVERY,
            supports_softcap=True,
        ),
    ]
