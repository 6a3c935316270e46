"""What a run measures on, as data: the device, its generation and the software stack (no torch import).

Detection lives in :mod:`pytest_attnperf.measure.device`; this is the record it produces, which
results, baselines and reports carry. This is the only module that knows capability rules.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# Compute capability -> generation (FACTS §5; the popular "8.6 = RTX 40" table is wrong).
_GENERATIONS: dict[tuple[int, int], str] = {
    (6, 0): "Pascal",
    (6, 1): "Pascal",
    (7, 0): "Volta",
    (7, 2): "Volta (Jetson Xavier)",
    (7, 5): "Turing",
    (8, 0): "Ampere (datacenter)",
    (8, 6): "Ampere",
    (8, 7): "Ampere (Jetson Orin)",
    (8, 9): "Ada Lovelace",
    (9, 0): "Hopper",
    (10, 0): "Blackwell (datacenter)",
    (10, 3): "Blackwell Ultra (datacenter)",
    (12, 0): "Blackwell (consumer)",
    (12, 1): "Blackwell (GB10)",
}
_GENERATION_BY_MAJOR = {6: "Pascal", 7: "Volta/Turing", 8: "Ampere/Ada", 9: "Hopper", 10: "Blackwell", 12: "Blackwell"}


# The software versions a run records (results, baselines' environment:, `attnperf env`): one list, so a
# new library is added here once and never leaks into a baseline's device: block.
SOFTWARE_KEYS = (
    "driver",
    "cuda",
    "cudnn",
    "torch",
    "triton",
    "flash_attn",
    "flash_attn_3",
    "flash_attn_4",
    "transformers",
)


def generation_name(capability: tuple[int, int] | None) -> str:
    """Architecture name for a compute capability; 'CPU' when there is none."""
    if capability is None:
        return "CPU"
    if capability in _GENERATIONS:
        return _GENERATIONS[capability]
    family = _GENERATION_BY_MAJOR.get(capability[0])
    return f"{family} (sm_{capability[0]}{capability[1]})" if family else f"unknown (sm_{capability[0]}{capability[1]})"


def slugify(name: str, default: str = "unknown-device") -> str:
    """File-name slug: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'; never contains a path separator."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or default


def compute_units(sm_count: object, cpu_cores: object) -> str | None:
    """'132 SMs' for a GPU, '2 cores' for a CPU; None when neither is known."""
    if isinstance(sm_count, int) and not isinstance(sm_count, bool):
        return f"{sm_count} SMs"
    if isinstance(cpu_cores, int) and not isinstance(cpu_cores, bool):
        return f"{cpu_cores} core{'s' if cpu_cores != 1 else ''}"
    return None


@dataclass(frozen=True)
class DeviceInfo:
    """The device a run measures on, and the software stack that ran it."""

    device: str
    name: str
    slug: str
    capability: tuple[int, int] | None
    generation: str
    memory_bytes: int
    sm_count: int | None  # streaming multiprocessors of a GPU; None on a CPU
    driver: str | None
    cuda: str | None
    cudnn: str | None
    torch: str
    triton: str | None
    flash_attn: str | None
    flash_attn_3: str | None
    transformers: str | None
    cpu_cores: int | None = None  # logical cores of a CPU; None on a GPU
    uuid: str | None = None  # the GPU's NVML UUID: which physical card measured
    flash_attn_4: str | None = None  # flash-attn-4 (flash_attn.cute), which installs beside flash-attn 2

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def compute_units(self) -> str | None:
        return compute_units(self.sm_count, self.cpu_cores)

    def at_least(self, capability: tuple[int, int]) -> bool:
        """True when this is a CUDA device of at least ``capability``."""
        return self.capability is not None and self.capability >= capability

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["capability"] = list(self.capability) if self.capability else None
        return data

    def software(self) -> dict[str, str | None]:
        """The versions a baseline records, so a changed stack can be named in a failure."""
        return {key: getattr(self, key) for key in SOFTWARE_KEYS}
