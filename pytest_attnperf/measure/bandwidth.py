"""The device's copy bandwidth, measured once per process: the ceiling a decode kernel's GB/s is a share of."""

from __future__ import annotations

import functools

import torch

from ..spec.options import TimingConfig
from .measurement import measure

COPY_BYTES = 1 << 30  # far above any L2: the copy runs from and to device memory


@functools.cache
def copy_bandwidth_gbps(device: str) -> float | None:
    """GB/s of a device-to-device copy (bytes read + bytes written over the median time); None on a CPU.

    A decode step reads the KV cache once and writes little, so its GB/s next to this figure says how
    close it comes to what the memory can do here (FACTS: about 3.0 TB/s on the H100, 4.3 on the H200).
    """
    target = torch.device(device)
    if target.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(target)
    size = min(COPY_BYTES, free // 4)
    source = torch.empty(size, dtype=torch.uint8, device=target)
    destination = torch.empty_like(source)
    timing = measure(lambda: destination.copy_(source), target, TimingConfig(warmup_ms=25, rep_ms=100)).timing
    return 2 * size / (timing.median_ms * 1e-3) / 1e9
