"""pytest-attnperf: keep attention kernels honest in CI (latency, memory, numerics per GPU model)."""

from __future__ import annotations

from .backends import REGISTRY, Backend, BackendError, Unsupported, register_backend
from .checks import EquivalenceSpec, LatencySpec, MemorySpec
from .gpu import DeviceInfo
from .inputs import QKV, AttnShape, make_qkv
from .results import CaseResult
from .runner import AttnPerf

__all__ = [
    "QKV",
    "REGISTRY",
    "AttnPerf",
    "AttnShape",
    "Backend",
    "BackendError",
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
