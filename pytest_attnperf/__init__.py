"""pytest-attnperf: keep attention kernels honest in CI (latency, memory, numerics per GPU model).

The public names are imported on first use (PEP 562): pytest loads this package into every run
of the environment, and most of these names need torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.registry import REGISTRY, Backend, BackendError, Unsupported, register_backend
    from .gate.results import CaseRecord, CaseResult
    from .measure.inputs import QKV, make_qkv
    from .session.case_runner import AttnPerf
    from .spec.device_info import DeviceInfo
    from .spec.marks import EquivalenceSpec, LatencySpec, MemorySpec
    from .spec.shapes import AttnShape

_WHERE = {
    "REGISTRY": ".backends.registry",
    "Backend": ".backends.registry",
    "BackendError": ".backends.registry",
    "Unsupported": ".backends.registry",
    "register_backend": ".backends.registry",
    "CaseRecord": ".gate.results",
    "CaseResult": ".gate.results",
    "QKV": ".measure.inputs",
    "make_qkv": ".measure.inputs",
    "AttnPerf": ".session.case_runner",
    "DeviceInfo": ".spec.device_info",
    "EquivalenceSpec": ".spec.marks",
    "LatencySpec": ".spec.marks",
    "MemorySpec": ".spec.marks",
    "AttnShape": ".spec.shapes",
}
__all__ = [
    "QKV",
    "REGISTRY",
    "AttnPerf",
    "AttnShape",
    "Backend",
    "BackendError",
    "CaseRecord",
    "CaseResult",
    "DeviceInfo",
    "EquivalenceSpec",
    "LatencySpec",
    "MemorySpec",
    "Unsupported",
    "make_qkv",
    "register_backend",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'pytest_attnperf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
