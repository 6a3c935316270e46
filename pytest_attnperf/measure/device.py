"""Which device a run measures on: the current torch device, its capability, memory and software versions.

Detection is lazy (never at import) and always for the device torch will use, not for
whatever ``nvidia-smi`` lists first.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import platform
from typing import Any

import torch

from ..spec.device_info import DeviceInfo, generation_name, slugify


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


def gpu_uuid(device: torch.device) -> str | None:
    """NVML's 'GPU-…' UUID of a CUDA device (indices differ under CUDA_VISIBLE_DEVICES; the UUID does not)."""
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


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
        "flash_attn_4": package_version("flash-attn-4") or package_version("flash_attn_4"),
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
            uuid=gpu_uuid(device),
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
        sm_count=None,
        cpu_cores=os.cpu_count(),
        driver=None,
        cuda=None,
        cudnn=None,
        **common,
    )
