"""The attention backend registry: every implementation behind one call, none falling back silently.

A backend takes (q, k, v, shape) in its own layout and returns the output in that layout; for the
paged and varlen workloads it also gets the cache's index, (q, k, v, shape, index)
(:class:`pytest_attnperf.measure.inputs.PagedKV` / ``PackedSeqs``): the two protocols of :mod:`.protocol`. What it supports is declared
(workloads, devices, dtypes, head dims, capability, windows, soft-capping) so an unsupported case is
skipped with a reason before anything runs; what only the library knows (SDPA's kernel choice, a
page-size rule) is checked by pinning, probing or a backend's own ``check``, and turned into the same
kind of reason. No torch import here: the built-ins live in :mod:`pytest_attnperf.backends.builtin`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

from ..spec.device_info import DeviceInfo
from ..spec.shapes import NO_WINDOW, AttnShape, Layout
from ..spec.workloads import WORKLOADS

# Re-exported: where the backends, the runner and users import them from.
from .protocol import AttentionFn as AttentionFn
from .protocol import Unsupported as Unsupported

ShapeCheck = Callable[[AttnShape, DeviceInfo], "str | None"]
PREFILL_ONLY = frozenset({"prefill"})
ENTRY_POINT_GROUP = "pytest_attnperf.backends"
BUILTIN_PROVIDER = "pytest_attnperf.backends.builtin:builtin_backends"
HALF_DTYPES = frozenset({"float16", "bfloat16"})
ALL_DTYPES = frozenset({"float16", "bfloat16", "float32"})


class BackendError(ValueError):
    """A backend name or registration the user must fix."""


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
    flash: bool = False  # an implementation of FlashAttention (FA2-4, SDPA's flash kernel): the study's "on"
    # The workloads it runs; a user's backend runs prefill unless it says more (its calling convention grows).
    workloads: frozenset[str] = PREFILL_ONLY
    workload_notes: tuple[tuple[str, str], ...] = ()  # (workload, why not) for the skip reason
    supports_softcap: bool = False
    probe: Callable[[DeviceInfo], str | None] | None = None  # what only trying on the device shows
    check: ShapeCheck | None = None  # the backend's own rules for a case (a page-size rule, head dims)

    def unavailable_reason(self, info: DeviceInfo) -> str | None:
        """Why this backend cannot run on this device at all, or None."""
        device_type = "cuda" if info.is_cuda else "cpu"
        if device_type not in self.devices:
            need = " or ".join(sorted(self.devices))
            return f"{self.name} needs a {need} device; this run is on {info.name} ({info.device})"
        for module in self.requires + (self.cuda_requires if info.is_cuda else ()):
            problem = _import_problem(module)
            if problem is not None:
                hint = f" ({self.install_hint})" if self.install_hint else ""
                return f"{self.name} needs the Python module {module!r}, which {problem}{hint}"
        if info.is_cuda and self.min_capability and not info.at_least(self.min_capability):
            need = ".".join(map(str, self.min_capability))
            have = ".".join(map(str, info.capability or ()))
            return f"{self.name} needs compute capability >= {need}; {info.name} is {have} ({info.generation})"
        if info.is_cuda and self.only_capabilities and info.capability not in self.only_capabilities:
            allowed = ", ".join(".".join(map(str, cap)) for cap in sorted(self.only_capabilities))
            return f"{self.name} runs only on compute capability {allowed}; {info.name} is {info.generation}"
        return self.probe(info) if self.probe is not None else None

    def workload_reason(self, workload: str) -> str | None:
        """Why this backend does not run ``workload``, or None when it does."""
        if workload in self.workloads:
            return None
        runs = ", ".join(name for name in WORKLOADS if name in self.workloads)
        note = dict(self.workload_notes).get(workload)
        if note is None:
            note = f"it runs {runs}" + (
                "; a registered backend declares more with workloads={...}" if self.workloads == PREFILL_ONLY else ""
            )
        else:
            note = f"{note}; it runs {runs}"
        return f"{self.name} does not run the {workload} workload: {note}"

    def unsupported_reason(self, shape: AttnShape, info: DeviceInfo) -> str | None:
        """Why this backend cannot run ``shape`` on this device, or None."""
        reason = self.unavailable_reason(info) or self.workload_reason(shape.workload)
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
        if shape.softcap is not None and not self.supports_softcap:
            return f"{self.name} has no logit soft-capping (softcap={shape.softcap:g}, as in Gemma-2)"
        return self.check(shape, info) if self.check is not None else None


# Python retries a failed import every time, and a broken package may take seconds to fail (a CuTe DSL loads
# its compiler first): each case of a suite would pay it. Once found broken, a module stays broken this process.
_BROKEN_IMPORTS: dict[str, str] = {}


def _first_line(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _import_problem(module: str) -> str | None:
    """Why ``module`` cannot be used, or None: not installed, or installed but failing to import.

    The module is imported, not only found: a package whose own imports fail (FlashAttention-4 with a CuTe DSL
    of another version, an extension built for another torch) is unavailable with that reason, so the suite
    skips its cases with the reason `attnperf env` prints instead of failing them on the raw import error.
    Called only when a backend is about to run, never at plugin load.
    """
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as error:  # finding a submodule imports its parent package
        return f"cannot be imported ({_first_line(error)})"
    if found is None:
        return "is not installed"
    if module not in _BROKEN_IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as error:  # whatever a broken package raises (ImportError, OSError, AttributeError)
            _BROKEN_IMPORTS[module] = f"is installed but cannot be imported ({_first_line(error)})"
    return _BROKEN_IMPORTS.get(module)


@dataclass
class BackendRegistry:
    """Name -> Backend; a duplicate name is an error, never a silent override.

    The built-in backends (which import torch) and the entry points are loaded on first use, so
    importing the registry, or registering a backend from a conftest, costs nothing at start-up.
    """

    _backends: dict[str, Backend] = field(default_factory=dict)
    with_builtins: bool = False
    _loaded: bool = False

    def register(self, backend: Backend) -> Backend:
        if not backend.name or any(char.isspace() or char == "," for char in backend.name):
            raise BackendError(f"invalid backend name {backend.name!r}: use a non-empty name without commas or spaces")
        workloads = _workload_set(backend.workloads, backend.name)
        if workloads != backend.workloads:
            backend = dataclasses.replace(backend, workloads=workloads)
        if backend.layout not in get_args(Layout):
            raise BackendError(
                f"backend {backend.name!r}: unknown layout {backend.layout!r}; expected 'bhsd' (batch, heads, seqlen, "
                "head_dim) or 'bshd' (batch, seqlen, heads, head_dim)"
            )
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

    def _load(self) -> None:
        """Built-ins first (so they lead the parametrization), then what was registered so far, then entry points."""
        if self._loaded:
            return
        self._loaded = True
        registered, self._backends = self._backends, {}
        if self.with_builtins:
            # Named, not imported, like an entry point: the built-ins import torch and this module.
            module, _, function = BUILTIN_PROVIDER.partition(":")
            for backend in getattr(importlib.import_module(module), function)():
                self.register(backend)
        for backend in registered.values():
            self.register(backend)
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
        self._load()
        return tuple(self._backends)

    def get(self, name: str) -> Backend:
        self._load()
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


REGISTRY = BackendRegistry(with_builtins=True)


def register_backend(
    name: str, *, registry: BackendRegistry | None = None, **capabilities: Any
) -> Callable[[AttentionFn], AttentionFn]:
    """Decorator that registers ``fn(q, k, v, shape) -> out`` as a backend (e.g. from a conftest).

    ``workloads={'prefill', 'decode', 'paged', ...}`` says which workloads it takes (default: prefill):
    decode and chunked cases call it as prefill does, with fewer queries than keys (causal masking
    bottom-right aligned); paged and varlen cases add the cache's index as a fifth argument.
    """

    def decorate(run: AttentionFn) -> AttentionFn:
        (registry or REGISTRY).register(Backend(name=name, run=run, **capabilities))
        return run

    return decorate


def _workload_set(workloads: object, name: str) -> frozenset[str]:
    """A backend's declared workloads: names from WORKLOADS, at least one."""
    listed = [workloads] if isinstance(workloads, str) else workloads
    if not isinstance(listed, (list, tuple, set, frozenset)) or not listed:
        raise BackendError(f"backend {name!r}: workloads must be a non-empty set of {', '.join(WORKLOADS)}")
    unknown = sorted(str(workload) for workload in listed if workload not in WORKLOADS)
    if unknown:
        raise BackendError(f"backend {name!r}: unknown workloads {unknown}; expected some of {', '.join(WORKLOADS)}")
    return frozenset(str(workload) for workload in listed)
