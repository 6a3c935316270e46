"""The attention backend registry: every implementation behind one call, none falling back silently.

A backend takes (q, k, v, shape) in its own layout and returns the output in that layout.
What it supports is declared (devices, dtypes, head dims, capability, windows) so an
unsupported case is skipped with a reason before anything runs; what only the library knows
(SDPA's kernel choice) is checked by pinning and turned into the same kind of reason.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .gpu import DeviceInfo
from .inputs import AttnShape, Layout
from .standard_attention import NO_WINDOW, band_mask, eager_attention

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, AttnShape], torch.Tensor]
ENTRY_POINT_GROUP = "pytest_attnperf.backends"
HALF_DTYPES = frozenset({"float16", "bfloat16"})
ALL_DTYPES = frozenset({"float16", "bfloat16", "float32"})


class BackendError(ValueError):
    """A backend name or registration the user must fix."""


class Unsupported(Exception):
    """This backend cannot run this case here; the message says why and what would make it run."""


@dataclass(frozen=True)
class Backend:
    """One attention implementation and what it can run."""

    name: str
    run: AttentionFn
    layout: Layout = "bhsd"
    description: str = ""
    devices: frozenset[str] = frozenset({"cuda", "cpu"})
    dtypes: frozenset[str] = ALL_DTYPES
    max_head_dim: int | None = None
    head_dim_multiple: int = 1
    min_capability: tuple[int, int] | None = None
    only_capabilities: frozenset[tuple[int, int]] | None = None
    supports_window: bool = True
    supports_gqa: bool = True
    materializes_scores: bool = False
    requires: tuple[str, ...] = ()  # importable modules; a missing one makes it unavailable
    cuda_requires: tuple[str, ...] = ()  # modules needed only on a CUDA device
    install_hint: str = ""
    flash: bool = False  # a FlashAttention-style fused kernel, for "FlashAttention on vs off"

    def unavailable_reason(self, info: DeviceInfo) -> str | None:
        """Why this backend cannot run on this device at all, or None."""
        device_type = "cuda" if info.is_cuda else "cpu"
        if device_type not in self.devices:
            need = " or ".join(sorted(self.devices))
            return f"{self.name} needs a {need} device; this run is on {info.name} ({info.device})"
        for module in self.requires + (self.cuda_requires if info.is_cuda else ()):
            if importlib.util.find_spec(module) is None:
                hint = f" ({self.install_hint})" if self.install_hint else ""
                return f"{self.name} needs the Python module {module!r}, which is not installed{hint}"
        if info.is_cuda and self.min_capability and not info.at_least(self.min_capability):
            need = ".".join(map(str, self.min_capability))
            have = ".".join(map(str, info.capability or ()))
            return f"{self.name} needs compute capability >= {need}; {info.name} is {have} ({info.generation})"
        if info.is_cuda and self.only_capabilities and info.capability not in self.only_capabilities:
            allowed = ", ".join(".".join(map(str, cap)) for cap in sorted(self.only_capabilities))
            return f"{self.name} runs only on compute capability {allowed}; {info.name} is {info.generation}"
        return None

    def unsupported_reason(self, shape: AttnShape, info: DeviceInfo) -> str | None:
        """Why this backend cannot run ``shape`` on this device, or None."""
        reason = self.unavailable_reason(info)
        if reason:
            return reason
        if shape.dtype not in self.dtypes:
            return f"{self.name} does not take {shape.dtype}; it takes {', '.join(sorted(self.dtypes))}"
        if self.max_head_dim is not None and shape.head_dim > self.max_head_dim:
            return f"{self.name} takes head_dim up to {self.max_head_dim}, not {shape.head_dim}"
        if shape.head_dim % self.head_dim_multiple:
            return f"{self.name} needs head_dim a multiple of {self.head_dim_multiple}, not {shape.head_dim}"
        if not self.supports_window and shape.window != NO_WINDOW:
            return f"{self.name} has no sliding-window attention (window={shape.window})"
        if not self.supports_gqa and shape.kv_heads != shape.heads:
            return f"{self.name} has no grouped-query attention (kv_heads={shape.kv_heads}, heads={shape.heads})"
        return None


@dataclass
class BackendRegistry:
    """Name -> Backend; a duplicate name is an error, never a silent override."""

    _backends: dict[str, Backend] = field(default_factory=dict)
    _entry_points_loaded: bool = False

    def register(self, backend: Backend) -> Backend:
        if not backend.name or any(char.isspace() or char == "," for char in backend.name):
            raise BackendError(f"invalid backend name {backend.name!r}: use a non-empty name without commas or spaces")
        existing = self._backends.get(backend.name)
        if existing is not None and existing != backend:
            raise BackendError(
                f"duplicate attention backend {backend.name!r}: already registered by {_origin(existing.run)}, "
                f"registered again by {_origin(backend.run)}; pick another name"
            )
        self._backends[backend.name] = backend
        return backend

    def unregister(self, name: str) -> None:
        self._backends.pop(name, None)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            provided = entry_point.load()
            provided = provided() if callable(provided) and not isinstance(provided, Backend) else provided
            for backend in provided if isinstance(provided, (list, tuple)) else [provided]:
                if not isinstance(backend, Backend):
                    raise BackendError(
                        f"entry point {entry_point.name!r} in group {ENTRY_POINT_GROUP!r} gave {backend!r}; "
                        "expected a pytest_attnperf.Backend, a list of them, or a function returning them"
                    )
                self.register(backend)

    def names(self) -> tuple[str, ...]:
        self._load_entry_points()
        return tuple(self._backends)

    def get(self, name: str) -> Backend:
        self._load_entry_points()
        try:
            return self._backends[name]
        except KeyError:
            raise BackendError(
                f"unknown attention backend {name!r}; expected one of: {', '.join(self._backends)}"
            ) from None

    def select(self, names: tuple[str, ...] | None) -> tuple[Backend, ...]:
        """Backends by name in the given order (all when None); unknown names raise BackendError."""
        if names is None:
            return tuple(self._backends[name] for name in self.names())
        return tuple(self.get(name) for name in names)

    def __iter__(self) -> Iterator[Backend]:
        return iter(self.select(None))


def _origin(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", "?")
    return f"{module}.{getattr(function, '__qualname__', repr(function))}"


REGISTRY = BackendRegistry()


def register_backend(
    name: str, *, registry: BackendRegistry | None = None, **capabilities: Any
) -> Callable[[AttentionFn], AttentionFn]:
    """Decorator that registers ``fn(q, k, v, shape) -> out`` as a backend (e.g. from a conftest)."""

    def decorate(run: AttentionFn) -> AttentionFn:
        (registry or REGISTRY).register(Backend(name=name, run=run, **capabilities))
        return run

    return decorate


# ---------------------------------------------------------------- built-in backends


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
                if "No available kernel" not in str(error):
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

    left, right = window
    if causal:
        right = 0
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


def _register_builtins(registry: BackendRegistry) -> None:
    from torch.nn.attention import SDPBackend

    registry.register(
        Backend(
            "eager",
            _eager,
            description="matmul, softmax, matmul in the input dtype (materialises scores)",
            materializes_scores=True,
        )
    )
    registry.register(
        Backend(
            "sdpa-math",
            _sdpa_call(SDPBackend.MATH),
            description="PyTorch SDPA, math backend (fp32 compute)",
            materializes_scores=True,
        )
    )
    registry.register(
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
    registry.register(
        Backend(
            "sdpa-efficient",
            _sdpa_call(SDPBackend.EFFICIENT_ATTENTION),
            description="PyTorch SDPA, memory-efficient (xFormers) backend",
            devices=frozenset({"cuda"}),
            min_capability=(5, 0),
        )
    )
    registry.register(
        Backend(
            "sdpa-cudnn",
            _sdpa_call(SDPBackend.CUDNN_ATTENTION),
            description="PyTorch SDPA, cuDNN backend",
            devices=frozenset({"cuda"}),
            min_capability=(8, 0),
            dtypes=HALF_DTYPES,
            flash=True,
        )
    )
    registry.register(
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
    registry.register(
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
    registry.register(
        Backend(
            "flex",
            _flex,
            description="torch.compile'd FlexAttention with cached block masks",
            cuda_requires=("triton",),
            install_hint="pip install triton",
        )
    )


_register_builtins(REGISTRY)
