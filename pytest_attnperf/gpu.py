"""What we run on: the current torch device, its capability, memory and software versions.

Detection is lazy (never at import) and always for the device torch will use, not for
whatever ``nvidia-smi`` lists first. This is the only module that knows capability rules.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import platform
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

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


def generation_name(capability: tuple[int, int] | None) -> str:
    """Architecture name for a compute capability; 'CPU' when there is none."""
    if capability is None:
        return "CPU"
    if capability in _GENERATIONS:
        return _GENERATIONS[capability]
    family = _GENERATION_BY_MAJOR.get(capability[0])
    return f"{family} (sm_{capability[0]}{capability[1]})" if family else f"unknown (sm_{capability[0]}{capability[1]})"


def slugify(name: str) -> str:
    """File-name slug: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'; never contains a path separator."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown-device"


@dataclass(frozen=True)
class DeviceInfo:
    """The device a run measures on, and the software stack that ran it."""

    device: str
    name: str
    slug: str
    capability: tuple[int, int] | None
    generation: str
    memory_bytes: int
    sm_count: int | None
    driver: str | None
    cuda: str | None
    cudnn: str | None
    torch: str
    triton: str | None
    flash_attn: str | None
    flash_attn_3: str | None
    transformers: str | None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def at_least(self, capability: tuple[int, int]) -> bool:
        """True when this is a CUDA device of at least ``capability``."""
        return self.capability is not None and self.capability >= capability

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["capability"] = list(self.capability) if self.capability else None
        return data

    def software(self) -> dict[str, str | None]:
        """The versions a baseline records, so a changed stack can be named in a failure."""
        return {
            "driver": self.driver,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "torch": self.torch,
            "triton": self.triton,
            "flash_attn": self.flash_attn,
            "flash_attn_3": self.flash_attn_3,
            "transformers": self.transformers,
        }


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks the current CUDA device when there is one, else the CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise ValueError(f"unknown device {spec!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N' ({error})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution, without importing it (imports can be slow or fail)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _flash_attn_3_version() -> str | None:
    if importlib.util.find_spec("flash_attn_interface") is None:
        return None
    return package_version("flash_attn_3") or package_version("flash-attn-3") or "installed"


def _nvidia_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library, no driver: the version is simply unknown
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


@functools.cache
def describe_device(device: torch.device) -> DeviceInfo:
    """Describe ``device`` (CUDA or CPU) with the versions of everything that can move a number."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    common: dict[str, Any] = {
        "torch": str(torch.__version__),
        "triton": package_version("triton"),
        "flash_attn": package_version("flash_attn") or package_version("flash-attn"),
        "flash_attn_3": _flash_attn_3_version(),
        "transformers": package_version("transformers"),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        capability = (properties.major, properties.minor)
        return DeviceInfo(
            device=str(device),
            name=properties.name,
            slug=slugify(properties.name),
            capability=capability,
            generation=generation_name(capability),
            memory_bytes=int(properties.total_memory),
            sm_count=int(properties.multi_processor_count),
            driver=_nvidia_driver_version(),
            cuda=torch.version.cuda,
            cudnn=str(cudnn) if cudnn is not None else None,
            **common,
        )
    name = _cpu_name()
    return DeviceInfo(
        device="cpu",
        name=name,
        slug="cpu-" + slugify(name),
        capability=None,
        generation="CPU",
        memory_bytes=_cpu_memory_bytes(),
        sm_count=os.cpu_count(),
        driver=None,
        cuda=None,
        cudnn=None,
        **common,
    )
