"""The built-in attention backends: eager, SDPA pinned to each of its kernels, flash-attn, FA3, flex.

Loaded by the registry on first use (they import torch).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..measure.reference import band_mask, eager_attention
from ..spec.shapes import NO_WINDOW, AttnShape, mask_bounds
from .registry import HALF_DTYPES, AttentionFn, Backend, Unsupported

# How torch says a pinned SDPA backend cannot run this case: CUDA's wording, then the CPU's.
_SDPA_REFUSALS = ("no available kernel", "no viable backend")


def sdpa_refused(error: BaseException) -> bool:
    """Whether ``error`` is torch refusing a pinned SDPA backend (rather than a real failure)."""
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _SDPA_REFUSALS)



def _eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)


def _sdpa_call(backend_enum: Any) -> AttentionFn:
    """SDPA pinned to one backend; 'no available kernel' becomes Unsupported with PyTorch's reasons."""
    from torch.nn.attention import sdpa_kernel

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        mask = None
        is_causal = shape.causal
        # PyTorch's is_causal aligns the diagonal top-left; FlashAttention (and our reference)
        # align it bottom-right. Use an explicit mask whenever the two differ or a window applies.
        if shape.window != NO_WINDOW or (shape.causal and shape.q_len != shape.k_len):
            mask = band_mask(shape.q_len, shape.k_len, causal=shape.causal, window=shape.window, device=q.device)
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


def _check_flash_window(name: str, shape: AttnShape) -> None:
    """flash-attn turns a -1 (unbounded) right window into k_len, which bottom-right alignment makes too short."""
    left, right = shape.window
    if not shape.causal and 0 <= left < shape.k_len and right < 0 and shape.q_len > shape.k_len + 1:
        raise Unsupported(
            f"{name} cannot take window={shape.window} with q_len {shape.q_len} > k_len {shape.k_len} + 1: it "
            "replaces the -1 by k_len, which under bottom-right alignment hides keys from the first query rows"
        )


def _flash_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    from flash_attn import flash_attn_func

    _check_flash_window("flash-attn", shape)

    return flash_attn_func(q, k, v, softmax_scale=shape.scale, causal=shape.causal, window_size=shape.window)  # type: ignore[no-any-return]


def _flash_attn_3(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    from flash_attn_interface import flash_attn_func

    _check_flash_window("flash-attn-3", shape)

    output = flash_attn_func(q, k, v, softmax_scale=shape.scale, causal=shape.causal, window_size=shape.window)
    # Some FA3 releases return (out, softmax_lse).
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1)
def _compiled_flex() -> Callable[..., torch.Tensor]:
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention

    # Every new shape recompiles; past the limit dynamo would fall back to the slow unfused
    # path without a word. Raise the limit, and make hitting it an error, not a fallback.
    for option, value in (("recompile_limit", 256), ("cache_size_limit", 256), ("fail_on_recompile_limit_hit", True)):
        if hasattr(torch._dynamo.config, option):
            setattr(torch._dynamo.config, option, value)
    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=32)
def _flex_block_mask(q_len: int, k_len: int, causal: bool, window: tuple[int, int], device: str) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    left, right = mask_bounds(causal, window)
    if left < 0 and right < 0:
        return None
    offset = k_len - q_len

    def band(batch: torch.Tensor, head: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        diagonal = q_idx + offset
        allowed = kv_idx >= 0
        if right >= 0:
            allowed = allowed & (kv_idx <= diagonal + right)
        if left >= 0:
            allowed = allowed & (kv_idx >= diagonal - left)
        return allowed

    return create_block_mask(band, B=None, H=None, Q_LEN=q_len, KV_LEN=k_len, device=device)


def forget_compiled_kernels() -> None:
    """Drop the compiled FlexAttention and its block masks (after torch._dynamo.reset())."""
    _compiled_flex.cache_clear()
    _flex_block_mask.cache_clear()


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    if q.is_cuda and shape.head_dim < 16:
        raise Unsupported(f"flex on CUDA needs head_dim >= 16 (Inductor's flex_attention kernel), not {shape.head_dim}")
    block_mask = _flex_block_mask(shape.q_len, shape.k_len, shape.causal, shape.window, str(q.device))
    return _compiled_flex()(q, k, v, block_mask=block_mask, scale=shape.scale, enable_gqa=shape.kv_heads != shape.heads)


def builtin_backends() -> list[Backend]:
    """The built-in backends, in the order tests are parametrized (the registry asks once, on first use)."""
    from torch.nn.attention import SDPBackend

    backends: list[Backend] = []
    backends.append(
        Backend(
            "eager",
            _eager,
            description="matmul, softmax, matmul in the input dtype (materialises scores)",
            materializes_scores=True,
        )
    )
    backends.append(
        Backend(
            "sdpa-math",
            _sdpa_call(SDPBackend.MATH),
            description="PyTorch SDPA, math backend (fp32 compute)",
            materializes_scores=True,
        )
    )
    backends.append(
        Backend(
            "sdpa-flash",
            _sdpa_call(SDPBackend.FLASH_ATTENTION),
            description="PyTorch SDPA, FlashAttention-2 backend",
            min_capability=(8, 0),
            max_head_dim=256,
            dtypes=HALF_DTYPES | {"float32"},
            flash=True,
        )
    )
    backends.append(
        Backend(
            "sdpa-efficient",
            _sdpa_call(SDPBackend.EFFICIENT_ATTENTION),
            description="PyTorch SDPA, memory-efficient (xFormers) backend",
            devices=frozenset({"cuda"}),
            min_capability=(5, 0),
        )
    )
    backends.append(
        Backend(
            "sdpa-cudnn",
            _sdpa_call(SDPBackend.CUDNN_ATTENTION),
            description="PyTorch SDPA, cuDNN backend",
            devices=frozenset({"cuda"}),
            min_capability=(8, 0),
            dtypes=HALF_DTYPES,
        )
    )
    backends.append(
        Backend(
            "flash-attn",
            _flash_attn,
            layout="bshd",
            description="flash_attn.flash_attn_func (FlashAttention-2)",
            devices=frozenset({"cuda"}),
            dtypes=HALF_DTYPES,
            max_head_dim=256,
            head_dim_multiple=8,
            min_capability=(8, 0),
            requires=("flash_attn",),
            install_hint="pip install 'pytest-attnperf[flash]'",
            flash=True,
        )
    )
    backends.append(
        Backend(
            "flash-attn-3",
            _flash_attn_3,
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
        )
    )
    backends.append(
        Backend(
            "flex",
            _flex,
            description="torch.compile'd FlexAttention with cached block masks",
            cuda_requires=("triton",),
            install_hint="pip install triton",
        )
    )
    return backends
