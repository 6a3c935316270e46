"""Where standard attention stops fitting (the memory frontier, bisected and predicted) and how far a fused
backend goes: the study's memory answers per configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..backends.registry import Backend
from ..measure.inputs import make_qkv
from ..measure.memory import cuda_peak_memory, is_out_of_memory, release_memory
from ..session.case_runner import make_workload
from ..spec.shapes import AttnShape
from . import peak_model
from .configs import StudyConfig


def _forward_once(backend: Backend, shape: AttnShape, device: torch.device) -> None:
    workload = make_workload(backend, make_qkv(shape, device=device), "forward")
    if device.type == "cuda":
        cuda_peak_memory(workload, device)
    else:
        workload()


def fits_once(backend: Backend, shape: AttnShape, device: torch.device) -> bool:
    """Does one forward call (inputs included) fit? Memory is handed back either way."""
    try:
        _forward_once(backend, shape, device)  # its tensors die with its frame
        fits = True
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        fits = False
    release_memory(device)
    return fits


def measured_frontier(
    backend: Backend, config: StudyConfig, device: torch.device, *, low: int, high: int, granularity: int = 256
) -> tuple[int, int]:
    """Bisect the largest multiple of ``granularity`` that fits: (last fitting, first failing)."""
    low_steps, high_steps = low // granularity, high // granularity
    while high_steps - low_steps > 1:
        middle = (low_steps + high_steps) // 2
        if fits_once(backend, config.shape(middle * granularity), device):
            low_steps = middle
        else:
            high_steps = middle
    return low_steps * granularity, high_steps * granularity


def frontier_entry(
    backend: Backend, config: StudyConfig, device: torch.device, free_bytes: int, cases: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Predicted (memory model) and measured (bisection) largest context of a materialising backend."""
    fitting = [c["seqlen"] for c in cases if c["backend"] == backend.name and c["status"] == "ok"]
    failing = [c["seqlen"] for c in cases if c["backend"] == backend.name and c["status"] == "does_not_fit"]
    if not fitting or not failing:
        return None  # the sweep never crossed the frontier: nothing to bisect between
    shape_arguments: dict[str, Any] = {
        "batch": config.batch,
        "heads": config.heads,
        "kv_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "dtype": config.dtype,
        "causal": config.causal,
    }
    measured, first_failure = measured_frontier(backend, config, device, low=max(fitting), high=min(failing))
    # The caching-allocator model: a live-tensor count alone misses the split blocks that strand memory.
    predicted = peak_model.predict_max_context(backend.name, free_bytes, allocator="cuda-caching", **shape_arguments)
    naive = peak_model.predict_max_context("naive", free_bytes, **shape_arguments)
    peak = peak_model.predict_peak(backend.name, q_len=measured, k_len=measured, **shape_arguments)
    explanation = peak_model.explain_gap(backend.name, predicted, measured, free_bytes=free_bytes, **shape_arguments)
    return {
        "backend": backend.name,
        "config": config.name,
        "measured_tokens": measured,
        "first_failure_tokens": first_failure,
        "predicted_tokens": predicted,
        "naive_tokens": naive,
        "gap_fraction": predicted / measured - 1,
        "free_bytes": free_bytes,
        "explanation": explanation,
        "predicted_items": [list(item) for item in peak.items],
    }


def fused_limit(
    backend: Backend, config: StudyConfig, free_bytes: int, cases: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """How far a fused backend goes: its memory is inputs + output + O(N) row statistics."""
    ran = [c for c in cases if c["backend"] == backend.name and c["status"] == "ok" and c["peak_bytes"]]
    if not ran:
        return None
    largest = max(ran, key=lambda c: c["seqlen"])
    shape = config.shape(largest["seqlen"])
    per_token = (shape.input_bytes() + largest["peak_bytes"]) / largest["seqlen"]  # inputs + measured rise
    max_tokens = int(free_bytes / per_token) // 256 * 256
    statement = (
        f"{backend.name}: at {largest['seqlen']:,} tokens it needs {largest['peak_bytes'] / 2**20:.0f} MiB above "
        f"its inputs (the output and O(N) row statistics, no score matrix); memory grows linearly, so inputs plus "
        f"output would fill {free_bytes / 2**30:.1f} GiB only at about {max_tokens:,} tokens "
        f"(batch {config.batch}, {config.heads} heads); time, not memory, limits it (quadratic FLOPs)."
    )
    return {"backend": backend.name, "config": config.name, "max_tokens": max_tokens, "statement": statement}
